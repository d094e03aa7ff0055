"""What the Hahn & Rofin experiments share (sheet: sensitivity-hardness.md): the sharpness
measurement protocol used by every experiment that measures trained transformers' landscapes: the reference model and
training recipe, measurement batches, perturbation sharpness, LayerNorm blow-up, evaluation of
members, and "train one stack, then measure it".

Conventions. Sharpness is the perturbation sharpness of ``measure.landscape``: mean over
``draws`` Gaussian perturbations (sigma 0.02, every parameter but the positional embeddings) of
L(theta + eps) - L(theta), L the batch MSE against {0,1} targets, averaged over ``batches``
fresh batches with fresh noise per batch (the reference reused one noise draw for every batch;
``same_noise`` restores that). Two columns are stored: ``sharpness`` (raw, the {0,1}-target MSE
scale) and ``sharpness_x4`` (= 4 x raw: the MSE of the same outputs against +-1 labels, the
scale of the paper's plots). The noise key is the spec's ``measure.seed`` (shared by all
members: common random numbers, so member i's value equals its value trained alone). A run is
*converged* when its MSE over the same fresh batches is below ``keep_mse`` (1e-3, the
reference's plotting filter); claims use converged runs only.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np

import torch
from pydantic import Field
from torch.func import vmap

from ... import rng
from ...errors import InputError
from ...execute.plan import shared_config
from ...measure.landscape import perturbation_sharpness
from ...measure.norms import blowup_from_acts, layernorm_blowup, parameter_norm
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ...train.losses import get_loss
from ..base import SpecBase
from ..common import ModelChoice, members_of
from ..outcomes import member_outcomes, train_metrics

MEASURE_STREAM = 0x5A4E  # rng stream of the measurement batches
NOISE_STREAM = 0x401E  # rng stream of the sharpness noise

#: The reference's model (sheet §3): 2 layers, d 128, 2 heads, FFN 128, post-LN, concat positions;
#: an nn.TransformerEncoder, whose nn.MultiheadAttention draws q/k/v Xavier-uniform with zero
#: biases (lacoco-lab/sensitivity-hardness; ``models/reference_init.py``).
REFERENCE_MODEL = {"d_model": 128, "n_heads": 2, "n_layers": 2, "d_ff": 128, "qkv_init": "xavier"}


def reference_model() -> ModelChoice:
    return ModelChoice(name="transformer", params=dict(REFERENCE_MODEL))


def reference_train() -> TrainConfig:
    """Sheet §3: AdamW lr 3e-4 wd 0.1 (on the members), batch 1024, 10k steps, MSE on {0,1}; the
    reference trains all 10k steps (no early stop) and keeps runs with eval MSE < 1e-3."""
    return TrainConfig(steps=10_000, batch=1024, eval_every=100, converge="mse", converge_mse=1e-3,
                       stop_on_converge=False, eval_split="test")


def validate_boolean(target: str, n: int) -> None:
    """Fail now (one line) if ``target`` is not a Boolean task accepting length ``n``."""
    from ...tasks.boolean import BooleanTask

    task = make_task(target, {"n": n})
    if not isinstance(task, BooleanTask):
        raise InputError("targets", f"{target} is not a Boolean task", "parity, majority, first, mean")


class MeasureSpec(SpecBase):
    """How sharpness, blow-up and the keep-filter MSE are measured after training."""

    sigma: float = Field(default=0.02, gt=0, description="std of the weight perturbation")
    draws: int = Field(default=10, gt=0, description="perturbations per batch (R)")
    batches: int = Field(default=10, gt=0, description="fresh batches (reference: 1000)")
    batch: int = Field(default=1024, gt=0, description="examples per batch")
    seed: int = Field(default=0, description="seed of the batches' draw and of the noise")
    same_noise: bool = Field(default=False, description="one noise draw for every batch "
                             "(the reference code's quirk)")
    draw_chunk: Optional[int] = Field(default=None, gt=0, description="noise draws per vmapped "
                                      "call (1 = a loop); unset = the chunking rule of Stack.map")
    member_chunk: Optional[int] = Field(default=None, gt=0, description="members per vmapped "
                                        "call (1 = a loop); unset = the chunking rule of Stack.map")


def measurement_batches(stack: Stack, m: MeasureSpec, split: str = "test", salt: int = 0):
    """``m.batches`` fresh batches per member: list of (x [M, B, L], y [M, B, ...]).

    Batch b of member i is keyed by (member seed, stream, seed, salt, b); all of them are
    sampled in one call mapped over members and batches (a call per batch cost 1% of a
    measurement)."""
    task = stack.task
    b = torch.arange(m.batches, device=stack.device)
    keys = rng.derive(stack.seed_keys.unsqueeze(1), MEASURE_STREAM, m.seed, salt, b)  # [M, batches]
    sample = vmap(vmap(lambda s, k: task.sample(s, k, m.batch, split), in_dims=(None, 0)))
    xs, ys = sample(stack.task_states, keys)  # [M, batches, B, ...]
    return [(xs[:, i].contiguous(), ys[:, i].contiguous()) for i in range(m.batches)]


def sharpness_of(stack: Stack, loss: str, batches, m: MeasureSpec, key_salt: int = 0,
                 clean: torch.Tensor | None = None):
    """Raw perturbation sharpness of every member, [M] (the {0,1}-target MSE scale); ``clean``
    [M, batches]: the clean losses, when a forward already gave them."""
    return perturbation_sharpness(
        stack, loss, batches, sigma=m.sigma, draws=m.draws,
        key=rng.derive(rng.key_of(m.seed, stack.device), NOISE_STREAM, key_salt),
        same_noise=m.same_noise, chunk=m.draw_chunk, member_chunk=m.member_chunk, clean=clean)


def forward_measures(stack: Stack, loss: str, batches, member_chunk=None) -> dict:
    """What one forward per member and batch gives: the evaluation (MSE of the predictions,
    accuracy), the LayerNorm blow-up, and the clean losses L(theta) that sharpness subtracts.

    name -> [M] (``clean``: [M, batches]; ``blowup`` nan for a model without LayerNorm). The
    reference code makes two forwards per batch for these (one with hooks, one inside its
    sharpness); one forward with activations serves all three.
    """
    lossf = get_loss(loss)
    has_ln = bool(stack.roles.layer_norms)
    xs, ys = [x for x, _ in batches], [y for _, y in batches]

    def member(p, b, xs, ys):
        outs, clean, blow = [], [], []
        for x, y in zip(xs, ys):
            out, acts = stack.apply(p, b, x, acts=True)
            outs.append(out)
            clean.append(lossf.fn(out, y))
            if has_ln:
                blow.append(blowup_from_acts(acts)["blowup"])
        got = {"out": torch.stack(outs), "clean": torch.stack(clean)}
        return {**got, "blowup": torch.stack(blow)} if has_ln else got

    x0 = xs[0]
    with torch.no_grad():
        r = stack.map(member, stack.params, stack.buffers, xs, ys,
                      chunk="auto" if member_chunk is None else member_chunk,
                      peak_bytes=lambda: stack.forward_peak(tuple(x0.shape[1:]), x0.dtype))
    pred = lossf.predict(r["out"].float())  # [M, batches, B, ...]
    y = torch.stack(ys, 1)
    mse = (pred - y.float()).pow(2).flatten(2).mean(-1).mean(1)
    acc = stack.task.correct(pred, y).float().flatten(2).mean(-1).mean(1)
    blowup = r["blowup"].mean(1) if has_ln else torch.full((stack.M,), float("nan"))
    return {"eval_mse": mse, "eval_acc": acc, "blowup": blowup, "clean": r["clean"]}


def blowup_of(stack: Stack, batches, member_chunk=None) -> torch.Tensor:
    """LayerNorm blow-up of every member averaged over the batches, [M]; nan without LayerNorm."""
    if not stack.roles.layer_norms:  # a model without LayerNorm has no blow-up
        return torch.full((stack.M,), float("nan"))
    vals = [layernorm_blowup(stack, x, member_chunk=member_chunk)["blowup"]
            for x, _ in batches]
    return torch.stack(vals).mean(0)


def eval_of(stack: Stack, loss: str, batches) -> dict:
    """MSE of the predictions and accuracy of every member over the batches: name -> [M]."""
    ev = forward_measures(stack, loss, batches)
    return {"eval_mse": ev["eval_mse"], "eval_acc": ev["eval_acc"]}


def measure_members(stack: Stack, loss: str, m: MeasureSpec, keep_mse: float) -> dict:
    """Every final measure of every member: name -> list of M floats.

    Per batch one forward with activations (evaluation, blow-up, clean loss) and ``m.draws``
    noisy forwards (sharpness), each member mapped by ``Stack.map``'s chunking rule.
    """
    batches = measurement_batches(stack, m)
    ev = forward_measures(stack, loss, batches, m.member_chunk)
    sharp = sharpness_of(stack, loss, batches, m, clean=ev.pop("clean"))
    out = {
        "sharpness": sharp,
        "sharpness_x4": 4 * sharp,
        "blowup": ev.pop("blowup"),
        "param_norm": parameter_norm(stack),
        **ev,
    }
    out["converged"] = (ev["eval_mse"] < keep_mse).float()
    return {k: [float(v) for v in t.detach().cpu()] for k, t in out.items()}


def fit_and_measure(task_name: str, tasks, members, model: ModelChoice, train_cfg: TrainConfig,
                    m: MeasureSpec, keep_mse: float, device, progress=False):
    """Train one stack (one task class) and measure it; returns (stack, result, metrics, seconds).

    ``tasks`` is one dict of task params (shared by all members), a list of dicts (one per
    member), or a list of ready Task objects (e.g. ``TableTask.of`` tables).
    """
    t0 = time.perf_counter()
    if isinstance(tasks, dict):
        tasks = make_task(task_name, tasks)
    else:
        tasks = [t if not isinstance(t, dict) else make_task(task_name, t) for t in tasks]
    stack = Stack(model.name, model.params, tasks, members, device)
    result = train(stack, train_cfg, progress=progress)
    metrics = measure_members(stack, train_cfg.loss, m, keep_mse)
    return stack, result, metrics, time.perf_counter() - t0


def fit_measure_group(plans, device, progress=False):
    """``run_group`` of every experiment whose runs are "train a Boolean target at length n, then
    measure": config keys target, n, model, train, measure, keep_mse (+ seed, lr, weight_decay)."""
    c0 = shared_config(plans)
    train_cfg = TrainConfig(**c0["train"])
    stack, result, met, seconds = fit_and_measure(
        c0["target"], {"n": c0["n"]}, members_of(plans), ModelChoice(**c0["model"]), train_cfg,
        MeasureSpec(**c0["measure"]), c0["keep_mse"], device, progress)
    return member_outcomes(plans, lambda i: {**{k: v[i] for k, v in met.items()},
                                             **train_metrics(result, train_cfg, i)},
                           seconds, result=result, series=("train_loss", "mse"))


