"""The Hugging Face adapter on tiny random BERT-, RoBERTa- and GPT-2-style models saved to a
temporary folder (nothing downloaded), against brute-force loops that feed every example alone,
unpadded, to the bare HF model."""

from __future__ import annotations

import copy
import json
import math
import zlib

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from biaslab import rng  # noqa: E402
from biaslab.cli import main  # noqa: E402
from biaslab.hf.data import encode, read_texts  # noqa: E402
from biaslab.hf.measures import measure_model  # noqa: E402
from biaslab.hf.model import load  # noqa: E402
from biaslab.measure.tokenwise import TOKEN_STREAM  # noqa: E402
from biaslab.measure.tokenwise import EMBED_STREAM  # noqa: E402
from biaslab.measure.weight_noise import WEIGHT_NOISE_STREAM  # noqa: E402

WORDS = "the cat dog sat on a mat ran big small red blue saw".split()
LINES = ["the cat sat\ton a mat", "a dog ran\tthe big red cat", "blue\tsmall dog saw the cat",
         "the mat\ta", "red red red dog\tcat"]
SEED, DRAWS, SIGMA, BATCH = 3, 2, 2.0, 2  # 5 examples in batches of 2: three batch keys


def _tokenizer(kind):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    names = ["input_ids", "attention_mask"]
    if kind != "gpt2":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        names = names + (["token_type_ids"] if kind == "bert" else [])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", model_input_names=names)


def _model(kind):
    torch.manual_seed({"bert": 0, "roberta": 1, "gpt2": 2}[kind])
    V = 4 + len(WORDS)
    if kind == "bert":
        return transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32, num_labels=3, pad_token_id=0))
    if kind == "roberta":
        return transformers.RobertaForSequenceClassification(transformers.RobertaConfig(
            vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=40, num_labels=2, pad_token_id=0))
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=2,
        eos_token_id=3, pad_token_id=0))


