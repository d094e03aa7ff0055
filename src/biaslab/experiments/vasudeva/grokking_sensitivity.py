"""grokking-sensitivity: does token-wise sensitivity fall through the grokking plateau?

Vasudeva et al. §7 / sheet E6 (``papers/low-sensitivity.md`` §2-§5, §7 target 2; reference:
estija/sensitivity ``language/sens_addition.py`` and ``sens_modular_addition.ipynb``).
(a + b) mod p from [a, b, "="], a seeded 30 % train split, full-batch AdamW (lr 1e-3, weight
decay 1.0) on the reference's grokking model (no residuals, no LayerNorm). Every seed is a member
of one stack trained by the lab's trainer; every ``measure_every`` epochs the probe measures all
members on the device: test loss and accuracy, the reference's sensitivity (0.1 N(0, 1) on the
token + position embeddings of a and b together, one draw, the whole train split), the weight
norm (all parameters, as the reference), the lab's perturbation sharpness and the share of the
embedding's energy in its top key frequencies. The paper's definition perturbs one token at a
time: that rate (a alone, b alone, averaged) is recorded beside as ``sensitivity_one_token``; the
claims read the reference's a-and-b-together rate, the measure behind the numbers they cite. Values stay on the device and reach the host once
every ``write_every`` measurements. Phases and claim rules: ``grokking_phases.py``.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch.func import vmap

from ... import rng
from ...errors import InputError
from ...execute.plan import shared_config
from ...measure.grokking import (embedding_noise_flips, fourier_share,
                                 token_replacement_flips)
from ...measure.landscape import perturbation_sharpness
from ...measure.norms import parameter_norm
from ...measure.tokenwise import supports_embedding
from ...models import build_model
from ...tasks import make_task
from ...train import Member, Stack, TrainConfig, train
from ..base import Experiment, RunOutcome, SpecBase, Verdict, register_claim, register_experiment
from ..claims import Bar
from ..common import ModelChoice, planned_lr
from .grokking_phases import analyse_run, verdict_over_runs
from .protocol import CURVES

NOISE_STREAM = 0x6E01  # rng stream of the sensitivity noise (keyed by epoch)
SHARP_STREAM = 0x5A4B  # rng stream of the sharpness draws (keyed by epoch)
#: Epochs where the reference notebook marks its phases (sheet §5): values recorded beside ours.
REFERENCE_MARKS = (500, 3000, 9800)


class GrokkingSpec(SpecBase):
    p: int = Field(default=113, ge=2, description="modulus")
    op: Literal["+", "-", "*", "/"] = Field(default="+", description="the operation")
    train_fraction: float = Field(default=0.3, gt=0, lt=1, description="share of pairs trained on")
    split_seed: Optional[int] = Field(
        default=None, description="one split for every seed; None = each seed its own split "
        "(the reference reshuffles per seed)")
    seeds: list[int] = Field(default=[42, 43, 44], min_length=1, description="model (and split) seeds")
    model: ModelChoice = Field(default_factory=lambda: ModelChoice(name="grokking"),
                               description="the model (default: the reference's grokking model)")
    lr: float = Field(default=1e-3, gt=0, description="AdamW learning rate (model.lr overrides)")
    weight_decay: float = Field(default=1.0, ge=0, description="AdamW decoupled weight decay")
    epochs: int = Field(default=17_000, gt=0, description="full-batch epochs (= optimizer steps)")
    measure_every: int = Field(default=10, gt=0, description="epochs between measurements")
    write_every: int = Field(default=50, gt=0,
                             description="measurements held on the device between host transfers")
    noise_std: float = Field(default=0.1, gt=0, description="std of the embedding noise")
    noise_seed: int = Field(default=0, description="seed of the sensitivity noise")
    sensitivity_kind: Literal["embedding", "replacement"] = Field(
        default="embedding", description="noise on the embeddings of a and b (the reference), or "
        "a and b replaced by uniform tokens (for models without embed/forward_embedded)")
    sharpness_sigma: float = Field(default=0.02, gt=0, description="std of the weight noise")
    sharpness_draws: int = Field(default=5, gt=0, description="weight draws per sharpness value")
    sharpness_every: int = Field(default=10, gt=0, description="measurements between sharpness values")
    fourier_top_k: int = Field(default=5, gt=0, description="key frequencies in the Fourier share")
    compile: bool = Field(default=False, description="torch.compile the training step")
    member_chunk: Optional[int] = Field(default=None, ge=1, description="members per vmapped chunk")


def train_config(spec: GrokkingSpec, n_train: int) -> TrainConfig:
    """Full batch (batch = the whole train split), cross-entropy, never stops early."""
    return TrainConfig(steps=spec.epochs, batch=n_train, loss="ce", eval_every=spec.measure_every,
                       eval_batch=n_train, eval_split="train", converge="none",
                       stop_on_converge=False, compile=spec.compile, member_chunk=spec.member_chunk)


@register_experiment
class GrokkingSensitivity(Experiment):
    name = "grokking-sensitivity"
    description = "token-wise sensitivity, weight norm and sharpness through the grokking plateau"
    Spec = GrokkingSpec

    def _task(self, spec: GrokkingSpec):
        values = {"p": spec.p, "op": spec.op, "train_fraction": spec.train_fraction,
                  "split_seed": spec.split_seed}
        try:
            return make_task("modular", values)
        except InputError as exc:  # name the spec's field, not the task's
            inner = exc.field.removeprefix("modular").lstrip(".")
            raise InputError(inner or "p, op, train_fraction", exc.problem, exc.accepted) from None

    def plan(self, spec: GrokkingSpec):
        spec.model.validate_now("model")
        task = self._task(spec)
        if spec.sensitivity_kind == "embedding" and not supports_embedding(
                build_model(spec.model.name, spec.model.params, task, seed=0)):
            raise InputError("sensitivity_kind", f"model {spec.model.name!r} has no embed(x) / "
                             "forward_embedded(e) for embedding noise",
                             "replacement, or a model with the embedding protocol (grokking)")
        cfg_train = train_config(spec, task.n_train).model_dump()
        common = {k: v for k, v in spec.model_dump().items()
                  if k not in ("seeds", "model", "compile", "member_chunk", "epochs", "write_every")}
        plans = []
        for seed in spec.seeds:
            cfg = {**common, "seed": seed, "model": spec.model.model_dump(),
                   "lr": planned_lr(spec.lr, spec.model.lr), "train": cfg_train}
            plans.append(self._plan(cfg, (spec.model.name, f"p={spec.p}")))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        c0 = shared_config(plans)
        task = self._task(spec)
        members = [Member(seed=p.config["seed"], lr=p.config["lr"],
                          weight_decay=p.config["weight_decay"]) for p in plans]
        t0 = time.perf_counter()
        stack = Stack(spec.model.name, spec.model.params, task, members, device)
        recorder = Recorder(stack, spec)
        result = train(stack, TrainConfig(**c0["train"]), progress=progress,
                       on_eval=recorder.on_eval, probe=recorder.probe)
        curves = recorder.curves()  # [M, T, len(CURVES)]
        seconds = time.perf_counter() - t0
        outcomes = []
        for i, plan in enumerate(plans):
            c = curves[i]
            col = {name: c[:, j] for j, name in enumerate(CURVES)}
            metrics = {k: v for k, v in analyse_run(col["epoch"], col["train_acc"], col["test_acc"],
                                                    col["sensitivity"], col["weight_norm"]).items()
                       if k != "reason"}
            metrics.update(phase_values(col, metrics))
            metrics.update({f"final_{k}": float(col[k][-1]) for k in CURVES[1:] if k != "sharpness"})
            metrics["epochs_run"] = result.steps_run
            metrics["diverged"] = float(result.diverged[i])
            series = [(int(e), name, float(c[t, j])) for t, e in enumerate(col["epoch"])
                      for j, name in enumerate(CURVES) if j and math.isfinite(c[t, j])]
            outcomes.append(RunOutcome(plan, metrics, series,
                                       tensors={"model": stack.member_state(i)},
                                       arrays={"curves": c.astype(np.float32)},
                                       seconds=seconds / len(plans)))
        return outcomes

    def figures(self, table, artifacts=None):
        from .figures.grokking import grokking_figure

        lookup = artifacts if artifacts is not None else getattr(self, "store", None)
        return {"grokking_curves": grokking_figure(table, lookup)} if table and lookup else {}


def _value_at(epochs: np.ndarray, values: np.ndarray, t: float) -> float:
    """The value at the last measurement at or before epoch t (NaN if none or t is NaN)."""
    if t is None or not math.isfinite(t):
        return float("nan")
    at = np.flatnonzero(epochs <= t)
    return float(values[at[-1]]) if at.size else float("nan")


def phase_values(col: dict, marks: dict) -> dict:
    """Sensitivity, test accuracy and weight norm at the phase marks and the reference's marks."""
    e = col["epoch"]
    out = {}
    for mark in ("t_fit", "t_rise", "t_jump"):
        for name, key in (("sens", "sensitivity"), ("sens_one", "sensitivity_one_token"),
                          ("test_acc", "test_acc"), ("wnorm", "weight_norm")):
            out[f"{name}_{mark}"] = _value_at(e, col[key], marks.get(mark))
    for t in REFERENCE_MARKS:
        inside = t <= e[-1]
        out[f"sens_at_{t}"] = _value_at(e, col["sensitivity"], t) if inside else float("nan")
        out[f"sens_one_at_{t}"] = (_value_at(e, col["sensitivity_one_token"], t) if inside
                                   else float("nan"))
        out[f"test_acc_at_{t}"] = _value_at(e, col["test_acc"], t) if inside else float("nan")
    out["sens_max"] = float(np.nanmax(col["sensitivity"]))
    out["t_sens_max"] = float(e[int(np.nanargmax(col["sensitivity"]))])
    return out


