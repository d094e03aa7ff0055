"""Number encodings P10/P1000/B1999/FP15 (tasks/encodings.py, tasks/linalg_vocab.py) against the
fact sheet's examples, exhaustive round trips of every representable value, and malformed input."""

import math

import pytest
import torch

from biaslab.errors import InputError
from biaslab.tasks.encodings import SPECIALS, get_encoding, scale_by_pow10
from biaslab.tasks.linalg_vocab import Vocabulary, vocabulary

NAMES = ["p10", "p1000", "b1999", "fp15"]


def words(name, x):
    return vocabulary(name).number_words(get_encoding(name), x)


@pytest.mark.parametrize("name,expected", [
    ("p10", "+ 3 1 4 E-2"), ("p1000", "+ 314 E-2"), ("b1999", "N314 E-2"), ("fp15", "N314e7")])
def test_sheet_example_3_14(name, expected):
    assert " ".join(words(name, 3.14)) == expected


@pytest.mark.parametrize("name,expected", [
    ("p10", "+ 0 E0"), ("p1000", "+ 0 E0"), ("b1999", "N0 E0"), ("fp15", "N0e0")])
def test_zero_and_negative_zero(name, expected):
    assert " ".join(words(name, 0.0)) == expected
    assert " ".join(words(name, -0.0)) == expected


def test_more_examples():
    assert words("p10", -0.000123) == ["-", "1", "2", "3", "E-6"]
    assert words("p10", 9.996) == ["+", "1", "0", "0", "E-1"]  # rounds up into the next decade
    assert words("p1000", 1e6) == ["+", "100", "E4"]
    assert words("b1999", -2.5e-3) == ["N-250", "E-5"]
    assert words("fp15", -12.345) == ["N-123e8"]
    assert words("fp15", 1.0) == ["N100e7"]
    # exponent range: 1.00e-98 is "100 E-100", anything smaller rounds to zero
    assert words("p1000", 1e-98) == ["+", "100", "E-100"]
    assert words("p1000", 3e-99) == ["+", "0", "E0"]


def test_fp15_smallest_numbers():
    # |x| < 1e-7 becomes N{m}e0 with |m| <= 99: steps of 1e-9, rounded half up on the magnitude
    assert words("fp15", 1e-9) == ["N1e0"]
    assert words("fp15", -3e-9) == ["N-3e0"]
    assert words("fp15", 4e-10) == ["N0e0"]
    assert words("fp15", 6e-10) == ["N1e0"]
    assert words("fp15", 9.9e-8) == ["N99e0"]
    assert words("fp15", 1e-7) == ["N100e0"]
    assert words("fp15", 2.5e-7) == ["N250e0"]


def test_overflow():
    enc = get_encoding("fp15")
    v = vocabulary("fp15")
    assert words("fp15", 2e9) == ["NaN"] and words("fp15", -2e9) == ["-NaN"]
    assert words("fp15", 9.996e8) == ["NaN"]  # m rounds to 1000 at e = 15: past the last token
    assert words("fp15", 9.99e8) == ["N999e15"]
    x = torch.tensor([[[2e9]], [[9.99e8]], [[-math.inf]]], dtype=torch.float64)
    ids, _, over = v.encode(enc, x)
    assert over.tolist() == [True, False, True]
    vals, ok = v.decode(enc, ids, 1, 1)
    assert ok.all() and vals[0, 0, 0] == 1e9 and vals[2, 0, 0] == -1e9  # NaN decodes as +-1e9
    for name in ["p10", "p1000", "b1999"]:
        enc = get_encoding(name)
        _, _, over = Vocabulary(enc).encode(enc, torch.tensor([[[1e103]], [[9.99e102]], [[math.nan]]],
                                                              dtype=torch.float64))
        assert over.tolist() == [True, False, True]


def test_vocabulary_sizes_and_specials():
    sizes = {"p10": 213, "p1000": 1203, "b1999": 2200, "fp15": 29001}
    for name, n in sizes.items():
        syms = get_encoding(name).symbols()
        assert len(syms) == len(set(syms)) == n
    assert len(SPECIALS) == 22
    v = Vocabulary("fp15", "p1000")
    assert v.words[0] == "<eos>" and v.words[1] == "<pad>" and v.eos_id == 0 and v.pad_id == 1
    assert v.words[22:27] == ["+", "-", "10^", ".", "|"]
    # union: V1..V100 + both encodings' symbols (+ and - are among the 5 common symbols)
    assert v.size == 22 + 5 + 100 + 29001 + (1203 - 2)
    assert Vocabulary("p10").size == 22 + 5 + 100 + 211