@pytest.fixture(scope="module", params=["bert", "roberta", "gpt2"])
def saved(request, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    _model(kind).save_pretrained(folder)
    _tokenizer(kind).save_pretrained(folder)
    data = folder / "data.tsv"
    data.write_text("\n".join(LINES if kind != "gpt2" else [ln.replace("\t", " ") for ln in LINES]))
    model, tokenizer = load(str(folder))
    model = model.double()
    x = encode(tokenizer, read_texts(str(data)), model.vocab_size, model.padding_side, 64)
    return kind, folder, data, model, tokenizer, x


def _examples(model, tokenizer, path):
    """Each example's unpadded ids and token types, as the tokenizer gives them."""
    rows = read_texts(str(path))
    pairs = [r[1] for r in rows] if len(rows[0]) == 2 else None
    enc = tokenizer([r[0] for r in rows], pairs, return_token_type_ids=True)
    types = (model.kind == "classifier" and "token_type_ids" in tokenizer.model_input_names
             and enc["token_type_ids"]) or [[0] * len(i) for i in enc["input_ids"]]
    return [(torch.tensor(i), torch.tensor(t)) for i, t in zip(enc["input_ids"], types)]


def _logits(hf, kind, ids=None, types=None, embeds=None):
    extra = {"token_type_ids": types[None]} if kind == "bert" else {}
    if embeds is not None:
        out = hf(inputs_embeds=embeds[None], **extra).logits[0]
    else:
        out = hf(input_ids=ids[None], **extra).logits[0]
    return out[-1] if kind == "gpt2" else out


def _padded_position(j, length, T, kind):
    return T - length + j if kind == "gpt2" else j


@torch.no_grad()
def _brute_tokenwise(kind, hf, examples, T, V, D, space):
    """Flip rate per example, one example, position and draw at a time."""
    rates = []
    for b, (ids, types) in enumerate(examples):
        batch, row = divmod(b, BATCH)
        size = min(BATCH, len(examples) - batch * BATCH)
        key = rng.derive(rng.key_of(SEED), batch)
        clean = _logits(hf, kind, ids, types).argmax()
        flips = []
        for d in range(DRAWS):
            if space == "replacement":
                new = rng.randint(rng.derive(key, TOKEN_STREAM, d), (size, T, 1), V)
            else:
                z = rng.normal(rng.derive(key, EMBED_STREAM, d), (size, T, 1, D), torch.float64) * SIGMA
            for j in range(len(ids)):
                p = _padded_position(j, len(ids), T, kind)
                if space == "replacement":
                    changed = ids.clone()
                    changed[j] = new[row, p, 0]
                    out = _logits(hf, kind, changed, types)
                else:
                    e = hf.get_input_embeddings()(ids).clone()
                    e[j] += z[row, p, 0]
                    out = _logits(hf, kind, types=types, embeds=e)
                flips.append(float(out.argmax() != clean))
        rates.append(sum(flips) / len(flips))
    return rates


def test_tokenwise_matches_brute_force(saved):
    kind, _, data, model, tokenizer, x = saved
    examples = _examples(model, tokenizer, data)
    got = measure_model(model, x, "tokenwise", seed=SEED, draws=DRAWS, sigma=SIGMA, batch_size=BATCH)
    D = model.hf.get_input_embeddings().embedding_dim
    for space, key in [("replacement", "replacement"), ("embedding", "embedding_noise")]:
        rates = _brute_tokenwise(kind, model.hf, examples, x.shape[1], model.vocab_size, D, space)
        assert got[key]["mean"] == pytest.approx(sum(rates) / len(rates), abs=1e-12)
        assert sum(got[key]["tokens_per_position"]) == sum(len(i) for i, _ in examples)
    assert 0 < got["embedding_noise"]["mean"]  # sigma 2 on a 16-d random model flips something


def test_packed_forward_equals_embedded_and_unpadded(saved):
    kind, _, data, model, tokenizer, x = saved
    with torch.no_grad():
        batched = model(x)
        assert torch.allclose(model.forward_embedded(model.embed(x)), batched, atol=1e-10)
        for b, (ids, types) in enumerate(_examples(model, tokenizer, data)):
            assert torch.allclose(batched[b], _logits(model.hf, kind, ids, types), atol=1e-10)


@torch.no_grad()
def test_weight_noise_and_blowup_match_brute_force(saved):
    kind, _, data, model, tokenizer, x = saved
    got = measure_model(model, x, "all", seed=SEED, weight_sigma=0.3, weight_draws=2,
                        batch_size=BATCH)
    examples = _examples(model, tokenizer, data)
    clean = [_logits(model.hf, kind, i, t) for i, t in examples]
    l1 = flip = 0.0
    for d in range(2):
        noisy = copy.deepcopy(model.hf)
        key = rng.derive(rng.key_of(SEED), WEIGHT_NOISE_STREAM, d)
        for name, p in noisy.named_parameters():
            salt = zlib.crc32(("hf." + name).encode())
            p += 0.3 * rng.normal(rng.derive(key, salt), p.shape, p.dtype)
        for (i, t), c in zip(examples, clean):
            out = _logits(noisy, kind, i, t)
            l1 += float((out - c).abs().sum())
            flip += float(out.argmax() != c.argmax())
    n = 2 * len(examples)
    assert got["weight_noise"]["l1"] == pytest.approx(l1 / n, rel=1e-9)
    assert got["weight_noise"]["flip"] == pytest.approx(flip / n, abs=1e-12)

    inputs = {}
    lns = [(n_, m) for n_, m in model.hf.named_modules() if isinstance(m, torch.nn.LayerNorm)]
    hooks = [m.register_forward_pre_hook(lambda _m, a, n_=n_: inputs.__setitem__(n_, a[0][0]))
             for n_, m in lns]
    products = []
    for i, t in examples:
        _logits(model.hf, kind, i, t)
        product = 1.0
        for name, _ in lns:
            product *= max(1.0 / float(torch.std(v)) for v in inputs[name])
        products.append(product)
    for h in hooks:
        h.remove()
    assert len(got["layernorm"]["per_layernorm"]) == len(lns) > 0
    assert got["layernorm"]["blowup"] == pytest.approx(sum(products) / len(products), rel=1e-9)
    assert math.isfinite(got["parameter_norm"]) and got["parameter_norm"] > 0


def test_cli_table_json_and_bad_input(saved, tmp_path, capsys):
    kind, folder, data, *_ = saved
    if kind != "bert":
        pytest.skip("one model kind is enough for the command line")
    assert main(["measure", "tokenwise", "--model-dir", str(folder), "--data", str(data),
                 "--draws", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == len(LINES) and 0 <= out["replacement"]["mean"] <= 1
    assert main(["measure", "all", "--model-dir", str(folder), "--data", str(data), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "LayerNorm blow-up" in text and "weight-noise sharpness" in text
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\td\te\n")
    for argv, field in [(["--data", str(bad)], "data:"), (["--data", str(tmp_path / "none")], "data:"),
                        ([], "data:"), (["--data", str(data), "--draws", "0"], "draws:")]:
        assert main(["measure", "tokenwise", "--model-dir", str(folder), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and field in err
    assert main(["measure", "tokenwise", "--model-dir", str(tmp_path), "--data", str(data)]) == 2
    assert "model-dir:" in capsys.readouterr().err
    assert main(["measure", "tokenwise", "parity", "n=3"]) == 2
    assert "model-dir:" in capsys.readouterr().err