class Recorder:
    """The probe: measures every member at each evaluation boundary into device tensors and moves
    them to the host once every ``write_every`` measurements."""

    def __init__(self, stack: Stack, spec: GrokkingSpec):
        self.stack, self.spec = stack, spec
        states = stack.task_states
        self.x_train = states["subset"]  # [M, N, 3]: the full batch
        self.y_train = vmap(stack.task.target)(states, self.x_train)
        self.x_test = states["test"]
        self.y_test = vmap(stack.task.target)(states, self.x_test)
        self.noise_key = rng.derive(rng.key_of(spec.noise_seed, stack.device), NOISE_STREAM)
        self.sharp_key = rng.derive(rng.key_of(spec.noise_seed, stack.device), SHARP_STREAM)
        self.pending: list[torch.Tensor] = []  # [M, len(CURVES) - 3] per measurement, on device
        self.train_host: list[tuple[int, list, list]] = []  # from the trainer's evaluation
        self.rows: list[np.ndarray] = []
        self.n_probes = 0

    def on_eval(self, step: int, record: dict) -> None:
        self.train_host.append((step, record["loss"], record["acc"]))

    def probe(self, step: int) -> None:
        stack, spec = self.stack, self.spec
        M = stack.M
        out = stack.forward(self.x_test, shared_input=False)  # [M, Nt, p]
        test_loss = vmap(F.cross_entropy)(out, self.y_test)
        test_acc = (out.argmax(-1) == self.y_test).float().mean(-1)
        key = rng.derive(self.noise_key, step)
        # "sensitivity": a and b perturbed together (the reference's code, whose curves the
        # claims' numbers come from); "sensitivity_one_token": the paper's definition, a or b
        # alone, averaged over the two (independent draws per position)
        if spec.sensitivity_kind == "embedding":
            flips = partial(embedding_noise_flips, stack, self.x_train, spec.noise_std)
        else:
            flips = partial(token_replacement_flips, stack, self.x_train,
                            stack.task.vocab_size)
        sens = flips(key)
        one = (flips(rng.derive(key, 1), positions=(0,)) +
               flips(rng.derive(key, 2), positions=(1,))) / 2
        wnorm = parameter_norm(stack, exclude=())
        if self.n_probes % spec.sharpness_every == 0:
            sharp = perturbation_sharpness(
                stack, "ce", (self.x_train, self.y_train), sigma=spec.sharpness_sigma,
                draws=spec.sharpness_draws, key=rng.derive(self.sharp_key, step), shared=False)
        else:
            sharp = torch.full((M,), float("nan"), device=stack.device)
        emb = stack.params.get(stack.roles.token_embedding)
        four = fourier_share(emb[:, :spec.p], spec.fourier_top_k) if emb is not None and \
            emb.shape[1] >= spec.p else torch.full((M,), float("nan"), device=stack.device)
        self.pending.append(torch.stack([test_loss, test_acc, sens, wnorm, sharp.float(),
                                         four.float(), one.float()], -1).float())
        self.n_probes += 1
        if len(self.pending) >= spec.write_every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.rows.append(torch.stack(self.pending, 1).cpu().numpy())  # [M, k, 7]
            self.pending = []

    def curves(self) -> np.ndarray:
        """[M, T, len(CURVES)] over the T measurements."""
        self.flush()
        probed = np.concatenate(self.rows, 1)
        M, T = probed.shape[:2]
        epoch = np.array([s for s, _, _ in self.train_host[:T]], dtype=np.float64)
        loss = np.array([l for _, l, _ in self.train_host[:T]], dtype=np.float64).T
        acc = np.array([a for _, _, a in self.train_host[:T]], dtype=np.float64).T
        return np.concatenate([np.broadcast_to(epoch, (M, T))[..., None], loss[..., None],
                               acc[..., None], probed], -1)


