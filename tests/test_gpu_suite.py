"""benchmarks/gpu_suite.sh, the GPU checks in stages of one device call: every experiment with
a `gpu` preset has a stage in ORDER, and `next` walks ORDER, resuming a stage cut by its budget and
skipping one that failed by itself. Driven here with a stand-in `python3` on PATH (no GPU)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from biaslab.registry import EXPERIMENTS
from biaslab.spec import presets_of

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
# named stages that run an experiment's claims besides benchmarks
NAMED = {"vision": "vision-sensitivity", "grokking": "grokking-sensitivity"}


def order() -> list[str]:
    text = SUITE.read_text()
    body = re.search(r"^ORDER=\((.*?)\)", text, re.S | re.M).group(1)
    return body.split()


def test_every_gpu_preset_has_a_stage_in_order():
    staged = {s.removeprefix("exp-") for s in order() if s.startswith("exp-")}
    staged |= {NAMED[s] for s in order() if s in NAMED}
    with_gpu = {n for n in EXPERIMENTS.names() if "gpu" in presets_of(n)}
    assert with_gpu and not with_gpu - staged, sorted(with_gpu - staged)
    assert len(order()) == len(set(order()))


def _suite(tmp_path, stage, exit_code=0):
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "python3").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\nexit {exit_code}\n")
    (fake / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "OUT": str(tmp_path / "out")}
    return subprocess.run(["bash", str(SUITE), stage], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def test_next_runs_the_first_unfinished_stage_and_resumes_a_cut_one(tmp_path):
    done = tmp_path / "gpu-store" / "done"
    done.mkdir(parents=True)
    stages = order()
    for s in stages[:2]:  # the two benchmarks are done
        (done / s).touch()
    first = stages[2]
    assert first.startswith("exp-")
    r = _suite(tmp_path, "next", exit_code=124)  # cut by the budget: not done, repeated next time
    assert r.returncode == 0, r.stderr
    assert f"next stage is {first}" in r.stdout
    assert f"reproduce --experiment {first[4:]} --preset gpu" in (tmp_path / "calls").read_text()
    assert not (done / first).exists() and not (done / f"{first}.failed").exists()
    r = _suite(tmp_path, "next")  # the same stage again; this time it ends by itself
    assert f"next stage is {first}" in r.stdout and (done / first).exists()
    assert (tmp_path / "out" / "gpu-store" / "done" / first).exists()  # comes back under $OUT
    r = _suite(tmp_path, "next", exit_code=2)  # a failure of its own is skipped from then on
    second = stages[3]
    assert f"next stage is {second}" in r.stdout and (done / f"{second}.failed").read_text() == "2\n"
    r = _suite(tmp_path, "next")
    assert f"next stage is {stages[4]}" in r.stdout


@pytest.mark.parametrize("stage", ["nonsense"])
def test_unknown_stage_is_one_line_exit_2(tmp_path, stage):
    r = _suite(tmp_path, stage)
    assert r.returncode == 2 and "stage: next" in r.stderr