def test_sequence_lengths():
    v = Vocabulary(*NAMES)
    for name, l5, l20 in [("p10", 127, 2002), ("p1000", 77, 1202), ("b1999", 52, 802),
                          ("fp15", 27, 402)]:
        enc = get_encoding(name)
        assert v.length(enc, 5, 5) == l5 and v.length(enc, 20, 20) == l20
        x = torch.full((1, 5, 5), 3.14, dtype=torch.float64)
        ids, lengths, _ = v.encode(enc, x)
        assert ids.shape == (1, l5) and lengths.item() == l5
        assert v.to_words(ids[0])[:2] == ["V5", "V5"]


def test_p10_zero_is_shorter_and_padded():
    enc = get_encoding("p10")
    v = vocabulary("p10")
    x = torch.tensor([[[1.0, 0.0], [0.0, -2.0]]], dtype=torch.float64)
    ids, lengths, _ = v.encode(enc, x)
    assert lengths.item() == 2 + 5 + 3 + 3 + 5 and ids.shape[1] == 2 + 4 * 5
    assert v.text(ids[0]) == "V2 V2 + 1 0 0 E-2 + 0 E0 + 0 E0 - 2 0 0 E-2"
    assert (ids[0, lengths.item():] == v.pad_id).all()
    vals, ok = v.decode(enc, ids, 2, 2)
    assert ok.item() and torch.equal(vals, x)


def representable(name):
    """Every value the encoding can write (except FP15's overflow tokens), as float64 [N]."""
    if name == "fp15":
        enc = get_encoding(name)
        return torch.tensor([enc.classify(w)[1] for w in enc.symbols() if "NaN" not in w],
                            dtype=torch.float64)
    m = torch.cat([torch.arange(-999, -99), torch.zeros(1, dtype=torch.int64), torch.arange(100, 1000)])
    e = torch.arange(-100, 101)
    mm, ee = torch.meshgrid(m, e, indexing="ij")
    vals = scale_by_pow10(mm.reshape(-1).to(torch.float64), ee.reshape(-1))
    return torch.unique(vals)


@pytest.mark.parametrize("name", NAMES)
def test_exact_round_trip_of_every_representable_value(name):
    enc = get_encoding(name)
    v = vocabulary(name)
    vals = representable(name)
    expected = {"p10": 1800 * 201 + 1, "p1000": 1800 * 201 + 1, "b1999": 1800 * 201 + 1,
                "fp15": 28999}[name]
    assert vals.numel() == expected
    ids, _, over = v.encode(enc, vals[:, None, None])
    assert not over.any()
    back, ok = v.decode(enc, ids, 1, 1)
    assert ok.all()
    assert torch.equal(back.reshape(-1), vals)
    ids2, _, _ = v.encode(enc, back)
    assert torch.equal(ids2, ids)