# =============================================================================================
# claims: per-run rules and their combination are in grokking_phases.py (fixed before any run)
# =============================================================================================
PAPER_SENS = ("Vasudeva et al. §7 (E6), reference notebook, 3 seeds: sensitivity ~9 % near "
              "epoch 3000, falling steadily through the plateau to 1-5 % by 9800 and < 1 % at the "
              "end, while train loss is ~0 and test accuracy ~0.3 until ~10k")


NOTEBOOK = "estija/sensitivity language/sens_modular_addition.ipynb (sheet §5)"
PHASE_BARS = [
    Bar("train convergence", "train acc >= 0.99", f"reason: the start of the plateau; {NOTEBOOK}"),
    Bar("grokking jump", "test acc >= 0.5", "sheet §7 target 2: 'before test accuracy passes 0.5'"),
    Bar("plateau windows", "first / last 10 % of points (>= 3)",
        "reason: medians of the plateau's ends, robust to one noisy measurement"),
    Bar("grokked runs", ">= 3 (PASS: all pass; FAIL: more than half fail)",
        "house rule (issue 20): 3 runs per compared cell"),
]
SENS_MEASURE = ("the reference's sensitivity: 0.1 N(0, 1) on the embeddings of a and b "
                "together (the one-token rate is recorded beside)")


