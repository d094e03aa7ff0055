"""Issue 26's "whole process" row: one command that trains and measures M runs, start to end,
the lab's CLI against a script that does what the reference does, as separate processes.

  lab        ``python -m biaslab run sharpness-scaling`` on the cpu preset's model (d 32, 2 heads,
             2 layers, FFN 32), PARITY n = 4, batch 256, 100 steps (no early stop), then the
             preset's measurement phase (4 batches of 512, 10 weight-noise draws each) and the
             store's writes: Python start-up, imports, planning, training, measuring, storing.
  reference  ``python benchmarks/bench_process.py --reference-child M``: imports torch, then for
             each of M models one after another the loop of lacoco-lab/sensitivity-hardness
             ``src/training.py`` ``train`` (``bench_reference.reference_steps``: host-sampled
             batches, ``nn.TransformerEncoder``, AdamW, ``.item()`` logging) for 100 steps, then a
             measurement as ``src/measurements.py`` does it (per batch a clean forward, then 10
             forwards with ``torch.randn`` noise on every parameter but the positions, each read
             with ``.item()``; the LayerNorm blow-up, which needs activation hooks, left out: a
             cheaper, stricter baseline). Results go nowhere.

Interleaved rounds (the order alternating), each child's user + system CPU time and peak
resident memory from ``os.wait4``; printed: runs/s each way, the median ratio (reference CPU time
/ lab CPU time, > 1: the lab is faster) with its min-max, and the peak memory.

    python benchmarks/bench_process.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = {"d": 32, "heads": 2, "layers": 2, "n": 4, "batch": 256}
STEPS, BATCHES, BATCH, DRAWS, SIGMA = 100, 4, 512, 10, 0.02


def reference_child(models: int) -> None:
    import torch
    import torch.nn as nn
    from torch.func import functional_call

    sys.path.insert(0, str(HERE))
    from bench_reference import ReferenceModel, reference_steps

    torch.set_num_threads(1)
    for seed in range(models):
        step = reference_steps(SIZE, 1, seed)
        for _ in range(STEPS):
            step()
        model = ReferenceModel(SIZE["d"], SIZE["heads"], SIZE["layers"], SIZE["n"]).eval()
        gen = torch.Generator().manual_seed(seed)
        crit = nn.MSELoss()
        sharp = 0.0
        with torch.inference_mode():
            for _ in range(BATCHES):
                x = torch.randint(0, 2, (BATCH, SIZE["n"]), generator=gen)
                y = (x.sum(1) % 2).float()
                diff = -crit(model(x), y).item()
                for _ in range(DRAWS):
                    noised = {k: p + torch.randn(p.size(), generator=gen) * SIGMA
                              for k, p in model.state_dict().items() if not k.startswith("positional")}
                    diff += crit(functional_call(model, noised, (x,)), y).item() / DRAWS
                sharp += diff / BATCHES


def run_child(cmd: list, env: dict) -> tuple[float, float]:
    """(user + system CPU seconds, peak resident MiB) of one child process."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"child failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--members", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--reference-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reference_child is not None:
        return reference_child(args.reference_child)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    print(f"# whole process: lab CLI vs a reference-style script, {args.rounds} interleaved rounds, "
          f"CPU time (user + sys) and peak RSS per child; model {SIZE}, {STEPS} steps, "
          f"{BATCHES}x{BATCH} measurement batches, {DRAWS} draws")
    print("| runs (M) | lab runs/s | reference runs/s | ratio (min-max) | lab peak MiB | "
          "reference peak MiB |")
    print("|---:|---:|---:|---|---:|---:|")
    for m in args.members:
        seeds = "[" + ",".join(str(s) for s in range(m)) + "]"
        times = {"lab": [], "ref": []}
        rss = {"lab": [], "ref": []}
        for r in range(args.rounds):
            order = ("lab", "ref") if r % 2 == 0 else ("ref", "lab")
            for who in order:
                with tempfile.TemporaryDirectory() as tmp:
                    if who == "lab":
                        cmd = [sys.executable, "-m", "biaslab", "run", "sharpness-scaling",
                               "--only", "sweeps=A", "--only", "sweeps.A.targets=parity",
                               "--only", "sweeps.A.ns=4", "--store", f"{tmp}/s.sqlite", "--yes",
                               "--quiet", f"sweeps.A.train.steps={STEPS}",
                               "sweeps.A.train.stop_on_converge=false", f"sweeps.A.seeds={seeds}"]
                    else:
                        cmd = [sys.executable, __file__, "--reference-child", str(m)]
                    t, mem = run_child(cmd, env)
                times[who].append(t)
                rss[who].append(mem)
        ratios = [rf / lb for rf, lb in zip(times["ref"], times["lab"])]
        print(f"| {m} | {m / statistics.median(times['lab']):.3f} | "
              f"{m / statistics.median(times['ref']):.3f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | {statistics.median(rss['lab']):.0f} | "
              f"{statistics.median(rss['ref']):.0f} |", flush=True)


if __name__ == "__main__":
    main()
