"""GLUE QQP/MRPC readers on small files written in the real layouts, the offline tokenizer, and
the one-line exit-2 errors for a missing or malformed data set (through the CLI)."""

import numpy as np
import pytest
import torch

from biaslab import rng
from biaslab.cli import main
from biaslab.errors import InputError
from biaslab.tasks import make_task
from biaslab.tasks.glue import read_glue
from biaslab.tasks.text import assemble_pairs
from biaslab.tasks.tokenizer import CLS, PAD, SEP, UNK, WordTokenizer, words

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"  # MRPC ships with a BOM


def write_qqp(directory, rows_train, rows_dev=None):
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", rows_train), ("dev.tsv", rows_dev or rows_train)):
        lines = [QQP_HEADER] + [f"{i}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(rows)]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def write_mrpc(directory, rows):
    directory.mkdir(parents=True, exist_ok=True)
    lines = [MRPC_HEADER] + [f"{y}\t{100 + i}\t{200 + i}\t{a}\t{b}" for i, (a, b, y) in enumerate(rows)]
    for name in ("train.tsv", "dev.tsv"):
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


QQP_ROWS = [("How do I learn Python?", "What is the best way to learn Python?", 1),
            ('Why is the sky "blue"?', "How tall is Everest?", 0),
            ("What is 2+2?", "What's two plus two?", 1)]


def test_qqp_layout_and_quotes(tmp_path):
    d = read_glue("qqp", str(write_qqp(tmp_path / "QQP", QQP_ROWS)), "train")
    assert d.first[1] == 'Why is the sky "blue"?'  # quote marks are text, not CSV quoting
    assert d.second[0] == "What is the best way to learn Python?"
    assert d.labels.tolist() == [1, 0, 1] and d.skipped == 0


def test_mrpc_layout_label_first_and_bom(tmp_path):
    rows = [("He said it.", "It was said by him.", 1), ("A cat.", "A dog.", 0)]
    d = read_glue("mrpc", str(write_mrpc(tmp_path / "MRPC", rows)), "test")
    assert d.pairs == [(a, b) for a, b, _ in rows] and d.labels.tolist() == [1, 0]


def test_a_rare_broken_row_is_skipped_but_many_are_refused(tmp_path):
    rows = [(f"question {i}", f"other {i}", i % 2) for i in range(200)]
    directory = write_qqp(tmp_path / "QQP", rows)
    text = (directory / "train.tsv").read_text()
    (directory / "train.tsv").write_text(text + "999\t1\t2\ta question cut short\n")
    d = read_glue("qqp", str(directory), "train")
    assert len(d) == 200 and d.skipped == 1
    (directory / "train.tsv").write_text(text + "999\t1\t2\tcut\n" * 5)
    with pytest.raises(InputError, match="wrong number of fields"):
        read_glue("qqp", str(directory), "train")


@pytest.mark.parametrize("problem,content,message", [
    ("missing", None, "does not exist"),
    ("header", "a\tb\tc\n1\t2\t3\n", "has header"),
    ("label", QQP_HEADER + "\n0\t1\t2\tq1\tq2\tmaybe\n", "is not 0 or 1"),
    ("empty", QQP_HEADER + "\n", "holds no examples"),
])
def test_bad_data_set_is_one_line_exit_2(tmp_path, capsys, problem, content, message):
    directory = write_qqp(tmp_path / "QQP", QQP_ROWS)
    if content is None:
        (directory / "train.tsv").unlink()
    else:
        (directory / "train.tsv").write_text(content)
    code = main(["sample", "glue_pair", "dataset=qqp", f"path={directory}", "--count", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "task.path" in err and str(directory / "train.tsv") in err and message in err
    assert "question1" in err  # names the expected layout


def test_tokenizer_round_trip_and_pairs():
    texts = ["The cat sat.", "the dog sat!", "A cat, a dog."]
    tok = WordTokenizer.fit(texts, vocab_size=100)
    for t in texts:
        assert tok.decode(tok.encode(t)) == " ".join(words(t))
    assert tok.encode("the zebra") == [tok.stoi["the"], UNK]
    # most frequent first, ties alphabetical: 'sat', 'cat', ... are deterministic
    assert WordTokenizer.fit(texts, 100).itos == tok.itos
    small = WordTokenizer.fit(texts, vocab_size=6)  # 4 specials + 2 most frequent words
    assert small.itos[4:] == [".", "a"]  # six words occur twice; ties go alphabetically
    ids = tok.encode_pairs([("the cat sat", "a dog")], max_len=10)[0]
    assert ids.tolist()[:2] == [PAD, PAD]  # left padding
    assert tok.decode(ids) == "[CLS] the cat sat [SEP] a dog [SEP]"


def test_long_pairs_lose_the_longer_sentence_first():
    tok = WordTokenizer.fit(["a b c d e f g h"], 20)
    ids = tok.encode_pair("a b c d e f g", "h", max_len=7)
    assert len(ids) == 7 and tok.decode(ids) == "[CLS] a b c [SEP] h [SEP]"


def test_glue_task_samples_the_encoded_files(tmp_path):
    directory = write_qqp(tmp_path / "QQP", QQP_ROWS)
    task = make_task("glue_pair", {"dataset": "qqp", "path": str(directory), "max_len": 16,
                                   "vocab_size": 64})
    state = task.make_state(0)
    assert state["train_x"].shape == (3, 16) and state["train_x"].dtype == torch.int32
    x, y = task.sample(state, rng.key_of(1), 32)
    assert x.shape == (32, 16) and x.dtype == torch.int64 and set(y.tolist()) <= {0, 1}
    # every sampled row is one of the encoded training rows, with its own label
    rows = {tuple(r): int(l) for r, l in zip(state["train_x"].tolist(), state["train_y"].tolist())}
    assert all(rows[tuple(r)] == int(l) for r, l in zip(x.tolist(), y.tolist()))
    assert (x[:, -1] == SEP).all()


def test_synthetic_pairs_are_left_padded_and_well_formed():
    task = make_task("pair_topics", {"min_words": 2, "max_words": 5})
    x, y = task.sample({}, rng.key_of(3), 200)
    assert x.shape == (200, 13) and (x[:, -1] == SEP).all()
    for row in x.tolist():
        real = [t for t in row if t != PAD]
        assert row[: len(row) - len(real)] == [PAD] * (len(row) - len(real))
        assert real[0] == CLS and real.count(SEP) == 2 and real.count(CLS) == 1
    assert 0.35 < y.float().mean() < 0.65


def test_assemble_pairs_matches_a_loop():
    g = np.random.default_rng(0)
    w1, w2 = torch.tensor(g.integers(10, 20, (6, 4))), torch.tensor(g.integers(20, 30, (6, 4)))
    l1, l2 = torch.tensor(g.integers(1, 5, 6)), torch.tensor(g.integers(1, 5, 6))
    x = assemble_pairs(w1, l1, w2, l2, 12)
    for i in range(6):
        seq = [CLS] + w1[i, : l1[i]].tolist() + [SEP] + w2[i, : l2[i]].tolist() + [SEP]
        assert x[i].tolist() == [PAD] * (12 - len(seq)) + seq
