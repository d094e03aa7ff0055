"""Models built as Hahn & Rofin's reference builds them (issue 10 item 4): the q/k/v init of
torch's MultiheadAttention / Transformer, the scratchpad encoder-decoder's layout, and the
blow-up over the LayerNorms the reference hooks. The defaults must stay bit-identical."""

import hashlib
import math

import pytest
import torch
from torch import nn

from biaslab.experiments.hahn_rofin import scratchpad
from biaslab.spec import presets_of
from biaslab.models.base import build_model
from biaslab.models.reference_init import packed_qkv_bound
from biaslab.tasks import make_task

ENC = {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 16}
S2S = {"d_model": 8, "n_heads": 2, "n_enc_layers": 2, "n_dec_layers": 2, "d_ff": 16}


def fingerprint(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_default_init_is_bit_identical_to_before():
    """Fingerprints of the weights taken from the code before the init options existed (commit
    9966214, torch 2.13 CPU; re-pin from that commit if torch changes its default init): a default
    model draws exactly as before, and naming the default explicitly changes nothing."""
    t, s = make_task("parity", {"n": 6}), make_task("prefix_parity", {"n": 5})
    pre = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 12, "norm": "pre", "embed": "add"}
    assert fingerprint(build_model("transformer", ENC, t, 3)) == "5a5d41f102b13557"
    assert fingerprint(build_model("transformer", pre, t, 0)) == "2fcc6d446e67835e"
    assert fingerprint(build_model("seq2seq", S2S, s, 1)) == "f19945efd662c9d1"
    assert fingerprint(build_model("transformer", {**ENC, "qkv_init": "default"}, t, 3)) == \
        "5a5d41f102b13557"
    assert fingerprint(build_model("seq2seq", {**S2S, "qkv_init": "default", "matrix_init":
                                               "default"}, s, 1)) == "f19945efd662c9d1"


def test_xavier_qkv_statistics_and_zero_biases():
    d = 128
    t = make_task("parity", {"n": 10})
    ref = {"d_model": d, "n_heads": 2, "n_layers": 2, "d_ff": d}
    m = build_model("transformer", {**ref, "qkv_init": "xavier"}, t, 0)
    base = build_model("transformer", ref, t, 0)
    b = math.sqrt(6.0 / (d + 3 * d))  # the packed [3d, d] matrix of nn.MultiheadAttention
    assert packed_qkv_bound(m.layers[0].attn) == pytest.approx(b)
    # torch's own MultiheadAttention draws in the same bound
    mha = nn.MultiheadAttention(d, 2)
    assert mha.in_proj_weight.abs().max() <= b and mha.in_proj_weight.abs().max() > 0.99 * b
    for i, layer in enumerate(m.layers):
        a, a0 = layer.attn, base.layers[i].attn
        w = torch.cat([a.q.weight, a.k.weight, a.v.weight])
        assert w.abs().max() <= b and w.abs().max() > 0.99 * b
        assert w.std().item() == pytest.approx(b / math.sqrt(3), rel=0.03)  # U(-b, b)
        assert abs(w.mean().item()) < 0.01 * b
        for lin in (a.q, a.k, a.v, a.out):
            assert torch.count_nonzero(lin.bias) == 0
        # what the reference leaves alone keeps nn.Linear's init, bit for bit
        assert torch.equal(a.out.weight, a0.out.weight)
        assert torch.equal(layer.ff1.weight, base.layers[i].ff1.weight)
        assert not torch.equal(a.q.weight, a0.q.weight)
    # deterministic in the seed
    again = build_model("transformer", {**ref, "qkv_init": "xavier"}, t, 0)
    assert fingerprint(again) == fingerprint(m)


