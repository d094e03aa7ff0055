"""The one claim path: `reproduce` checks a claim on the runs of the preset it ran, stores that
verdict (with the preset, the run count and the time), prints it, and the report shows the same
stored verdict, even when the store holds other runs of the experiment that would change it."""

import html
import json

import pytest

from biaslab.cli import main
from biaslab.registry import CLAIMS
from biaslab.store import Store

TINY_MODEL = ["model.params.d_model=8", "model.params.n_heads=2", "model.params.n_layers=1",
              "model.params.d_ff=8"]
CASES = {
    # claim: (overrides of the reproduced preset, overrides of other runs already in the store)
    "lowsens-learned-below-random": (
        ["n=4", "train_sizes=[4]", "function_seeds=[0,1]", "random_completions=1",
         "train.steps=20", "train.batch=8", "train.eval_every=10", *TINY_MODEL],
        ["n=4", "train_sizes=[4]", "function_seeds=[2,3,4]", "random_completions=1",
         "train.steps=20", "train.batch=8", "train.eval_every=10", *TINY_MODEL]),
    "majority-extends-parity-fails": (
        ["n=3", "seeds=[0,1,2]", "test_lengths=[3,7]", "positions=[none]", "train.steps=20",
         "train.batch=32", "train.eval_every=10", "eval_batches=1", "eval_batch=32", *TINY_MODEL],
        ["n=3", "seeds=[3,4]", "test_lengths=[3,7]", "positions=[none]", "train.steps=20",
         "train.batch=32", "train.eval_every=10", "eval_batches=1", "eval_batch=32", *TINY_MODEL]),
}


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("claim", sorted(CASES))
def test_reproduce_stores_and_shows_the_verdict_it_prints(claim, capsys, tmp_path):
    store_path, report = tmp_path / "s.sqlite", tmp_path / "report"
    preset_over, other_over = CASES[claim]
    experiment = CLAIMS.get(claim).experiment
    # Other runs of the same experiment are in the store already (another spec).
    cli(capsys, "run", experiment, *other_over, "--store", store_path, "--quiet")
    sets = [a for o in preset_over for a in ("--set", o)]
    printed = json.loads(cli(capsys, "reproduce", claim, "--preset", "cpu", *sets,
                             "--store", store_path, "--report", report, "--json", "--quiet"))
    assert [p["claim"] for p in printed] == [claim]
    p = printed[0]
    with Store(store_path, create=False) as store:
        stored = {v["claim"]: v for v in store.verdicts()}[claim]
        every_run = CLAIMS.get(claim).check(store.table(experiment))
    assert (stored["status"], stored["summary"], stored["numbers"]) == \
        (p["status"], p["summary"], p["numbers"])
    assert stored["preset"] == p["preset"] == "cpu" and stored["runs"] == p["runs"]
    assert stored["checked"] == p["checked"]
    # Checked on all stored runs, the claim reads differently: the printed verdict is the plan's.
    assert every_run.summary != p["summary"]
    page = (report / "index.html").read_text()
    assert html.escape(p["summary"]) in page and html.escape(every_run.summary) not in page
    assert "preset cpu" in page
    # `biaslab report` shows the stored verdict again; it does not recompute it.
    cli(capsys, "report", "--store", store_path, "--out", tmp_path / "again")
    page = (tmp_path / "again" / "index.html").read_text()
    assert html.escape(p["summary"]) in page
    with Store(store_path, create=False) as store:
        assert {v["claim"]: v for v in store.verdicts()}[claim]["checked"] == p["checked"]
