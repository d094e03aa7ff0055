"""Token-wise flip sensitivity: the batched, vmapped measure against a plain loop.

    python benchmarks/bench_tokenwise.py --device cpu --members 4

The loop is what the reference does: for each member, each patch and each draw, one forward
call on the noised batch. The measure puts every patch and draw of a group of images into one
forward call and vmaps over members. Both compute the same numbers (checked here); the script
prints seconds and the ratio, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import time

import torch

from biaslab import rng
from biaslab.measure.tokenwise import PatchNoise, tokenwise_flip_sensitivity
from biaslab.registry import load_all
from biaslab.tasks import make_task
from biaslab.train import Member, Stack


@torch.no_grad()
def loop(stack, x, pert, key, draws):
    """One forward per (member, draw, patch): the measure's draws, applied one slot at a time."""
    B = x.shape[0]
    P = pert.n_positions(x.shape)
    pos = torch.arange(P, device=x.device)[:, None]
    rates = torch.zeros(stack.M, P, dtype=torch.float64)
    for i in range(stack.M):
        m = stack.member(i)
        clean = m(x).argmax(-1)
        for d in range(draws):
            delta = pert.delta(tuple(x.shape), pos, rng.derive(key, pert.stream, d), x.dtype,
                               x.device)  # [B, P, C, H, W]
            for j in range(P):
                rates[i, j] += (m(x + delta[:, j]).argmax(-1) != clean).double().sum().cpu()
    return rates / (B * draws)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--chunk-rows", type=int, default=None, help="default: 1024 on CPU, 16384 on GPU")
    args = ap.parse_args(argv)
    load_all()
    task = make_task("synthetic_images", {"size": args.size, "train_size": args.images})
    stack = Stack("vit", {"dim": 32, "depth": 2, "heads": 4, "dim_head": 8, "mlp_dim": 64}, task,
                  [Member(seed=s) for s in range(args.members)], args.device)
    x, _ = task.training_set(task.make_state(0), args.device)
    pert, key = PatchNoise(0.5, 4), rng.key_of(0, args.device)
    tokenwise_flip_sensitivity(stack, x[:8], pert, key)  # warm-up
    t0 = time.perf_counter()
    rows = args.chunk_rows or (16384 if args.device == "cuda" else 1024)
    fast = tokenwise_flip_sensitivity(stack, x, pert, key, draws=args.draws, chunk_rows=rows)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = loop(stack, x, pert, key, args.draws)
    t_slow = time.perf_counter() - t0
    same = torch.allclose(fast["per_position"].cpu(), slow, atol=1e-9)
    print(f"vit, {args.members} members, {args.images} images {args.size}x{args.size}, "
          f"{pert.n_positions(x.shape)} patches x {args.draws} draws on {args.device}, "
          f"{rows} rows per call: "
          f"measure {t_fast:.2f} s, loop {t_slow:.2f} s, ratio {t_slow / t_fast:.1f}x, "
          f"same numbers: {same}")


if __name__ == "__main__":
    main()