def _reference_scratchpad(d, vocab=3, max_len=9):
    """The reference's TorchModelWithScratchpad, built from torch modules as its src/model.py."""
    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, d // 2)
            self.positional_encoding = nn.Embedding(max_len + 1, d // 2)
            self.model = nn.Transformer(d_model=d, nhead=2, num_encoder_layers=2,
                                        num_decoder_layers=2, dim_feedforward=d, dropout=0.0,
                                        batch_first=True)
            self.linear_head = nn.Linear(d, 1)
    return Ref()


def test_reference_scratchpad_layout_and_init():
    n, d = 8, 32
    task = make_task("prefix_parity", {"n": n})
    m = build_model("seq2seq", scratchpad.REFERENCE_S2S, task, 0)
    ref = _reference_scratchpad(d)
    ours = {k: p.numel() for k, p in m.named_parameters() if not k.startswith("pos_embed")}
    theirs = {k: p.numel() for k, p in ref.named_parameters() if "positional" not in k}
    assert sum(ours.values()) == sum(theirs.values())  # same layers, FFN, final norms, head
    assert [k for k, _ in m.named_parameters() if k.startswith("pos_embed")] == ["pos_embed.weight"]
    assert m.token_embed.weight.shape == (3, d // 2) and m.pos_embed.weight.shape[1] == d // 2
    lns = [mod for mod in m.modules() if isinstance(mod, nn.LayerNorm)]
    assert len(lns) == len([mod for mod in ref.modules() if isinstance(mod, nn.LayerNorm)]) == 12
    # torch.nn.Transformer's init: every matrix of the layers Xavier-uniform, attention biases 0,
    # feed-forward biases left at nn.Linear's default (nonzero)
    ff = m.encoder[0].ff.ff1
    bf = math.sqrt(6.0 / (d + d))
    assert ff.weight.abs().max() <= bf and ff.weight.abs().max() > 0.95 * bf
    assert torch.count_nonzero(ff.bias) > 0
    assert m.decoder[1].cross.out.weight.abs().max() <= bf
    bq = math.sqrt(6.0 / (d + 3 * d))
    for att in (m.encoder[1].attn, m.decoder[0].self_attn, m.decoder[1].cross):
        assert torch.cat([att.q.weight, att.k.weight, att.v.weight]).abs().max() <= bq
        assert all(torch.count_nonzero(lin.bias) == 0 for lin in (att.q, att.k, att.v, att.out))
    x, y = task.sample({}, torch.tensor(0), 4)
    out, acts = m(x, acts=True)
    assert out.shape == (4, n)
    assert acts["encoder.final_in"].shape == (4, n, d) and "decoder.final_in" in acts
    # the final LayerNorm feeds the head: memory and readout are normalized
    torch.testing.assert_close(acts["readout"].mean(-1), torch.zeros(4, n), atol=1e-5, rtol=0)


def test_blowup_over_the_layernorms_the_reference_hooks():
    """Tokens [c, -c] have unbiased std c*sqrt(2): a made-up acts dict with a known answer. The
    last layer counts only its last position; decoder ln3 and the final LayerNorms do not count."""
    def tok(*cs):
        return torch.tensor([[[c, -c] for c in cs]])  # [1, L, 2]

    r2 = math.sqrt(2.0)
    acts = {
        "encoder.0.ln1_in": tok(1.0, 0.5, 2.0),   # max 1/(0.5 r2)
        "encoder.0.ln2_in": tok(1.0, 1.0, 1.0),   # 1/r2
        "encoder.1.ln1_in": tok(0.01, 1.0, 4.0),  # last layer: last position only -> 1/(4 r2)
        "encoder.1.ln2_in": tok(0.01, 0.01, 1.0),  # 1/r2
        "encoder.final_in": tok(1e-4, 1e-4, 1e-4),
        "decoder.0.ln1_in": tok(2.0, 2.0),         # 1/(2 r2)
        "decoder.0.ln2_in": tok(0.25, 1.0),        # 1/(0.25 r2)
        "decoder.0.ln3_in": tok(1e-4, 1e-4),       # not hooked by the reference
        "decoder.1.ln1_in": tok(1e-3, 0.5),        # last position: 1/(0.5 r2)
        "decoder.1.ln2_in": tok(1e-3, 2.0),        # 1/(2 r2)
        "decoder.1.ln3_in": tok(1e-4, 1e-4),
        "decoder.final_in": tok(1e-4, 1e-4),
    }
    enc = 1 / (0.5 * r2) * (1 / r2) * 1 / (4 * r2) * (1 / r2)
    dec = 1 / (2 * r2) * 1 / (0.25 * r2) * 1 / (0.5 * r2) * 1 / (2 * r2)
    got = scratchpad.seq2seq_blowup_from_acts(acts)
    assert got["blowup_enc"].item() == pytest.approx(enc, rel=1e-6)
    assert got["blowup_dec"].item() == pytest.approx(dec, rel=1e-6)
    assert got["blowup"].item() == pytest.approx(enc * dec, rel=1e-6)


def test_presets_build_the_reference_models():
    """Sweep B's FFN is d_model (the reference's dim_feedforward=hidden_dim); every encoder starts
    q/k/v as MultiheadAttention; the scratchpad model is the reference's; gpu and paper train the
    full budget as the reference does."""
    for preset in ("cpu", "gpu", "paper"):
        sp = presets_of("sharpness-scaling")[preset]
        for sw in sp["sweeps"].values():
            p = sw["model"]["params"]
            assert p["d_ff"] == p["d_model"] and p["qkv_init"] == "xavier"
            if preset != "cpu":
                assert sw["train"]["stop_on_converge"] is False
        sc = presets_of("scratchpad")[preset]
        assert sc["model"]["params"] == scratchpad.REFERENCE_S2S
        assert sc["parity_model"]["params"]["qkv_init"] == "xavier"
        if preset != "cpu":
            assert sc["train"]["stop_on_converge"] is False
            assert sc["parity_train"]["stop_on_converge"] is False