def _row_numbers(row: dict, keys: tuple) -> dict:
    def r(v):
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(v, 4)
    return {k: r(row.get(k)) for k in keys}


def _verdict(table: list[dict], rule: str, keys: tuple, describe) -> Verdict:
    rows = [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in table]
    status, counts = verdict_over_runs(rows, rule)
    per_seed = {f"seed {int(r['seed'])}": _row_numbers(r, ("t_fit", "t_jump") + keys) for r in rows}
    parts = [describe(r) for r in rows if r.get("qualifies") == 1.0]
    not_q = [f"seed {int(r['seed'])}: t_fit {r.get('t_fit')}, t_jump {r.get('t_jump')}"
             for r in rows if r.get("qualifies") != 1.0]
    summary = (f"{counts['pass']}/{counts['qualifying']} grokked runs pass"
               + (f" ({counts['runs'] - counts['qualifying']} of {counts['runs']} runs have no "
                  f"plateau to judge: {'; '.join(not_q)})" if not_q else "")
               + ("; " + "; ".join(parts) if parts else ""))
    return Verdict(status, summary, {**counts, "runs_detail": per_seed})


@register_claim(
    "grokking-sensitivity-falls",
    "grokking-sensitivity",
    "between train convergence (train acc >= 0.99) and the grokking jump (test acc >= 0.5), "
    "sensitivity at the end of the plateau (median of its last 10 % of points) is below its "
    "start (first 10 %), with a negative Spearman correlation against epoch, in every grokked run",
    PAPER_SENS,
    statistic=f"per grokked run, plateau start and end medians and Spearman rho of {SENS_MEASURE}",
    comparison="end < start and rho < 0 in each run; runs combined as in grokking_phases.py",
    bars=PHASE_BARS,
)
def check_sensitivity_falls(table):
    return _verdict(table, "rule1", ("sens_start", "sens_end", "sens_rho"), lambda r: (
        f"seed {int(r['seed'])}: {100 * r['sens_start']:.2f}% -> {100 * r['sens_end']:.2f}% over "
        f"epochs {r['t_fit']:.0f}-{r['t_jump']:.0f}, rho {r['sens_rho']:.2f}"))


