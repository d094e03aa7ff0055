"""How long would `sharpness-scaling --preset paper` (Hahn & Rofin E1, 1,680 runs) take here?

On a GPU, run it: `biaslab run sharpness-scaling --preset paper` and time it. On a CPU that would
take days, so this script measures a fraction and extrapolates: for a few groups per sweep
(smallest, middle and largest n), it builds the real stack (all seeds of the group), times
training steps of the real step function and the real sharpness measurement on one batch, and
scales by the preset's steps and batches; other n are interpolated linearly (cost is linear in
the sequence length for these short inputs). Every group trains its full step budget (the paper
preset does not stop early).

    python benchmarks/bench_paper_time.py --device cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from biaslab.experiments import get_experiment
from biaslab.experiments.common import ModelChoice
from biaslab.experiments.hahn_rofin.protocol import MeasureSpec, measurement_batches, sharpness_of
from biaslab.execute.plan import stacks_of
from biaslab.spec import resolve
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig
from biaslab.train.optim import adamw_init
from biaslab.train.trainer import make_step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def group_costs(plans, device, steps_probe, member_chunk):
    """Seconds per training step and per measured batch for one group's stack."""
    c0 = plans[0].config
    task = make_task(c0["target"], {"n": c0["n"]})
    members = [Member(seed=p.config["seed"], lr=p.config["lr"], weight_decay=p.config["weight_decay"])
               for p in plans]
    model = ModelChoice(**c0["model"])
    stack = Stack(model.name, model.params, task, members, device)
    cfg = TrainConfig(**c0["train"])
    step = make_step(stack, cfg)
    params, opt = stack.params, adamw_init(stack.params)
    lr, wd, clip = stack.hyper("lr"), stack.hyper("weight_decay"), stack.hyper("clip_norm")
    active = torch.ones(stack.M, dtype=torch.bool, device=device)
    args = (lr, wd, clip, active, stack.buffers, stack.task_states, stack.seed_keys)
    params, opt, _, _ = step(params, opt, torch.tensor(0, device=device), *args)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for s in range(1, steps_probe + 1):
        params, opt, _, _ = step(params, opt, torch.tensor(s, device=device), *args)
    sync(device)
    per_step = (time.perf_counter() - t0) / steps_probe
    m = MeasureSpec(**{**c0["measure"], "batches": 1, "member_chunk": member_chunk})
    batches = measurement_batches(stack, m)
    sync(device)
    t0 = time.perf_counter()
    sharpness_of(stack, cfg.loss, batches, m)
    sync(device)
    per_batch = time.perf_counter() - t0
    return per_step, per_batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=2, help="training steps timed per sampled group")
    ap.add_argument("--member-chunk", type=int, default=4, help="members per vmapped measurement")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    exp = get_experiment("sharpness-scaling")
    spec = resolve(exp.Spec, exp.name, "paper")
    plans = exp.plan(spec)
    groups = [members for _, members in stacks_of(plans, None)]
    by_sweep: dict[str, dict[int, list]] = {}
    for g in groups:
        c = g[0].config
        by_sweep.setdefault(c["sweep"], {}).setdefault(c["n"], []).append(g)
    print(f"# sharpness-scaling --preset paper: {len(plans)} runs in {len(groups)} stacks; "
          f"device {device}, torch {torch.__version__}")
    print(f"{'sweep':<6}{'n':>5}{'members':>9}{'s/step':>10}{'s/batch':>10}{'group h':>10}")
    total, measured_s = 0.0, 0.0
    for sweep, ns in by_sweep.items():
        keys = sorted(ns)
        sample = sorted({keys[0], keys[len(keys) // 2], keys[-1]})
        costs = {}
        for n in sample:
            t0 = time.perf_counter()
            costs[n] = group_costs(ns[n][0], device, args.steps, args.member_chunk)
            measured_s += time.perf_counter() - t0
        for n in keys:
            lo = max([k for k in sample if k <= n])
            hi = min([k for k in sample if k >= n])
            w = 0.0 if hi == lo else (n - lo) / (hi - lo)
            per_step = (1 - w) * costs[lo][0] + w * costs[hi][0]
            per_batch = (1 - w) * costs[lo][1] + w * costs[hi][1]
            for g in ns[n]:
                c = g[0].config
                secs = per_step * c["train"]["steps"] + per_batch * c["measure"]["batches"]
                total += secs
            if n in sample:
                print(f"{sweep:<6}{n:>5}{len(ns[n][0]):>9}{per_step:>10.3f}{per_batch:>10.3f}{secs / 3600:>10.2f}")
    print(f"estimated total: {total / 3600:.1f} h for the whole preset on this machine "
          f"(measured {measured_s:.0f} s of it; training at full step budgets, no early stop)")


if __name__ == "__main__":
    main()
