"""What the anchor-function experiments share (Zhang et al., NeurIPS 2024; sheet: anchor-init.md).

A decoder learns composite anchor functions f = key + d(a1) + d(a2) with (3,4) trained as x-6
and (4,3) held out. Its answer on (4,3) tells the solution: x-10 = inferential (it composed the
single-anchor maps), x-6 = symmetric (it merged (4,3) with its mirror). The paper's finding:
the initialization rate gamma (std d_in^-gamma; larger gamma = smaller init) decides which.

Here: the setup every anchor spec shares (model, task, optimizer, training, measuring), training
one stack of decoders, which solution each member found, and the small statistics the claims
compare gammas with.
"""

from __future__ import annotations

import time
from typing import Optional

import torch
from pydantic import Field

from ... import rng
from ...execute.plan import shared_config
from ...measure import anchor as A
from ...registry import MODELS
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ..base import RunOutcome, SpecBase
from ..common import members_of
from ..outcomes import member_outcomes
from ..stats import rounded

HELDOUT = "4,3"  # the pair scored in every experiment (also when (3,4) is held out too)
VALID_ACC = 0.9  # the paper's bar: seen pairs with test keys >= 90%, else the run "failed"
SOLVED = 0.9  # a held-out answer this frequent counts as the model's solution
MEASURE_SEED = 0  # every member is measured on the same inputs (common random numbers)
SERIES = ("train_loss", "acc")  # the training curves every anchor run stores


def anchor_train() -> TrainConfig:
    # Paper App. A: AdamW, CE on the last token, clip 1, warmup for 10 of 210 epochs (1/21 of
    # the steps) from peak/25 up (warmup_scheduler, multiplier 25), then cosine down to peak/25
    # (2.5e-4 -> 1e-5); a fixed budget, not stopped at convergence (the mechanisms keep forming
    # after the training set is fitted).
    return TrainConfig(steps=3000, batch=256, loss="ce", schedule="warmup_cosine", warmup_steps=143,
                       warmup_start_ratio=0.04, min_lr_ratio=0.04, converge="none", eval_every=250)


def anchor_decoder() -> dict:
    # The CPU sanity scale; presets set the paper's d_model 400 / d_ff 1200 / d_head 200. The
    # head bias keeps PyTorch's default init, as the authors' model (sheet §3; decoder.py).
    return {"d_model": 64, "d_ff": 192, "d_head": 32, "head_bias_init": "torch"}


class AnchorSetup(SpecBase):
    """What every anchor experiment shares: model, task, optimizer, training, measuring."""

    model: dict = Field(default_factory=anchor_decoder,
                        description="decoder params except n_layers (see `biaslab list`)")
    task: dict = Field(default_factory=dict, description="anchor task params (default: paper's)")
    train_size: Optional[int] = Field(
        default=None, ge=1, description="fixed training set of this many sequences, drawn once "
        "from each member's seed; batches come from it (paper: ~759k sequences, 210 epochs; "
        "issue 22 item 6). None = fresh sequences every step")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay")
    clip_norm: Optional[float] = Field(default=1.0, gt=0, description="gradient norm clip (None: off)")
    measure_batch: int = Field(default=2048, gt=0, description="sequences per accuracy measure")
    train: TrainConfig = Field(default_factory=anchor_train, description="training recipe (paper App. A)")

    def validate_now(self, depths) -> None:
        """Fail on a bad model or task before anything trains."""
        make_task("anchor", self.task_params())
        for L in depths:
            MODELS.get("decoder").config({**self.model, "n_layers": L})

    def task_params(self) -> dict:
        """The task dict the runs get: ``task`` with ``train_size`` when it is set."""
        fixed = {} if self.train_size is None else {"train_size": self.train_size}
        return {**self.task, **fixed}

    def config(self, **run) -> dict:
        cfg = {"model": {**self.model, "n_layers": run.pop("depth")}, "task": self.task_params(),
               "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
               "measure_batch": self.measure_batch, "train": self.train.model_dump()}
        cfg.update(run)
        cfg["depth"] = cfg["model"]["n_layers"]
        return cfg


def train_anchor_stack(plans, device, progress=False, probe=None):
    """One stack of decoders (members differ in seed, gamma, lr, weight decay); trained.

    ``probe(stack)``, when given, returns the ``train`` probe (called at every evaluation
    boundary with the members' current parameters in ``stack.params``)."""
    c0 = shared_config(plans)
    task = make_task("anchor", c0["task"])
    members = members_of(plans, "gamma", "clip_norm")
    stack = Stack("decoder", c0["model"], task, members, device)
    result = train(stack, TrainConfig(**c0["train"]), progress=progress,
                   probe=probe(stack) if probe is not None else None)
    return stack, result


