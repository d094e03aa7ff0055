"""Greedy decoding speed of the LAWT model: examples/s of three loops over the same model and inputs.

  uncached    this lab's decoder before issue 24: every step reruns the decoder over the whole
              prefix (``stack_greedy(..., cached=False)``);
  cached      this lab's decoder now: one position per step with every layer's keys/values kept
              (``stack_greedy``), vmapped over the stack's members;
  reference   what LAWT's ``TransformerModel.generate`` does, written on the same module: one
              model, a key/value cache, and a host check after every step that stops as soon as
              every sequence has emitted ``<eos>`` (``unfinished_sents.max() == 0``).

All three decode the same fixed test problems with the same weights: an untrained model whose
``<eos>`` logit is pushed down (bias -1e4), so that every loop decodes the full target length as
a trained model does (a trained model's ``<eos>`` comes at the answer's end, one position before
the decoder length; an untrained one may say ``<eos>`` first and let the reference's early exit
stop after one step). Tokens of the three are checked equal before timing.

    python benchmarks/bench_decoding.py --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from biaslab.models.decoding import module_parts, stack_greedy
from biaslab.registry import TASKS, load_all
from biaslab.train import Member, Stack

MODELS = {"small": {"d_model": 64, "n_heads": 4, "n_enc_layers": 2, "n_dec_layers": 2,
                    "parallel_cross": True},
          "sheet": {"d_model": 512, "n_heads": 8, "n_enc_layers": 6, "n_dec_layers": 1,
                    "parallel_cross": True}}


def reference_greedy(model, xe, dec_len, eos_id=0):
    """LAWT's generate loop: cache, argmax, stop when no sequence is unfinished (host read)."""
    parts = module_parts(model)
    B = xe.shape[0]
    keep = xe != model.pad_id
    cross_kv = parts.start(parts.encode(xe))
    cache = [None] * len(cross_kv)
    tok = torch.full((B, 1), eos_id, dtype=torch.long, device=xe.device)
    out = torch.full((B, dec_len), model.pad_id, dtype=torch.long, device=xe.device)
    unfinished = torch.ones(B, dtype=torch.bool, device=xe.device)
    for t in range(dec_len):
        logits, cache = parts.step(tok, t, cross_kv, keep, cache)
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, model.pad_id))
        out[:, t] = nxt
        unfinished = unfinished & (nxt != eos_id)
        if not bool(unfinished.any()):
            break
        tok = nxt[:, None]
    return out


def timed(fn, device, repeats):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, (time.perf_counter() - t0) / repeats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=sorted(MODELS), default=None)
    ap.add_argument("--task", default="eigenvalues")
    ap.add_argument("--dim", type=int, default=5)
    ap.add_argument("--encoding", default="p1000")
    ap.add_argument("--batch", type=int, default=None, help="test problems decoded at once")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    load_all()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if not gpu:
        torch.set_num_threads(1)
    name = args.model or ("sheet" if gpu else "small")
    batch = args.batch or (2500 if gpu else 300)
    task = TASKS.get(args.task).from_dict({"dim": args.dim, "encoding": args.encoding,
                                           "output_encoding": args.encoding})
    stack = Stack("lawt", MODELS[name], task, [Member(seed=0)], device=device)
    with torch.no_grad():
        stack.params["out_bias"][:, 0] = -1e4  # <eos> (id 0) never wins: full-length decodes
    model = stack.member(0).eval()
    xe = task.test_set(20211203, batch).x[:, :task.encoder_len].to(device)
    L = task.decoder_len
    print(f"# greedy decoding: {args.task} {args.dim}x{args.dim} {args.encoding} ({task.encoder_len}"
          f"+{L} tokens), model {name} {MODELS[name]}, batch {batch}, device {device} "
          f"({torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, fp32")
    rows = {}
    with torch.no_grad():
        loops = {"reference (LAWT generate: cache + early exit)": lambda: reference_greedy(model, xe, L),
                 "uncached (before issue 24)": lambda: stack_greedy(stack, xe, L, cached=False)[0],
                 "cached (now)": lambda: stack_greedy(stack, xe, L)[0]}
        tokens = {}
        for label, fn in loops.items():
            tokens[label], sec = timed(fn, device, args.repeats)
            rows[label] = batch / sec
        first = next(iter(tokens.values()))
        assert all(torch.equal(t, first) for t in tokens.values()), "loops disagree on tokens"
    ref = rows["reference (LAWT generate: cache + early exit)"]
    for label, eps in rows.items():
        print(f"{label}: {eps:,.0f} examples/s ({eps / ref:.2f}x the reference)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "model": name, "device": str(device), "batch": batch,
                       "examples_per_s": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