# --- Readers of stored tables, shared by the claims and the figures ----------------------------
def aligned_curve(row: dict, measure: str) -> dict[int, float]:
    """A training-dynamics run's stored curve of ``measure`` keyed by steps from convergence
    (``aligned.<measure>.<offset>``; finite values)."""
    prefix = f"aligned.{measure}."
    return {int(k[len(prefix):]): float(v) for k, v in row.items()
            if k.startswith(prefix) and v is not None and math.isfinite(v)}


def post_windows(row: dict, measure: str) -> Optional[tuple[float, float]]:
    """(mean over [c + a, c + a + W), mean over [c + b - W, c + b)) of one run, with a, b the
    run's ``post_start``, ``post_end`` and W its ``window``; None when the stored curve does not
    reach c + b - W .. c + b (the run converged too late for the window) or lacks a key."""
    a, b, W = (row.get(k) for k in ("post_start", "post_end", "window"))
    if a is None or b is None or W is None:
        return None
    a, b, W = int(a), int(b), int(W)
    curve = aligned_curve(row, measure)
    if len(curve) < 2:
        return None
    offs = sorted(curve)
    every = min(q - p for p, q in zip(offs, offs[1:]))
    first = [v for o, v in curve.items() if a <= o < a + W]
    last = [v for o, v in curve.items() if b - W <= o < b]
    if offs[0] > a or offs[-1] < b - every or not first or not last:
        return None
    return float(np.mean(first)), float(np.mean(last))


