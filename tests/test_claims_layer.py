"""The claims layer: comparisons with their tie band and run minimum (each against values worked
by hand), the one combination, sourced bars, scale labels, replicate seed sets, and the markdown
of `biaslab results` read back from a store."""

import math

import pytest

from biaslab.experiments import rules
from biaslab.experiments.claims import (FAIL, INCONCLUSIVE, PASS, Bar, Verdict, combine,
                                        not_testable, register_claim)
from biaslab.experiments.provenance import replicate_spec, scale_diff, seed_fields, stability


def test_combine_is_the_one_vocabulary():
    assert combine([]) == INCONCLUSIVE
    assert combine([PASS, PASS]) == PASS
    assert combine([PASS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, FAIL, PASS]) == FAIL
    assert combine([rules.Part(PASS, ""), rules.Part(PASS, "")]) == PASS


def test_compare_means_decides_beyond_two_standard_errors_only():
    # a: mean 2, sd 1 (n 3) -> se 1/sqrt3; b: mean 0, same -> se of the difference sqrt(2/3) = 0.816
    a, b = [1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]
    part = rules.compare_means(a, b, label="a vs b")
    assert part.numbers["diff"] == 2.0 and part.numbers["se"] == pytest.approx(math.sqrt(2 / 3), abs=1e-4)
    assert part.status == PASS  # 2 > 2 * 0.816
    assert rules.compare_means(b, a, label="x").status == FAIL
    assert rules.compare_means(a, b, label="x", direction="less").status == FAIL
    # a difference of 1.5 with se 0.816 is within 2 se: a tie, never a cliff
    assert rules.compare_means([0.5, 1.5, 2.5], b, label="x").status == INCONCLUSIVE
    assert rules.compare_means(a, b, label="x", margin=1.0).status == INCONCLUSIVE


def test_cells_under_three_runs_are_too_few_whatever_the_gap():
    part = rules.compare_means([10.0, 10.1], [0.0, 0.1, 0.2], label="gap")
    assert part.status == INCONCLUSIVE and "too few runs" in part.text
    assert rules.compare_paired([5.0, 5.0], label="p").status == INCONCLUSIVE
    assert rules.compare_to_bar([1.0, float("nan"), None, 2.0], 0.0, label="b").status == INCONCLUSIVE


def test_paired_and_bar_comparisons():
    assert rules.compare_paired([1.0, 1.1, 0.9, 1.0], label="p").status == PASS
    assert rules.compare_paired([1.0, -1.1, 0.9, -1.0], label="p").status == INCONCLUSIVE
    assert rules.compare_to_bar([0.5, 0.6, 0.55], 0.9, label="b", direction="less").status == PASS
    assert rules.compare_to_bar([0.5, 0.6, 0.55], 0.9, label="b").status == FAIL


def test_slopes_with_their_standard_errors():
    xs = [1, 2, 3, 4, 5]
    f = rules.slope_fit(xs, [2.0, 4.1, 5.9, 8.0, 10.1])
    # independent: numpy's least squares and the textbook standard error
    import numpy as np
    b, a = np.polyfit(xs, [2.0, 4.1, 5.9, 8.0, 10.1], 1)
    resid = np.array([2.0, 4.1, 5.9, 8.0, 10.1]) - (a + b * np.array(xs))
    se = math.sqrt((resid ** 2).sum() / 3 / ((np.array(xs) - 3) ** 2).sum())
    assert f["slope"] == pytest.approx(b) and f["se"] == pytest.approx(se)
    assert rules.slope_vs(xs, [2.0, 4.1, 5.9, 8.0, 10.1], label="s").status == PASS
    flat = [1.0, 1.2, 0.9, 1.1, 1.0]
    assert rules.slope_vs(xs, flat, label="s").status == INCONCLUSIVE
    assert rules.compare_slopes(xs, [2.0, 4.1, 5.9, 8.0, 10.1], xs, flat, label="c").status == PASS
    assert rules.compare_slopes(xs, flat, xs, [2.0, 4.1, 5.9, 8.0, 10.1], label="c").status == FAIL
    assert rules.slope_vs([1, 2], [1.0, 2.0], label="s").status == INCONCLUSIVE  # too few points


