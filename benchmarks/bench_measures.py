"""Time landscape/norm measures on M members: one vmapped call vs a Python loop over members.

    python benchmarks/bench_measures.py --device cuda            # reference sharpness model
    python benchmarks/bench_measures.py --small                  # tiny config, CPU in ~1 min

The default model is the sharpness paper's (d_model 128, 2 heads, 2 layers, d_ff 128, post-LN,
PARITY n=20, batch 1024). Each member gets its own batch, as in evaluation. The loop calls the
single-model measure on ``stack.member(i)`` (modules built before timing, so only measuring is
timed); the vmapped call is the ``*_stack`` variant. Both use the same keys, and the table also
shows the largest relative difference between their results as a sanity check.
"""

from __future__ import annotations

import argparse
import time

import torch

from biaslab import rng
from biaslab.measure.landscape import hessian_trace, perturbation_sharpness
from biaslab.measure.norms import layernorm_blowup
from biaslab.tasks import make_task
from biaslab.train import Member, Stack
from biaslab.train.losses import get_loss

FULL = dict(model={"d_model": 128, "n_heads": 2, "n_layers": 2, "d_ff": 128}, n=20, batch=1024)
SMALL = dict(model={"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 16}, n=10, batch=64)


def timed(fn, device, repeats: int):
    """Best-of-``repeats`` wall time of fn() after one warm-up call; returns (seconds, result)."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny model and batch, for the CPU")
    ap.add_argument("--batch", type=int, default=None, help="examples per member")
    ap.add_argument("--draws", type=int, default=10, help="sharpness noise draws")
    ap.add_argument("--probes", type=int, default=4, help="Hutchinson probes")
    ap.add_argument("--probe-chunk", type=int, default=None,
                    help="probes per vmapped chunk; default all with --small, else 1 "
                         "(forward-over-reverse keeps activations of members x chunk x batch: "
                         "~1 GB per member and probe at the reference size)")
    ap.add_argument("--member-chunk", type=int, default=None, help="members per vmapped chunk")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU intra-op threads (default 1 on the CPU: these ops are small, and on "
                         "a busy machine thread barriers made them ~10x slower)")
    args = ap.parse_args(argv)
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)

    cfg = SMALL if args.small else FULL
    device = torch.device(args.device)
    batch = args.batch or cfg["batch"]
    M = args.members
    task = make_task("parity", {"n": cfg["n"]})
    stack = Stack("transformer", cfg["model"], task, [Member(seed=s) for s in range(M)], device)
    keys = rng.derive(rng.key_of(1234, device), torch.arange(M, device=device))
    xs, ys = torch.vmap(lambda s, k: task.sample(s, k, batch))(stack.task_states, keys)
    mods = [stack.member(i) for i in range(M)]
    mse = get_loss("mse").fn
    pc = args.probe_chunk or (args.probes if args.small else 1)
    print(f"device {device}, {M} members, model {cfg['model']}, parity n={cfg['n']}, "
          f"batch {batch}, draws {args.draws}, probes {args.probes} (chunk {pc}), "
          f"threads {torch.get_num_threads()}")

    cases = {
        "perturbation_sharpness": (
            lambda: perturbation_sharpness(stack, mse, (xs, ys), draws=args.draws, key=0,
                                           member_chunk=args.member_chunk),
            lambda: torch.stack([perturbation_sharpness(m, mse, (xs[i], ys[i]), draws=args.draws,
                                                        key=0) for i, m in enumerate(mods)])),
        "hessian_trace": (
            lambda: hessian_trace(stack, mse, (xs, ys), probes=args.probes, key=0, chunk=pc,
                                  member_chunk=args.member_chunk),
            lambda: torch.stack([hessian_trace(m, mse, (xs[i], ys[i]), probes=args.probes, key=0,
                                               chunk=pc) for i, m in enumerate(mods)])),
        "layernorm_blowup": (
            lambda: layernorm_blowup(stack, xs, member_chunk=args.member_chunk)["blowup"],
            lambda: torch.stack([layernorm_blowup(m, xs[i])["blowup"]
                                 for i, m in enumerate(mods)])),
    }
    print(f"{'measure':<24}{'loop s':>10}{'vmapped s':>11}{'loop/vmap':>11}{'max rel diff':>14}")
    for name, (vmapped, loop) in cases.items():
        t_v, r_v = timed(vmapped, device, args.repeats)
        t_l, r_l = timed(loop, device, args.repeats)
        diff = ((r_v - r_l).abs() / r_l.abs().clamp_min(1e-12)).max().item()
        print(f"{name:<24}{t_l:>10.3f}{t_v:>11.3f}{t_l / t_v:>11.1f}{diff:>14.1e}")


if __name__ == "__main__":
    main()
