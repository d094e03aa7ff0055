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
from biaslab.train.trainer import make_step, member_chunk

MODELS = {
    # Hahn & Rofin's reference model: 2-layer post-LN encoder, d 128, 2 heads, FFN 128, n = 20.
    "reference": dict(model={"d_model": 128, "n_heads": 2, "n_layers": 2, "d_ff": 128}, n=20, batch=1024),
    # The tiny model of the peers sheet: 1 layer, d 64, batch 256.
    "tiny": dict(model={"d_model": 64, "n_heads": 1, "n_layers": 1, "d_ff": 256, "norm": "pre",
                        "embed": "add", "readout": "mean"}, n=20, batch=256),
    # The size of the cpu presets' models (e.g. lowsens): d 16, 2 layers, batch 128, n = 10.
    "small": dict(model={"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 64}, n=10, batch=128),
    "micro": dict(model={"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16}, n=6, batch=32),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def prepared(fn, warmup, device):
    """Run ``fn``'s warm-up steps (compilation happens here) and return it for timing."""
    for _ in range(warmup):
        fn()
    sync(device)
    return fn


def time_rounds(fns: dict, steps: dict, rounds: int, device) -> dict:
    """Seconds per call of each function: the best of ``rounds`` timings of ``steps[name]``
    calls, taken in turn (round-robin), so a noisy neighbour slows all configurations alike and
    the ratios stay side by side."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps[name]):
                fn()
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - t0) / steps[name])
    return best


def sequential_eager(spec, device, warmup):
    """One model trained alone with torch.optim.AdamW: a function doing one step."""
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
    return prepared(one, warmup, device)


def stacked(spec, M, device, warmup, compile_, precision, chunk=None):
    """A stack of M members trained by biaslab's step: a function doing one stack step."""
    task = make_task("sparse_parity", {"n": spec["n"], "k": 3})
    stack = Stack("transformer", spec["model"], task, [Member(seed=s, lr=3e-4, weight_decay=0.1)
                                                       for s in range(M)], device)
    cfg = TrainConfig(batch=spec["batch"], compile=compile_, precision=precision, member_chunk=chunk)
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

    def timed():  # TF32 is a process-wide switch: on only while this configuration runs
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        one()
    return prepared(timed, warmup, device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full", action="store_true", help="all models, M up to 256 (GPU)")
    ap.add_argument("--models", nargs="*", choices=sorted(MODELS), help="models to run")
    ap.add_argument("--members", type=int, nargs="*", help="stack sizes to try")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round and configuration")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds; the best round counts")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the stack step")
    ap.add_argument("--chunk", type=int, default=None,
                    help="train.member_chunk for every stack (default: automatic)")
    ap.add_argument("--json", help="write the rows to this file too")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    models = args.models or (["reference", "tiny", "small"] if (args.full or gpu) else ["tiny", "small"])
    sizes = args.members or ([1, 16, 64, 256] if (args.full or gpu) else [1, 4, 16, 64])
    precisions = ["fp32", "tf32", "bf16"] if gpu else ["fp32"]
    steps = args.steps or (20 if gpu else 2)
    warmup = 5 if gpu else 3  # the 2nd call recompiles: params become views of the flat update
    compiles = [False, True] if (args.compile or gpu) else [False]
    machine = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"# biaslab stack benchmark on {machine}; torch {torch.__version__}; best of {args.rounds} "
          f"interleaved rounds")
    print(f"{'model':<10} {'config':<22} {'M':>4} {'chunk':>6} {'ms/stack-step':>14} {'ms/model-step':>14} {'vs 1-at-a-time':>15}")
    rows = []
    for name in models:
        spec = MODELS[name]
        fns, meta = {"base": sequential_eager(spec, device, warmup)}, {}
        for compile_ in compiles:
            for precision in precisions:
                for M in sizes:
                    label = f"stack {'compiled' if compile_ else 'eager'} {precision}"
                    try:
                        fns[(label, M)] = stacked(spec, M, device, warmup, compile_, precision, args.chunk)
                    except (RuntimeError, MemoryError) as exc:  # out of memory at large M: report, go on
                        print(f"{name:<10} {label} M={M} failed: {str(exc).splitlines()[0][:60]}")
                        break
                    meta[(label, M)] = chunk_label(spec, M, device, compile_, precision, args.chunk)
        # One-at-a-time steps are M times cheaper than a stack step: scale the timed steps so
        # every configuration runs for a comparable time per round.
        n_steps = {key: max(1, steps * max(sizes) // (4 * (1 if key == "base" else key[1])))
                   for key in fns}
        secs = time_rounds(fns, n_steps, args.rounds, device)
        base = secs.pop("base")
        print(f"{name:<10} {'one-at-a-time eager':<22} {1:>4} {'-':>6} {base * 1e3:>14.2f} {base * 1e3:>14.2f} {1.0:>14.2f}x")
        rows.append({"model": name, "config": "sequential eager", "M": 1, "ms_per_model_step": base * 1e3, "ratio": 1.0})
        for (label, M), t in secs.items():
            ratio = base / (t / M)
            chunk = meta[(label, M)]
            print(f"{name:<10} {label:<22} {M:>4} {chunk:>6} {t * 1e3:>14.2f} {t / M * 1e3:>14.3f} {ratio:>14.2f}x")
            rows.append({"model": name, "config": label, "M": M, "chunk": chunk,
                         "ms_per_model_step": t / M * 1e3, "ratio": ratio})
        fns.clear()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine, "torch": torch.__version__, "rows": rows}, fh, indent=1)


def chunk_label(spec, M, device, compile_, precision, chunk) -> str:
    """The member chunk the trainer picked for this stack ("all" = one vmap over the stack)."""
    task = make_task("sparse_parity", {"n": spec["n"], "k": 3})
    stack = Stack("transformer", spec["model"], task, [Member(seed=0)], device)
    cfg = TrainConfig(batch=spec["batch"], compile=compile_, precision=precision, member_chunk=chunk)
    c = member_chunk(stack, cfg, cfg.batch, M)
    return "all" if c is None else ("loop" if c == 1 else str(c))


if __name__ == "__main__":
    main()