def test_correlations_decided_on_fisher_z():
    xs = list(range(12))
    assert rules.correlation_vs(xs, [x * 2.0 for x in xs], 0.0, label="r").status == PASS
    assert rules.correlation_vs(xs, [-x * 1.0 for x in xs], 0.0, label="r").status == FAIL
    # r = 0.3 on 12 points: z 0.31, se 1/3 -> within 2 se of 0
    ys = [0, 5, 1, 3, 7, 2, 4, 9, 0, 6, 3, 5]
    r = rules.correlation_vs(xs, ys, 0.0, label="r", method="pearson")
    assert r.status == INCONCLUSIVE and abs(r.numbers["r"]) < 0.6
    # a constant variable has no correlation: not a PASS of exactly 0.0
    assert rules.correlation_vs(xs, [1.0] * 12, 0.0, label="r").status == INCONCLUSIVE
    assert "too few runs" in rules.correlation_vs([1, 2, 3], [1, 2, 3], label="r").text


def test_verdict_collects_parts_and_not_testable_is_marked():
    v = rules.verdict([rules.Part(PASS, "a", {"x": 1}), rules.Part(INCONCLUSIVE, "b")], {"n": 2})
    assert v.status == INCONCLUSIVE and v.summary == "a; b" and v.numbers["n"] == 2
    assert [p["status"] for p in v.numbers["parts"]] == [PASS, INCONCLUSIVE]
    nt = not_testable("no run found the inferential solution", {"runs": 4})
    assert nt.status == INCONCLUSIVE and nt.not_testable and nt.summary.startswith("not testable at this scale")


def test_every_bar_needs_a_source():
    with pytest.raises(ValueError, match="source"):
        register_claim("x-no-source", "e", "s", "p", statistic="s", comparison="c",
                       bars=[Bar("r", "0.8", "  ")])
    with pytest.raises(ValueError, match="unknown statuses"):
        register_claim("x-bad-cannot", "e", "s", "p", statistic="s", comparison="c",
                       bars=[rules.TIE_BAR], cannot={"MAYBE": "?"})


def test_scale_names_the_fields_that_differ_from_the_paper():
    ours = {"n": 6, "model": {"d_model": 64, "n_layers": 2}, "train": {"steps": 3000}, "seeds": [0, 1, 2]}
    paper = {"n": 6, "model": {"d_model": 400, "n_layers": 2}, "train": {"steps": 78000},
             "seeds": list(range(9))}
    assert scale_diff(ours, paper) == ["model.d_model 64 vs 400", "seeds [0, 1, 2] vs [0, 1, 2, ... 9 values]",
                                       "train.steps 3,000 vs 78,000"]
    assert scale_diff(paper, paper) == []


def test_replicates_shift_every_seed_list_and_nothing_else():
    from biaslab.experiments import get_experiment
    from biaslab.spec import resolve

    exp = get_experiment("lowsens-generalization")
    spec = resolve(exp.Spec, "lowsens-generalization", "cpu")
    fields = seed_fields(spec)
    assert "function_seeds" in fields and "model_seeds" in fields
    r2 = replicate_spec(spec, 2)
    for f in fields:
        before, after = getattr(spec, f), getattr(r2, f)
        assert after == [s + 2000 for s in before]
    assert r2.model_dump() | {f: None for f in fields} == spec.model_dump() | {f: None for f in fields}
    assert replicate_spec(spec, 0) is spec
    ids0 = {p.id for p in exp.plan(spec)}
    assert ids0.isdisjoint({p.id for p in exp.plan(replicate_spec(spec, 1))})
    assert stability([PASS, PASS, PASS]) == "stable" and stability([PASS, FAIL]) == "seed-dependent"


def test_results_markdown_reads_the_stored_verdicts(tmp_path, capsys):
    from biaslab.cli import main
    from biaslab.experiments.claims import check_claims
    from biaslab.registry import CLAIMS
    from biaslab.store import Store

    path = tmp_path / "s.sqlite"
    claim = CLAIMS.get("lowsens-learned-below-random")
    with Store(path) as store:
        check_claims(store, [claim], preset="cpu", replicates={claim.name: [PASS, FAIL]})
    assert main(["results", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| `lowsens-learned-below-random` |" in out and "seed-dependent" in out
    assert "commit `" in out and "torch" in out and "Cost of each experiment" in out
    assert main(["results", "--store", str(path), "--preset", "gpu"]) == 2
    assert "preset" in capsys.readouterr().err


def test_scale_diff_matches_entries_of_a_list_by_their_task():
    ours = {"entries": [{"task": "transpose", "dim": 3}, {"task": "matrix_sum", "dim": 2}]}
    paper = {"entries": [{"task": "matrix_sum", "dim": 10}, {"task": "transpose", "dim": 10},
                         {"task": "eigenvalues", "dim": 5}]}
    assert scale_diff(ours, paper) == [
        "entries[eigenvalues] - vs an entry", "entries[matrix_sum].dim 2 vs 10",
        "entries[transpose].dim 3 vs 10"]
