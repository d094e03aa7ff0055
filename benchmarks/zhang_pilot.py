"""The issue-22 item-6 pilot for the anchor cpu presets (Zhang et al.): at the paper's peak lr,
which d_model and how many steps make gamma 0.8 give the inferential solution on (4,3) in at
least half the seeds while gamma 0.5 gives the symmetric one, with a fixed finite training set.

One stack per call (gammas x seeds); the held-out answer and the seen-pair test accuracy of
every member are measured every ``--every`` steps along one run with the schedule of ``--steps``
(an intermediate checkpoint is not a shorter run: its lr has not decayed; the preset fixed from
it is then run whole). Prints one JSON line per checkpoint and member.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/zhang_pilot.py --d-model 32 --steps 8000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from biaslab.experiments.zhang_anchor.init_phase_diagram import InitPhaseDiagram, PhaseSpec
from biaslab.experiments.zhang_anchor.protocol import HELDOUT, MEASURE_SEED
from biaslab.experiments.common import members_of
from biaslab.measure import anchor as A
from biaslab import rng
from biaslab.tasks import make_task
from biaslab.train import Stack, TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=2.5e-4)  # the paper's peak (multiplier 25)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--train-size", type=int, default=20000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.5, 0.8])
    a = ap.parse_args()
    d = a.d_model
    spec = PhaseSpec(gammas=a.gammas, depths=[2], seeds=a.seeds, lrs=[a.lr], train_size=a.train_size,
                     model={"d_model": d, "d_ff": 3 * d, "d_head": d // 2, "head_bias_init": "torch"},
                     train=TrainConfig(steps=a.steps, batch=a.batch, loss="ce", schedule="warmup_cosine",
                                       warmup_steps=round(a.steps / 21), warmup_start_ratio=0.04,
                                       min_lr_ratio=0.04, converge="none", eval_every=a.every))
    plans = InitPhaseDiagram().plan(spec)
    c0 = plans[0].config
    stack = Stack("decoder", c0["model"], make_task("anchor", c0["task"]),
                  members_of(plans, "gamma", "clip_norm"), "cpu")
    t0 = time.process_time()
    key = rng.key_of(MEASURE_SEED, "cpu")

    def probe(step: int) -> None:
        ho = A.heldout_accuracy(stack, stack.task, key, pair=HELDOUT, batch=1024)
        seen = A.seen_accuracy(stack, stack.task, key, batch=1024)
        for i, p in enumerate(plans):
            print(json.dumps({"d_model": d, "step": step, "of": a.steps, "lr": a.lr, "train_size": a.train_size,
                              "gamma": p.config["gamma"], "seed": p.config["seed"],
                              "inferential": round(float(ho["inferential"][i]), 3),
                              "symmetric": round(float(ho["symmetric"][i]), 3),
                              "seen_test": round(float(seen["acc"][i]), 3),
                              "cpu_s": round(time.process_time() - t0, 1)}), flush=True)

    torch.manual_seed(0)
    result = train(stack, TrainConfig(**c0["train"]), probe=probe)
    print(json.dumps({"d_model": d, "final_train_acc": result.history[-1]["acc"],
                      "cpu_s": round(time.process_time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