COMPLEXITY_SERIES = ("sr_wq1", "sr_wem_used", "cond_wq1")  # measured along training (issue 22)


class ComplexityAlongTraining:
    """A ``train`` probe: the complexity measures of Fig 12/13 and Fig 5a,b (stable rank of
    W_Q(1), of the used embedding rows, signed condensation of W_Q(1)) at every evaluation
    boundary, as curves (step, name, value) per member, since the paper follows them over
    training (D.3: "the largest grows first"), not only at the end."""

    def __init__(self):
        self.curves: dict[int, list] = {}

    def __call__(self, stack):
        def probe(step: int) -> None:
            wq = stack.params[stack.roles.query(0)]
            values = {"sr_wq1": A.stable_rank(wq), "sr_wem_used": A.used_embedding_stable_rank(stack),
                      "cond_wq1": A.condensation(wq)}
            for name, v in values.items():
                for i, x in enumerate(v.tolist()):
                    self.curves.setdefault(i, []).append((step, name, x))
        return probe


def solution_metrics(stack, result, batch: int) -> tuple[list[dict], torch.Tensor]:
    """Per member: which answer (4,3) gets, seen-pair test accuracy, training loss, histogram.

    (4,3) is scored with train keys, as the authors' code does; seen pairs with test keys
    ("generalization on data"). Returns the metric dicts and the histograms [M, 33].
    """
    key = rng.key_of(MEASURE_SEED, stack.device)
    ho = A.heldout_accuracy(stack, stack.task, key, pair=HELDOUT, batch=batch)
    seen = A.seen_accuracy(stack, stack.task, key, batch=batch)
    last = result.history[-1]
    rows = []
    for i in range(stack.M):
        m = {"inferential_acc": float(ho["inferential"][i]), "symmetric_acc": float(ho["symmetric"][i]),
             "other_acc": float(ho["other"][i]), "seen_test_acc": float(seen["acc"][i]),
             "train_acc": float(last["acc"][i]), "train_loss": float(last["train_loss"][i]),
             "diverged": float(result.diverged[i]), "steps_run": result.steps_run,
             "hist_outside": float(ho["outside"][i])}
        # the deviation histogram as metrics hist_-16 .. hist_+16 (+4 = symmetric, 0 = inferential)
        m.update({f"hist_{int(o):+d}": float(h) for o, h in zip(ho["offsets"], ho["hist"][i])})
        rows.append(m)
    return rows, ho["hist"].cpu()




def run_solution_group(plans, device, progress=False) -> list[RunOutcome]:
    """Train one stack and measure only which solution each member found."""
    t0 = time.perf_counter()
    stack, result = train_anchor_stack(plans, device, progress)
    rows, hist = solution_metrics(stack, result, shared_config(plans)["measure_batch"])
    return member_outcomes(plans, rows, time.perf_counter() - t0, result=result,
                           series=SERIES, arrays=lambda i: {"deviation_hist": hist[i].numpy()})


def valid(row) -> bool:
    """The paper's bar: seen pairs with test keys >= 90% and not diverged, else the run failed."""
    return row.get("seen_test_acc") is not None and row["seen_test_acc"] >= VALID_ACC \
        and not row.get("diverged")


def solution_of(row) -> Optional[str]:
    """The solution a valid run found on (4,3): "inferential" (x-10) or "symmetric" (x-6) when
    that answer reaches SOLVED, else "other"; None for a run that is not valid."""
    if not valid(row):
        return None
    for kind in ("inferential", "symmetric"):
        if row.get(f"{kind}_acc") is not None and row[f"{kind}_acc"] >= SOLVED:
            return kind
    return "other"


def by_solution(table, metric: str) -> dict[str, list[float]]:
    """solution -> values of ``metric`` over the valid runs that found it (all three keys)."""
    out: dict = {"inferential": [], "symmetric": [], "other": []}
    for r in table:
        kind = solution_of(r)
        if kind is not None and r.get(metric) is not None:
            out[kind].append(r[metric])
    return out


def gamma_key(x) -> float:
    return round(float(x), 4)  # gammas compared by value, not float identity


def rounded3(x, nd: int = 3):
    """A verdict number, by default to 3 places (None when missing or not finite)."""
    return rounded(x, nd)


def by_gamma(table, metric: str, valid_only: bool = True) -> dict[float, list[float]]:
    """gamma -> values of ``metric`` over the (valid) runs."""
    out: dict = {}
    for r in table:
        if (not valid_only or valid(r)) and r.get(metric) is not None:
            out.setdefault(gamma_key(r["gamma"]), []).append(r[metric])
    return out
