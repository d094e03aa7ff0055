"""Training throughput: a vmapped stack of M models vs one model at a time, side by side.

Prints, for each model and each configuration, the time per model-step and the ratio against the
one-model-at-a-time eager loop of the same model measured in the same run. The baseline is a plain
PyTorch loop (nn.Module, torch.optim.AdamW(foreach), data sampled on the device), i.e. what a
researcher would write to train one model.

    python benchmarks/bench_stack.py --device cpu                # CPU: tiny model, M up to 64
    python benchmarks/bench_stack.py --device cuda --full        # GPU: both models, M up to 256
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from biaslab import rng
from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig
from biaslab.train.optim import adamw_init
from biaslab.train.trainer import make_step

MODELS = {
    # Hahn & Rofin's reference model: 2-layer post-LN encoder, d 128, 2 heads, FFN 128, n = 20.
    "reference": dict(model={"d_model": 128, "n_heads": 2, "n_layers": 2, "d_ff": 128}, n=20, batch=1024),
    # The tiny model of the peers sheet: 1 layer, d 64, batch 256.
    "tiny": dict(model={"d_model": 64, "n_heads": 1, "n_layers": 1, "d_ff": 256, "norm": "pre",
                        "embed": "add", "readout": "mean"}, n=20, batch=256),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(fn, steps, warmup, device):
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


def sequential_eager(spec, device, steps, warmup):
    """One model trained alone with torch.optim.AdamW: seconds per step."""
    task = make_task("sparse_parity", {"n": spec["n"], "k": 3})
    state = {k: v.to(device) for k, v in task.make_state(0).items()}
    model = build_model("transformer", spec["model"], task, seed=0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, foreach=True)
    counter = [0]

    def one():
        x, y = task.sample(state, rng.derive(rng.key_of(0, device), counter[0]), spec["batch"])
        counter[0] += 1
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time_loop(one, steps, warmup, device)


def stacked(spec, M, device, steps, warmup, compile_, precision):
    """A stack of M members trained by biaslab's step: seconds per (stack) step."""
    task = make_task("sparse_parity", {"n": spec["n"], "k": 3})
    stack = Stack("transformer", spec["model"], task, [Member(seed=s, lr=3e-4, weight_decay=0.1)
                                                       for s in range(M)], device)
    cfg = TrainConfig(batch=spec["batch"], compile=compile_, precision=precision)
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    step_fn = make_step(stack, cfg)
    state = {"params": stack.params, "opt": adamw_init(stack.params), "t": 0}
    lr, wd = stack.hyper("lr"), stack.hyper("weight_decay")
    clip = stack.hyper("clip_norm")
    active = torch.ones(M, dtype=torch.bool, device=device)

    def one():
        step_t = torch.tensor(state["t"], device=device)
        state["params"], state["opt"], _, _ = step_fn(state["params"], state["opt"], step_t, lr, wd,
                                                      clip, active, stack.buffers, stack.task_states,
                                                      stack.seed_keys)
        state["t"] += 1
    secs = time_loop(one, steps, warmup, device)
    torch.backends.cuda.matmul.allow_tf32 = False
    return secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full", action="store_true", help="both models, M up to 256 (GPU)")
    ap.add_argument("--members", type=int, nargs="*", help="stack sizes to try")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the stack step")
    ap.add_argument("--json", help="write the rows to this file too")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    models = ["reference", "tiny"] if (args.full or gpu) else ["tiny"]
    sizes = args.members or ([1, 16, 64, 256] if (args.full or gpu) else [1, 4, 16, 64])
    precisions = ["fp32", "tf32", "bf16"] if gpu else ["fp32"]
    steps = args.steps or (50 if gpu else 5)
    warmup = 10 if gpu else 2
    compiles = [False, True] if (args.compile or gpu) else [False]
    machine = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"# biaslab stack benchmark on {machine}; torch {torch.__version__}")
    print(f"{'model':<10} {'config':<22} {'M':>4} {'ms/stack-step':>14} {'ms/model-step':>14} {'vs 1-at-a-time':>15}")
    rows = []
    for name in models:
        spec = MODELS[name]
        base = sequential_eager(spec, device, steps, warmup)
        print(f"{name:<10} {'one-at-a-time eager':<22} {1:>4} {base * 1e3:>14.2f} {base * 1e3:>14.2f} {1.0:>14.1f}x")
        rows.append({"model": name, "config": "sequential eager", "M": 1, "ms_per_model_step": base * 1e3, "ratio": 1.0})
        for compile_ in compiles:
            for precision in precisions:
                for M in sizes:
                    try:
                        secs = stacked(spec, M, device, steps, warmup, compile_, precision)
                    except RuntimeError as exc:  # out of memory at large M: report, go on
                        print(f"{name:<10} M={M} failed: {str(exc).splitlines()[0][:60]}")
                        break
                    label = f"stack {'compiled' if compile_ else 'eager'} {precision}"
                    ratio = base / (secs / M)
                    print(f"{name:<10} {label:<22} {M:>4} {secs * 1e3:>14.2f} {secs / M * 1e3:>14.3f} {ratio:>14.1f}x")
                    rows.append({"model": name, "config": label, "M": M, "ms_per_model_step": secs / M * 1e3,
                                 "ratio": ratio})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine, "torch": torch.__version__, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
