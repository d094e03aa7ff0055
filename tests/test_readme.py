"""The README's tour, command by command, as written in README.md (parsed from it, so the README
cannot drift from what works), in a fresh folder whose `runs/demo.sqlite` holds a tiny demo
(the `tiny_store` fixture: the demo's reproduce on a 2-run grid). Commands that read run for real;
`run` and `reproduce` resolve, validate and plan their spec and print their plan, and training
is left out (its cost is the point of `make demo`, which CI does not run): every other step of
theirs runs. The demo's store and the Makefile's agree with the CLI's default."""

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import biaslab.execute
import biaslab.execute.batch
from biaslab.cli import main
from biaslab.cli.common import DEFAULT_STORE

ROOT = Path(__file__).resolve().parents[1]


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## A five-minute tour\s+```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no tour block"
    lines = [ln.split("  #")[0].strip() for ln in block.group(1).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("source ")]


def test_the_demo_and_the_tour_share_the_default_store():
    make = (ROOT / "Makefile").read_text()
    assert re.search(rf"^STORE \?= {re.escape(DEFAULT_STORE)}$", make, re.M)
    assert "--store $(STORE)" in make
    reports = [c for c in tour_commands() if c.startswith("biaslab report")]
    assert reports and all("--out report " not in c + " " for c in reports)  # not the demo's


@pytest.fixture
def plan_only(monkeypatch):
    def run_one(experiment, spec, store, device="auto", **kw):
        return {"planned": len(experiment.plan(spec)), "skipped": 0, "trained": 0, "seconds": 0.0}

    def run_many(items, store, device="auto", on_done=None, **kw):
        out = {}
        for exp, spec in items:
            out[exp.name] = run_one(exp, spec, store)
            if on_done:
                on_done(exp, out[exp.name])
        return out
    import biaslab.experiments.claims as claims

    real_check = claims.check_claims

    def check_trained(store, wanted, runs=None, *a, **k):  # claims of experiments with runs
        have = set(store.experiments())
        return real_check(store, [c for c in wanted if c.experiment in have], runs, *a, **k)
    monkeypatch.setattr(claims, "check_claims", check_trained)
    monkeypatch.setattr(biaslab.execute, "run_experiment", run_one)
    monkeypatch.setattr(biaslab.execute.batch, "run_experiments", run_many)


def test_every_tour_command_runs_as_written(tiny_store, tmp_path, monkeypatch, plan_only):
    store = tmp_path / DEFAULT_STORE
    store.parent.mkdir(parents=True)
    shutil.copyfile(tiny_store, store)
    monkeypatch.chdir(tmp_path)
    commands = tour_commands()
    assert len(commands) >= 10
    for command in commands:
        words = shlex.split(command)
        if words[0] == "python":
            subprocess.run([sys.executable, *words[1:]], check=True, cwd=tmp_path)
            continue
        assert words[0] == "biaslab", command
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(words[1:])
        assert code == 0, (command, err.getvalue())
        if words[1] in ("run", "reproduce"):
            assert "plan: " in err.getvalue(), command
    assert (tmp_path / "report-tour" / "index.html").exists()
    assert (tmp_path / "runs.parquet").exists()
