"""Grokking throughput: full-batch epochs of a stack of seeds vs one model at a time, in one run.

Every configuration trains the grokking model on (a + b) mod p with its whole train split as the
batch, for the same number of epochs, and reports member-epochs per second and the ratio against
the one-model-at-a-time baseline measured in the same run (a plain PyTorch loop: nn.Module,
torch.optim.AdamW(foreach), one seed after the other), which is what a researcher would write.
Stacks go through the lab's public ``train`` (no evaluation until the last epoch): the automatic
member mapping, and on CPU also one vmap over the whole stack (``member_chunk = M``). With
``--probe`` the experiment's measurements (every 10 epochs) are included as well.

    python benchmarks/bench_grokking.py --device cpu                       # p = 31, 40 % train
    python benchmarks/bench_grokking.py --device cuda --p 113 --frac 0.3   # the paper's size
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_at_a_time(task, model_params, seeds, epochs, device) -> float:
    """Seconds to train each seed alone, one after the other, with a plain PyTorch loop."""
    total = 0.0
    for seed in seeds:
        state = {k: v.to(device) for k, v in task.make_state(seed).items()}
        x, y = task.sample(state, torch.tensor(0), task.n_train)
        model = build_model("grokking", model_params, task, seed=seed).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, foreach=True)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(epochs):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        total += time.perf_counter() - t0
    return total


def stacked(task, model_params, seeds, epochs, device, chunk=None, compile_=False,
            probe=False) -> float:
    """Seconds to train all seeds as one stack through the lab's trainer."""
    members = [Member(seed=s, lr=1e-3, weight_decay=1.0) for s in seeds]
    stack = Stack("grokking", model_params, task, members, device)
    cfg = TrainConfig(steps=epochs, batch=task.n_train, loss="ce",
                      eval_every=10 if probe else epochs, eval_batch=task.n_train,  # as the experiment
                      converge="none", stop_on_converge=False, member_chunk=chunk, compile=compile_)
    kwargs = {}
    if probe:
        from biaslab.experiments.vasudeva.grokking_sensitivity import GrokkingSpec, Recorder

        spec = GrokkingSpec(p=task.p, train_fraction=task.params.train_fraction, write_every=50)
        rec = Recorder(stack, spec)
        kwargs = {"on_eval": rec.on_eval, "probe": rec.probe}
    sync(device)
    t0 = time.perf_counter()
    train(stack, cfg, **kwargs)
    sync(device)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--frac", type=float, default=0.4, help="train fraction")
    ap.add_argument("--d", type=int, default=128, help="d_model (d_ff = 4 d)")
    ap.add_argument("--members", type=int, nargs="*", default=None, help="stack sizes")
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs per configuration")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the stack step")
    ap.add_argument("--probe", action="store_true", help="also time training with the measurements")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    ap.add_argument("--json", help="write the rows to this file too")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    task = make_task("modular", {"p": args.p, "train_fraction": args.frac})
    model_params = {"d_model": args.d, "n_heads": 4, "d_ff": 4 * args.d}
    sizes = args.members or ([1, 5, 20, 50] if gpu else [1, 3, 5])
    epochs = args.epochs or (200 if gpu else 40)
    machine = torch.cuda.get_device_name(device) if gpu else \
        f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"# grokking benchmark on {machine}; torch {torch.__version__}; p {args.p}, train "
          f"{task.n_train} pairs (full batch), d {args.d}, {epochs} epochs per configuration")
    print(f"{'config':<34} {'M':>4} {'member-epochs/s':>16} {'vs 1-at-a-time':>15}")
    configs = [("stack, automatic mapping", {})]
    if not gpu:
        configs.append(("stack, one vmap", {"vmap": True}))
    if args.compile or gpu:
        configs.append(("stack, compiled", {"compile_": True}))
    if args.probe:
        configs.append(("stack + measurements every 10", {"probe": True}))
    rows = []
    for M in sizes:
        seeds = list(range(M))
        one_at_a_time(task, model_params, seeds[:1], 3, device)  # warm-up
        base = M * epochs / one_at_a_time(task, model_params, seeds, epochs, device)
        print(f"{'one at a time (plain PyTorch)':<34} {M:>4} {base:>16.1f} {1.0:>14.2f}x")
        rows.append({"config": "one at a time", "M": M, "member_epochs_per_s": base, "ratio": 1.0})
        for label, opts in configs:
            kw = {k: v for k, v in opts.items() if k != "vmap"}
            if opts.get("vmap"):
                kw["chunk"] = M
            try:
                stacked(task, model_params, seeds, 3, device, **kw)  # warm-up (and compilation)
                rate = M * epochs / stacked(task, model_params, seeds, epochs, device, **kw)
            except (RuntimeError, MemoryError) as exc:
                print(f"{label:<34} {M:>4} failed: {str(exc).splitlines()[0][:60]}")
                continue
            print(f"{label:<34} {M:>4} {rate:>16.1f} {rate / base:>14.2f}x")
            rows.append({"config": label, "M": M, "member_epochs_per_s": rate, "ratio": rate / base})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine, "torch": torch.__version__, "p": args.p,
                       "n_train": task.n_train, "d": args.d, "epochs": epochs, "rows": rows}, fh,
                      indent=1)


if __name__ == "__main__":
    main()