@register_claim(
    "grokking-sensitivity-leads",
    "grokking-sensitivity",
    "the fall of sensitivity begins before test accuracy rises: the peak of the plateau's "
    "smoothed sensitivity precedes the first epoch where test accuracy is 0.1 above its plateau "
    "level, and by then sensitivity is at most half of that peak",
    "Vasudeva et al. §7 (E6), sheet §7 target 2: sensitivity peaks (~9 %) and trends down while "
    "train loss is ~0; <= 2 % before test accuracy passes 0.5",
    statistic=f"per grokked run, the epoch of the peak of the running median (5 points) of "
              f"{SENS_MEASURE}, and its value when test accuracy rises",
    comparison="t_peak < t_rise and value at t_rise <= 0.5 x peak in each run",
    bars=PHASE_BARS + [Bar("fall by the rise", "<= 0.5 x peak", "sheet §5: ~9 % peak, <= 2 % "
                           "before test accuracy passes 0.5 (half is a lenient reading)"),
                       Bar("rise of test accuracy", "+0.1 over its plateau level",
                           "reason: the first sign of generalisation, before the 0.5 jump")],
)
def check_sensitivity_leads(table):
    return _verdict(table, "rule2", ("t_peak", "t_rise", "sens_peak", "sens_at_rise"), lambda r: (
        f"seed {int(r['seed'])}: peak {100 * r['sens_peak']:.2f}% at {r['t_peak']:.0f}, "
        f"{100 * r['sens_at_rise']:.2f}% when test acc rises at {r['t_rise']:.0f}"))


@register_claim(
    "grokking-weight-norm-falls",
    "grokking-sensitivity",
    "the weight norm (all parameters) at the end of the plateau is below its start, with a "
    "negative Spearman correlation against epoch, in every grokked run",
    "Vasudeva et al. reference notebook (sheet §5): weight norm 120 -> 55 by epoch 3000, then "
    "~50 -> ~33 at grokking",
    statistic="per grokked run, plateau start and end medians and Spearman rho of the L2 norm "
              "of all parameters",
    comparison="end < start and rho < 0 in each run; runs combined as in grokking_phases.py",
    bars=PHASE_BARS,
)
def check_weight_norm_falls(table):
    return _verdict(table, "rule3", ("wnorm_start", "wnorm_end", "wnorm_rho"), lambda r: (
        f"seed {int(r['seed'])}: {r['wnorm_start']:.1f} -> {r['wnorm_end']:.1f}, "
        f"rho {r['wnorm_rho']:.2f}"))
