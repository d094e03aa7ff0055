"""Issue 26 item 1: where on a CPU one vmap over a stack stops paying against a plain loop over its
members, as a function of the member's largest buffer (what the trainer's chunking rule reads).

For models of several families and batch sizes (so member-step peaks from tens of KiB to MiBs),
a stack of M members takes training steps through the lab's step function mapped both ways,
``member_chunk = M`` (one vmap) and ``member_chunk = 1`` (a loop, then one flat update), in
interleaved rounds of CPU time (one intra-op thread). Printed per configuration: the probed
peak, ms per member-step each way, the median ratio loop time / vmap time (> 1: vmap faster)
with its min-max, and what the rule picks (``train/members.py``'s ``CPU_LOOP_ABOVE_BYTES``).

    python benchmarks/bench_chunk_rule.py --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig
from biaslab.train.members import CPU_LOOP_ABOVE_BYTES
from biaslab.train.optim import adamw_init
from biaslab.train.trainer import _probe_peak, make_step, member_chunk

# (label, model name, model params, task name, task params, batch, loss)
CONFIGS = [
    ("transformer d16 n6 1 layer", "transformer", {"d_model": 16, "n_heads": 2, "n_layers": 1,
                                                   "d_ff": 16}, "parity", {"n": 6}, [8, 32, 128], "mse"),
    ("transformer d16 n10", "transformer", {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 64},
     "parity", {"n": 10}, [16, 32, 64, 128, 512], "mse"),
    ("transformer d32 n20", "transformer", {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_ff": 128},
     "parity", {"n": 20}, [16, 64, 256], "mse"),
    ("transformer d64 n20", "transformer", {"d_model": 64, "n_heads": 2, "n_layers": 2, "d_ff": 256},
     "parity", {"n": 20}, [8, 32, 128], "mse"),
    ("lstm e16 h32 n9", "lstm", {"d_embed": 16, "hidden": 32}, "parity", {"n": 9}, [16, 64, 128, 512],
     "mse"),
    ("decoder d32 3 layers (anchor)", "decoder", {"d_model": 32, "d_ff": 96, "d_head": 16,
                                                  "n_layers": 3}, "anchor", {}, [32, 256], "ce"),
    ("grokking d64 p31", "grokking", {"d_model": 64, "n_heads": 4, "d_ff": 256},
     "modular", {"p": 31, "train_fraction": 0.4}, [384], "ce"),
    ("grokking d128 p31", "grokking", {"d_model": 128, "n_heads": 4, "d_ff": 512},
     "modular", {"p": 31, "train_fraction": 0.4}, [24, 96, 384], "ce"),
]


def steps_fn(model, params, task, batch, loss, members, chunk):
    stack = Stack(model, params, task, [Member(seed=s, lr=1e-3) for s in range(members)])
    cfg = TrainConfig(batch=batch, loss=loss, member_chunk=chunk)
    step = make_step(stack, cfg)
    state = {"p": stack.params, "o": adamw_init(stack.params), "t": 0}
    lr, wd, clip = stack.hyper("lr"), stack.hyper("weight_decay"), stack.hyper("clip_norm")
    active = torch.ones(members, dtype=torch.bool)

    def one():
        state["p"], state["o"], _, _ = step(state["p"], state["o"], torch.tensor(state["t"]), lr,
                                            wd, clip, active, stack.buffers, stack.task_states,
                                            stack.seed_keys)
        state["t"] += 1
    return stack, cfg, one


def cpu_seconds(fn, calls):
    t0 = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - t0) / calls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--budget", type=float, default=0.4, help="CPU seconds per timing")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    M = args.members
    print(f"# chunk rule on {platform.processor() or platform.machine()} (1 thread), torch "
          f"{torch.__version__}; M = {M}, {args.rounds} interleaved rounds of CPU time; the rule "
          f"loops above {CPU_LOOP_ABOVE_BYTES // 1024} KiB")
    print("| model | batch | peak KiB | vmap ms/member-step | loop ms/member-step | loop / vmap "
          "(min-max) | rule picks |")
    print("|---|---:|---:|---:|---:|---|---|")
    for label, model, params, task_name, task_params, batches, loss in CONFIGS:
        task = make_task(task_name, task_params)
        for batch in batches:
            stack, cfg, vm = steps_fn(model, params, task, batch, loss, M, M)
            _, _, lp = steps_fn(model, params, task, batch, loss, M, 1)
            peak = _probe_peak(stack, cfg)
            auto = member_chunk(stack, cfg.model_copy(update={"member_chunk": None}), batch, M)
            for f in (vm, lp):
                f()
            t = time.process_time()
            vm()
            calls = max(1, int(args.budget / max(time.process_time() - t, 1e-4)))
            times = {"vmap": [], "loop": []}
            for r in range(args.rounds):
                for name, f in ((("vmap", vm), ("loop", lp)) if r % 2 == 0 else (("loop", lp), ("vmap", vm))):
                    times[name].append(cpu_seconds(f, calls) / M * 1e3)
            ratios = [lo / v for lo, v in zip(times["loop"], times["vmap"])]
            pick = "vmap" if auto is None or auto > 1 else "loop"
            print(f"| {label} | {batch} | {peak / 1024:.0f} | {statistics.median(times['vmap']):.2f} | "
                  f"{statistics.median(times['loop']):.2f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) | {pick} |", flush=True)


if __name__ == "__main__":
    main()