@pytest.mark.parametrize("name", NAMES)
def test_random_values_within_half_a_percent(name):
    enc = get_encoding(name)
    v = vocabulary(name)
    g = torch.Generator().manual_seed(0)
    n = 250_000  # x 4 encodings: 10^6 values
    mag = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * 12 - 6)  # 1e-6 .. 1e6
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    x = (mag * sign).reshape(-1, 10, 10)
    ids, _, over = v.encode(enc, x)
    assert not over.any()
    back, ok = v.decode(enc, ids, 10, 10)
    assert ok.all()
    rel = ((back - x).abs() / x.abs()).max().item()
    assert rel <= 0.005 + 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_malformed_sequences_are_reported_not_raised(name):
    enc = get_encoding(name)
    v = vocabulary(name)
    x = torch.tensor([[[1.5, -2.25]]], dtype=torch.float64).expand(6, 1, 2).clone()
    ids, lengths, _ = v.encode(enc, x)
    ids = torch.cat([ids, torch.full((6, 3), v.eos_id)], 1)
    L = lengths[0].item()
    bad = ids.clone()
    bad[0, 0] = v.index["V2"]                      # wrong header
    bad[1, L - 1] = v.eos_id                       # truncated last number
    bad[2, L] = bad[2, L - 1]                      # one token too many
    bad[3, 2] = v.index["<SPECIAL_3>"]             # a special token inside a number
    bad[4, 2:] = v.eos_id                          # nothing after the header
    vals, ok = v.decode(enc, bad, 1, 2)
    assert ok.tolist() == [False, False, False, False, False, True]
    assert (vals[:5] == 0).all() and torch.equal(vals[5], x[5].to(torch.float64).round(decimals=3))
    # tokens after the first <eos> are ignored; random garbage never raises
    after = ids.clone()
    after[:, L + 1:] = v.index["V7"]
    assert v.decode(enc, after, 1, 2)[1].all()
    garbage = torch.randint(0, v.size, (64, 40), generator=torch.Generator().manual_seed(1))
    _, ok = v.decode(enc, garbage, 1, 2)
    assert ok.dtype == torch.bool and ok.shape == (64,)


def test_p10_parses_short_mantissas():
    enc = get_encoding("p10")
    v = vocabulary("p10")
    ids = torch.tensor([[v.index[w] for w in "V1 V2 + 3 1 E-1 - 7 E2 <eos>".split()]])
    vals, ok = v.decode(enc, ids, 1, 2)
    assert ok.item() and vals.tolist() == [[[3.1, -700.0]]]
    too_long = torch.tensor([[v.index[w] for w in "V1 V1 + 3 1 4 1 E-1 <eos>".split()]])
    assert not v.decode(enc, too_long, 1, 1)[1].item()


def test_unknown_encoding_and_large_header():
    with pytest.raises(InputError, match="encoding"):
        get_encoding("p7")
    v = Vocabulary("fp15")
    with pytest.raises(InputError, match="dim"):
        v.encode(get_encoding("fp15"), torch.zeros(1, 101, 1, dtype=torch.float64))


def scalar_tokens(name, x):
    """An independent scalar writer with the reference's semantics: printf's %.2e for P10/P1000/
    B1999 (exponent below -100 -> zero), and for FP15 the mantissa int(v 10^(2-e) + 0.5) of
    v = |x| 10^7 with e = int(log10 v) clamped at 0."""
    if name == "fp15":
        v = abs(x) * 1e7
        if abs(x) > 1e9:
            return ["NaN" if x > 0 else "-NaN"]
        if v == 0:
            return ["N0e0"]
        e = max(int(math.log10(v)), 0)
        m = int(v * 10 ** (2 - e) + 0.5)
        if m == 1000:
            m, e = 100, e + 1
        if e >= 16:
            return ["NaN" if x > 0 else "-NaN"]
        return [("N" if x > 0 or m == 0 else "N-") + f"{m}e{e}"]
    mant, e = (f"{abs(x):.2e}").split("e")
    m, e = int(mant.replace(".", "")), int(e) - 2
    if e < -100:
        m = 0
    if m == 0:
        e = 0
    neg = x < 0 and m != 0
    if name == "b1999":
        return [f"N{-m if neg else m}", f"E{e}"]
    digits = [str(m)] if name == "p1000" else list(str(m))
    return ["-" if neg else "+"] + digits + [f"E{e}"]


@pytest.mark.parametrize("name", NAMES)
def test_tokens_agree_with_an_independent_scalar_writer(name):
    enc = get_encoding(name)
    v = vocabulary(name)
    g = torch.Generator().manual_seed(3)
    mag = 10 ** (torch.rand(4000, generator=g, dtype=torch.float64) * 24 - 12)
    x = mag * torch.where(torch.rand(4000, generator=g) < 0.5, -1.0, 1.0).double()
    edges = torch.tensor([0.0, 1.0, -1.0, 9.995, 0.5e-9, 1.5e-9, 1e-7, 99.95, 1e9, 1.1e9, 999.4999],
                         dtype=torch.float64)
    x = torch.cat([x, edges])
    ids, lengths, _ = v.encode(enc, x[:, None, None])
    for i, xi in enumerate(x.tolist()):
        assert v.to_words(ids[i])[2:] == scalar_tokens(name, xi), xi