def post_changes(row: dict) -> Optional[tuple[float, float]]:
    """(Δ log norm, Δ log blow-up) of one run between its two post-convergence windows, or None.
    The norm is sqrt of the stored squared norm (all parameters but the positional table)."""
    n2 = post_windows(row, "norm_sq")
    bu = post_windows(row, "blowup")
    if n2 is None or bu is None or min(n2 + bu) <= 0:
        return None
    return 0.5 * math.log(n2[1] / n2[0]), math.log(bu[1] / bu[0])


def outward(row: dict, norm_key: str = "param_norm") -> float:
    """How far out a run lies in the (norm, blow-up) plane: log(norm x blow-up) = log norm +
    log blow-up, i.e. the position along the diagonal of the log-log plane. Why this measure:
    the reference logs norm x blow-up beside the two (sheet §1, "Parameter norm"), and Corollary 5
    says a sensitive function needs a large norm *or* a large blow-up, so the level sets of the
    requirement are curves on which one is traded for the other, norm x blow-up = const;
    "further out" is a higher level. nan when either is missing or not positive."""
    a, b = row.get(norm_key), row.get("blowup")
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return float("nan")
    return math.log(a) + math.log(b)


def outward_cells(table, norm_key: str = "param_norm") -> dict:
    """(target, n) -> outward values of its converged runs (non-finite dropped)."""
    return {key: [u for _, u in v] for key, v in outward_runs(table, norm_key).items()}


def outward_runs(table, norm_key: str = "param_norm") -> dict:
    """(target, n) -> [((weight decay, lr, seed), outward value)] of its converged runs."""
    cells: dict = {}
    for r in table:
        if r.get("converged") == 1.0:
            u = outward(r, norm_key)
            if math.isfinite(u):
                pair = (r.get("weight_decay"), r.get("lr"), r.get("seed"))
                cells.setdefault((r["target"], r["n"]), []).append((pair, u))
    return cells


def low_degrees(n: int) -> int:
    """How many degrees count as low: k = 0 .. ceil(n/2) - 1, i.e. k < n/2."""
    return (n + 1) // 2
