"""Training speed of the LAWT model: this lab's trainer vs a one-model, host-fed loop, in one run.

The reference (facebookresearch/LAWT) trains one model per process on batches of 64 that a CPU
worker generates and encodes; on one H200 it runs at about 1,700 examples/s with the GPU mostly
idle (sheet ``math-transformer.md`` section 5). This script measures, side by side:

  host-fed  one ``nn.Module``, ``torch.optim.Adam``, clip 5; every batch is generated and encoded
            on the host (the same linalg generator, run on the CPU), then copied to the device;
  trainer   ``biaslab.train.train`` on a Stack (members mapped by the lab's rule; AdamW: torch's
            fused kernel in place on a CPU, the functional flat update on a GPU), the data
            generated on the device inside the step; on GPU bf16 autocast and torch.compile.

Both train the same model on the same task (default: 5x5 symmetric eigenvalues, FP15 -> FP15).

    python benchmarks/bench_lawt.py --device cpu                 # small model, minutes on 2 cores
    python benchmarks/bench_lawt.py --device cuda --model sheet  # the sheet's 6/1-layer 512 model

Target on one H200 (issue 11): >= 50,000 examples/s for the sheet's model.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from biaslab import rng
from biaslab.models import build_model
from biaslab.registry import TASKS, load_all
from biaslab.train import Member, Stack, TrainConfig, train
from biaslab.train.losses import get_loss

MODELS = {
    # the eigenvalue sweep's model (sheet section 3): 6/1 layers, 512 dims, 8 heads
    "sheet": {"d_model": 512, "n_heads": 8, "n_enc_layers": 6, "n_dec_layers": 1},
    # the cpu presets' size
    "small": {"d_model": 64, "n_heads": 4, "n_enc_layers": 2, "n_dec_layers": 1},
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def host_fed(task, model_values, device, batch, steps, precision):
    """One model, data made on the host per batch: examples/s over ``steps`` timed steps."""
    model = build_model("lawt", model_values, task, seed=0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = get_loss("ce_seq").fn
    state = task.make_state(0)
    key = rng.key_of(0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(i):
        x, y = task.sample(state, rng.derive(key, i), batch, "train")  # on the host
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with amp:
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    for i in range(3):  # warm-up
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(1000 + i)
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def stacked(task, model_values, device, members, batch, steps, precision, compile_):
    """This lab's trainer: a stack of ``members`` models, data on the device. examples/s."""
    stack = Stack("lawt", model_values, task, [Member(seed=s, lr=1e-4, clip_norm=5.0)
                                               for s in range(members)], device=device)
    cfg = TrainConfig(steps=steps, batch=batch, loss="ce_seq", converge="none",
                      stop_on_converge=False, eval_every=steps, eval_batch=8,
                      precision=precision, compile=compile_)
    train(stack, cfg)  # warm-up: compiles the step (cached per stack shape) and the evaluation
    sync(device)
    t0 = time.perf_counter()
    train(stack, cfg)
    sync(device)
    return steps * batch * members / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=sorted(MODELS), default=None)
    ap.add_argument("--task", default="eigenvalues")
    ap.add_argument("--dim", type=int, default=5)
    ap.add_argument("--encoding", default="fp15", help="input and output encoding")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    ap.add_argument("--configs", nargs="*", default=None,
                    help="trainer configs as MEMBERSxBATCH (default: cpu 1x64 4x64 1x256; "
                    "cuda 1x1024 1x4096 8x1024 16x1024)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved rounds (the order alternating); with more than one, the "
                    "median of each config's per-round ratio with its min-max is printed last")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    load_all()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    model_name = args.model or ("sheet" if gpu else "small")
    steps = args.steps or (30 if gpu else 20)
    configs = args.configs or (["1x1024", "1x4096", "8x1024", "16x1024"] if gpu
                               else ["1x64", "4x64", "1x256"])
    precision = "bf16" if gpu else "fp32"
    if not gpu:
        torch.set_num_threads(1)
    task = TASKS.get(args.task).from_dict({"dim": args.dim, "encoding": args.encoding,
                                           "output_encoding": args.encoding})
    values = MODELS[model_name]
    print(f"# LAWT training speed: {args.task} {args.dim}x{args.dim} {args.encoding}, model "
          f"{model_name} {values}, vocabulary {task.vocab_size}, tokens {task.encoder_len}+"
          f"{task.decoder_len}; device {device} ({torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {precision}")
    sizes = {c: tuple(int(v) for v in c.split("x")) for c in configs}  # members, batch
    rows, ratios = [], {c: [] for c in configs}
    for r in range(args.rounds):
        # alternate which side runs first, so a drift of the machine hits both alike
        order = ["host"] + configs if r % 2 == 0 else configs + ["host"]
        eps = {}
        for c in order:
            if c == "host":
                eps[c] = host_fed(task, values, device, 64, steps, precision)
            else:
                eps[c] = stacked(task, values, device, *sizes[c], steps, precision, compile_=gpu)
        base = eps["host"]
        rows.append({"round": r, "config": "host-fed one model (reference-style)", "members": 1,
                     "batch": 64, "examples_per_s": base})
        print(f"host-fed, 1 model, batch 64: {base:,.0f} examples/s (1.00x)", flush=True)
        for c in configs:
            m, b = sizes[c]
            ratios[c].append(eps[c] / base)
            rows.append({"round": r, "config": "trainer" + (" compiled" if gpu else ""),
                         "members": m, "batch": b, "examples_per_s": eps[c]})
            print(f"trainer, {m} member(s) x batch {b}: {eps[c]:,.0f} examples/s "
                  f"({eps[c] / base:.2f}x)", flush=True)
    if args.rounds > 1:
        for c, rs in ratios.items():
            print(f"trainer {c}: median {statistics.median(rs):.2f}x the host-fed loop (min "
                  f"{min(rs):.2f}, max {max(rs):.2f}, {len(rs)} rounds)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "dim": args.dim, "encoding": args.encoding,
                       "model": model_name, "device": str(device), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
