"""Start-up and memory of a process (issue 26 item 2): what a command imports, what a training
process pulls in, how its buffers are allocated. Each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("matplotlib", "ray", "transformers", "pandas", "pyarrow", "sklearn", "jinja2")


def _run(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_list_load_no_plotting_ray_or_hf():
    got = _run(f"""
import io, contextlib, json, sys
import biaslab
after_import = sorted(m for m in {HEAVY!r} if m in sys.modules)
from biaslab.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["list"])
print(json.dumps({{"import": after_import, "code": code, "listed": "sharpness-scaling" in out.getvalue(),
                  "list": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
""")
    assert got["code"] == 0 and got["listed"]
    assert got["import"] == [] and got["list"] == []


def test_looped_training_and_its_probes_do_not_import_dynamo():
    # The chunking rule's probe ran on meta tensors, whose Python kernels import torch._dynamo
    # (2 s of CPU, ~70-200 MiB resident) in every process; a looped stack needs none of it.
    got = _run("""
import json, sys, torch
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train
from biaslab.train.trainer import member_chunk
stack = Stack("transformer", {"d_model": 8, "n_heads": 1, "n_layers": 1, "d_ff": 8},
              make_task("parity", {"n": 4}), [Member(seed=0), Member(seed=1)])
cfg = TrainConfig(steps=2, batch=16, eval_batch=16, member_chunk=1)
probed = member_chunk(stack, cfg.model_copy(update={"member_chunk": None}), 16, 2)
peak = stack.forward_peak((16, 4))
train(stack, cfg)
print(json.dumps({"dynamo": "torch._dynamo" in sys.modules, "probed": probed, "peak": peak}))
""")
    assert got["probed"] is None and got["peak"] > 0  # the probe ran: two small members, one vmap
    assert not got["dynamo"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_tuned_malloc_reuses_freed_step_buffers():
    # A "step" that allocates three 8 MiB buffers and frees them: with glibc's defaults the freed
    # heap top is given back and page-faulted in again on every step; tuned, it is reused.
    got = _run("""
import json, resource, torch
from biaslab.train.allocator import tune_malloc
def faults_per_step(steps=10):
    for _ in range(2):
        bufs = [torch.ones(2 * 2**20) for _ in range(3)]
        del bufs
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        bufs = [torch.ones(2 * 2**20) for _ in range(3)]
        del bufs
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps
default = faults_per_step()
tuned = tune_malloc()
print(json.dumps({"default": default, "tuned": tuned, "after": faults_per_step()}))
""")
    if not got["tuned"]:
        pytest.skip("not glibc")
    # glibc's defaults fault the freed buffers in again (measured 200-6,000 pages a step, its
    # dynamic thresholds vary from process to process); tuned, the freed heap is reused and a
    # step faults in (almost) nothing
    assert got["after"] < 30, got
