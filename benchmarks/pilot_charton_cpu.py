"""The recorded pilot that sizes the Charton cpu presets (issue 24 item 6).

Trains one LAWT model per cell on one CPU thread with the trainer the experiments use, and at
every evaluation boundary scores it on the cell's fixed 300-problem test set exactly as the
experiments do (teacher-forced exact match, else greedy decode, parse and check at 5/2/1/0.5%).
A cell stops when its CPU budget is spent or it reaches 95% at 5%. Each line: cell, step,
examples, CPU seconds of this process so far (``time.process_time``, user+sys), last training
loss, accuracies. The model uses the reference's decoder (``parallel_cross``).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pilot_charton_cpu.py --cell matrix_sum:2:p10
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from biaslab.experiments.charton.protocol import accuracy_metrics, evaluate_stack, make_linalg_task
from biaslab.registry import load_all
from biaslab.train import Member, Stack, TrainConfig, train

MODEL = {"d_model": 64, "n_heads": 4, "n_enc_layers": 2, "n_dec_layers": 2, "parallel_cross": True}


class Budget(Exception):
    pass


def pilot(cell: str, budget_s: float, steps: int, batch: int, lr: float, every: int, out):
    task_name, dim, enc = cell.split(":")
    task = make_linalg_task(task_name, {"dim": int(dim), "encoding": enc, "output_encoding": enc})
    stack = Stack("lawt", MODEL, task, [Member(seed=0, lr=lr, clip_norm=5.0)], device="cpu")
    test = task.test_set(20211203, 300)
    cfg = TrainConfig(steps=steps, batch=batch, loss="ce_seq", converge="none",
                      stop_on_converge=False, schedule="warmup_cosine", warmup_steps=200,
                      min_lr_ratio=0.1, eval_every=every, eval_batch=64, eval_split="test")
    t0 = time.process_time()

    state = {}

    def probe(step):  # at each evaluation boundary, with the stack holding the current weights
        ev = evaluate_stack(stack, task, test, [0.05, 0.02, 0.01, 0.005], 1, 300)[0]
        state["acc"] = accuracy_metrics(ev)

    def on_eval(step, record):
        acc = state["acc"]
        row = {"cell": cell, "step": step, "examples": step * batch,
               "cpu_s": round(time.process_time() - t0, 1),
               "loss": round(float(record["loss"][0]), 4) if "loss" in record else None,
               **{k: round(v, 4) for k, v in acc.items()}}
        print(json.dumps(row), file=out, flush=True)
        if row["cpu_s"] > budget_s or acc["acc_5"] >= 0.95:
            raise Budget
    try:
        train(stack, cfg, on_eval=on_eval, probe=probe)
    except Budget:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cell", action="append", required=True, help="task:dim:encoding")
    ap.add_argument("--budget", type=float, default=600, help="CPU seconds per cell")
    ap.add_argument("--steps", type=int, default=20000, help="schedule length (cosine)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=500)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load_all()
    import sys
    for cell in args.cell:
        pilot(cell, args.budget, args.steps, args.batch, args.lr, args.every, sys.stdout)


if __name__ == "__main__":
    main()
