"""Loss landscapes and norms: Hahn & Rofin's sharpness, blow-up and norm claims (issue 3).

Sheet: /work/shared/papers/sensitivity-hardness.md. Four experiments live here:

* ``sharpness-scaling`` (E1): perturbation sharpness, LayerNorm blow-up and parameter norm of
  converged transformers against n, for PARITY, MAJORITY, FIRST and MEAN (sweep A: the reference
  model; sweep B: d_model 4, batch 128, n to the hundreds, no PARITY).
* ``norm-blowup-tradeoff`` (E2): weight decay and learning rate varied at n in {5,10,15,20}.
* ``training-dynamics`` (E3): sharpness and blow-up measured along PARITY training, aligned at
  each run's convergence step.
* ``sensitivity-sharpness`` (E5 step 3): fresh transformers refit on the full cube to the learned
  and random completions of lowsens-generalization; sharpness against the function's sensitivity.

Length generalization and the scratchpad are in ``lengthgen.py`` and ``scratchpad.py``.

Measurement conventions (all experiments). Sharpness is the perturbation sharpness of
``measure.landscape``: mean over ``draws`` Gaussian perturbations (sigma 0.02, every parameter but
the positional embeddings) of L(theta + eps) - L(theta), L the batch MSE against {0,1} targets,
averaged over ``batches`` fresh batches with fresh noise per batch (the reference reused one noise
draw for every batch; ``same_noise`` restores that). Two columns are stored: ``sharpness`` (raw,
the {0,1}-target MSE scale) and ``sharpness_x4`` (= 4 x raw: the MSE of the same outputs against
+-1 labels, the scale of the paper's plots). The noise key is the spec's ``measure.seed`` (shared
by all members: common random numbers, so member i's value equals its value trained alone). A
run is *converged* when its MSE over the same fresh batches is below ``keep_mse`` (1e-3, the
reference's plotting filter); claims use converged runs only.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.func import vmap

from .. import rng
from ..measure.landscape import perturbation_sharpness_stack
from ..measure.norms import layernorm_blowup_stack, parameter_norm_stack
from ..tasks import make_task
from ..train import Stack, TrainConfig, train
from ..train.losses import get_loss
from ..train.trainer import TrainResult
from .base import Experiment, RunOutcome, SpecBase, Verdict, register_claim, register_experiment
from .common import ModelChoice, mean_sd, members_of, stderr
from .stats import linfit, pearson, ranks, spearman  # noqa: F401  (ranks: re-exported)
from .lowsens import LowSensGeneralization, LowSensSpec

MEASURE_STREAM = 0x5A4E  # rng stream of the measurement batches
NOISE_STREAM = 0x401E  # rng stream of the sharpness noise
PROBE_STREAM = 0x7B0B  # rng stream of the fixed probe batch of training-dynamics

#: The reference's model (sheet §3): 2 layers, d 128, 2 heads, FFN 128, post-LN, concat positions.
REFERENCE_MODEL = {"d_model": 128, "n_heads": 2, "n_layers": 2, "d_ff": 128}


def _r(v, nd=4):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(v, nd)


def _combine(statuses: list[str]) -> str:
    if not statuses:
        return "INCONCLUSIVE"
    return "FAIL" if "FAIL" in statuses else "INCONCLUSIVE" if "INCONCLUSIVE" in statuses else "PASS"


# =============================================================================================
# measurement
# =============================================================================================
class MeasureSpec(SpecBase):
    """How sharpness, blow-up and the keep-filter MSE are measured after training."""

    sigma: float = Field(default=0.02, gt=0, description="std of the weight perturbation")
    draws: int = Field(default=10, gt=0, description="perturbations per batch (R)")
    batches: int = Field(default=10, gt=0, description="fresh batches (reference: 1000)")
    batch: int = Field(default=1024, gt=0, description="examples per batch")
    seed: int = Field(default=0, description="seed of the batches' draw and of the noise")
    same_noise: bool = Field(default=False, description="one noise draw for every batch "
                             "(the reference code's quirk)")
    draw_chunk: Optional[int] = Field(default=None, gt=0, description="draws per vmap (memory)")
    member_chunk: Optional[int] = Field(default=None, gt=0, description="members per vmap (memory)")


def measurement_batches(stack: Stack, m: MeasureSpec, split: str = "test", salt: int = 0):
    """``m.batches`` fresh batches per member: list of (x [M, B, L], y [M, B, ...])."""
    task = stack.task
    out = []
    for b in range(m.batches):
        keys = rng.derive(stack.seed_keys, MEASURE_STREAM, m.seed, salt, b)
        out.append(vmap(lambda s, k: task.sample(s, k, m.batch, split))(stack.task_states, keys))
    return out


def sharpness_of(stack: Stack, loss: str, batches, m: MeasureSpec, key_salt: int = 0):
    """Raw perturbation sharpness of every member, [M] (the {0,1}-target MSE scale)."""
    return perturbation_sharpness_stack(
        stack, loss, batches, sigma=m.sigma, draws=m.draws,
        key=rng.derive(rng.key_of(m.seed, stack.device), NOISE_STREAM, key_salt),
        same_noise=m.same_noise, chunk=m.draw_chunk, member_chunk=m.member_chunk)


def blowup_of(stack: Stack, batches, member_chunk=None) -> torch.Tensor:
    """LayerNorm blow-up of every member averaged over the batches, [M]; nan without LayerNorm."""
    try:
        vals = [layernorm_blowup_stack(stack, x, member_chunk=member_chunk)["blowup"]
                for x, _ in batches]
    except ValueError:  # a model without LayerNorm has no blow-up
        return torch.full((stack.M,), float("nan"))
    return torch.stack(vals).mean(0)


def eval_of(stack: Stack, loss: str, batches) -> dict:
    """MSE of the predictions and accuracy of every member over the batches: name -> [M]."""
    predict = get_loss(loss).predict
    mse, acc = [], []
    with torch.no_grad():
        for x, y in batches:
            out = predict(stack.forward(x, shared_input=False).float())
            mse.append((out - y.float()).pow(2).flatten(1).mean(1))
            acc.append(stack.task.correct(out, y).float().flatten(1).mean(1))
    return {"eval_mse": torch.stack(mse).mean(0), "eval_acc": torch.stack(acc).mean(0)}


def measure_members(stack: Stack, loss: str, m: MeasureSpec, keep_mse: float) -> dict:
    """Every final measure of every member: name -> list of M floats."""
    batches = measurement_batches(stack, m)
    ev = eval_of(stack, loss, batches)
    sharp = sharpness_of(stack, loss, batches, m)
    out = {
        "sharpness": sharp,
        "sharpness_x4": 4 * sharp,
        "blowup": blowup_of(stack, batches, m.member_chunk),
        "param_norm": parameter_norm_stack(stack),
        **ev,
    }
    out["converged"] = (ev["eval_mse"] < keep_mse).float()
    return {k: [float(v) for v in t.detach().cpu()] for k, t in out.items()}


def train_metrics(result: TrainResult, cfg: TrainConfig, i: int) -> dict:
    """Per-member training facts: trainer's convergence, step reached, divergence."""
    cs = int(result.converge_step[i])
    steps = cs if (cfg.stop_on_converge and cs > 0) else result.steps_run
    return {"train_converged": float(result.converged[i]), "converge_step": cs,
            "diverged": float(result.diverged[i]), "steps": steps}


def history_series(result: TrainResult, i: int, names=("train_loss", "mse")) -> list:
    return [(h["step"], k, h[k][i]) for h in result.history for k in names if k in h]


def fit_and_measure(task_name: str, task_params, members, model: ModelChoice, train_cfg: TrainConfig,
                    m: MeasureSpec, keep_mse: float, device, progress=False):
    """Train one stack (one task class) and measure it; returns (stack, result, metrics, seconds).

    ``task_params`` is one dict (shared by all members) or a list of dicts (one per member).
    """
    t0 = time.perf_counter()
    if isinstance(task_params, dict):
        tasks = make_task(task_name, task_params)
    else:
        tasks = [make_task(task_name, p) for p in task_params]
    stack = Stack(model.name, model.params, tasks, members, device)
    result = train(stack, train_cfg, progress=progress)
    metrics = measure_members(stack, train_cfg.loss, m, keep_mse)
    return stack, result, metrics, time.perf_counter() - t0


def reference_train() -> TrainConfig:
    """Sheet §3: AdamW lr 3e-4 wd 0.1 (on the members), batch 1024, 10k steps, MSE on {0,1}; the
    reference trains all 10k steps (no early stop) and keeps runs with eval MSE < 1e-3."""
    return TrainConfig(steps=10_000, batch=1024, eval_every=100, converge="mse", converge_mse=1e-3,
                       stop_on_converge=False, eval_split="test")


def _reference_model() -> ModelChoice:
    return ModelChoice(name="transformer", params=dict(REFERENCE_MODEL))


def _validate_boolean(target: str, n: int) -> None:
    from ..errors import InputError
    from ..tasks.boolean import BooleanTask

    task = make_task(target, {"n": n})
    if not isinstance(task, BooleanTask):
        raise InputError("targets", f"{target} is not a Boolean task", "parity, majority, first, mean")


# =============================================================================================
# sharpness-scaling (E1)
# =============================================================================================
class SharpnessSweep(SpecBase):
    targets: list[str] = Field(default=["parity", "majority", "first", "mean"], min_length=1,
                               description="Boolean targets")
    ns: list[int] = Field(default=list(range(4, 31)), min_length=1, description="input lengths")
    seeds: list[int] = Field(default=list(range(10)), min_length=1, description="model seeds")
    model: ModelChoice = Field(default_factory=_reference_model)
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    train: TrainConfig = Field(default_factory=reference_train)


class SharpnessSpec(SpecBase):
    sweeps: dict[str, SharpnessSweep] = Field(
        default_factory=lambda: {"A": SharpnessSweep()}, min_length=1,
        description="named sweeps; each is a grid targets x ns x seeds with its own model")
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    keep_mse: float = Field(default=1e-3, gt=0, description="converged = eval MSE below this")


@register_experiment
class SharpnessScaling(Experiment):
    name = "sharpness-scaling"
    description = "perturbation sharpness, LayerNorm blow-up and norm of converged transformers vs n"
    Spec = SharpnessSpec

    def plan(self, spec: SharpnessSpec):
        plans = []
        for sw_name, sw in spec.sweeps.items():
            sw.model.validate_now(f"sweeps.{sw_name}.model")
            for target in sw.targets:
                for n in sw.ns:
                    _validate_boolean(target, n)
                    for s in sw.seeds:
                        cfg = {"sweep": sw_name, "target": target, "n": n, "seed": s,
                               "model": sw.model.model_dump(), "lr": sw.model.lr or sw.lr,
                               "weight_decay": sw.weight_decay, "train": sw.train.model_dump(),
                               "measure": spec.measure.model_dump(), "keep_mse": spec.keep_mse}
                        plans.append(self._plan(cfg, (sw_name, target, f"n={n}")))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        c0 = plans[0].config
        members = members_of(plans)
        train_cfg = TrainConfig(**c0["train"])
        stack, result, met, seconds = fit_and_measure(
            c0["target"], {"n": c0["n"]}, members, ModelChoice(**c0["model"]), train_cfg,
            MeasureSpec(**c0["measure"]), c0["keep_mse"], device, progress)
        return [RunOutcome(p, {**{k: v[i] for k, v in met.items()}, **train_metrics(result, train_cfg, i)},
                           history_series(result, i), seconds=seconds / len(plans))
                for i, p in enumerate(plans)]

    def figures(self, table):
        from ..report.landscape_figures import sharpness_scaling_figure

        return {"sharpness_blowup_norm_vs_n": sharpness_scaling_figure(table)}


SCALING_MIN_RUNS = 5  # converged runs per target, fixed before any run
SCALING_MIN_NS = 3  # distinct n with a converged run, per target


def scaling_fits(table, value: str = "sharpness_x4") -> dict:
    """Per (sweep, target): least-squares fit of ``value`` on n over converged runs."""
    cells: dict = {}
    for r in table:
        if r.get("converged") == 1.0:
            cells.setdefault((r["sweep"], r["target"]), []).append((r["n"], r.get(value)))
    out = {}
    for (sw, t), pts in sorted(cells.items()):
        fit = linfit([p[0] for p in pts], [p[1] for p in pts])
        fit["ns"] = len({p[0] for p in pts})
        out.setdefault(sw, {})[t] = fit
    return out


@register_claim(
    "sharpness-grows-for-parity",
    "sharpness-scaling",
    "the perturbation sharpness of converged transformers grows with n for PARITY "
    "(positive slope, Pearson r > 0.8) while MAJORITY's and FIRST's stay flat (|slope| under a "
    "fifth of PARITY's), in the sweep that trains PARITY",
    "Hahn & Rofin Figs 1, 5-8 (E1): sharpness (x4) grows with n for PARITY; MAJORITY, FIRST, MEAN "
    "stay low and flat up to n = 512; slopes, r and p are plotted but their values are not "
    "published in the sheet",
)
def check_sharpness_scaling(table):
    fits = scaling_fits(table)
    total = {}
    for r in table:
        key = (r["sweep"], r["target"])
        total[key] = total.get(key, 0) + 1
    numbers = {sw: {t: {"slope_x4": _r(f["slope"], 5), "r": _r(f["r"], 3),
                        "converged": f"{f['k']}/{total.get((sw, t), 0)}", "n_values": f["ns"]}
                    for t, f in fs.items()} for sw, fs in fits.items()}
    statuses, parts = [], []
    parity_sweeps = sorted({r["sweep"] for r in table if r["target"] == "parity"})
    for sw in parity_sweeps:
        fs = fits.get(sw, {})
        # Decision rule, fixed before the runs: every one of PARITY, MAJORITY, FIRST needs at
        # least SCALING_MIN_RUNS converged runs over SCALING_MIN_NS distinct n, else INCONCLUSIVE.
        # PASS: PARITY slope > 0 with r > 0.8, and |slope| of MAJORITY and of FIRST below a fifth
        # of PARITY's. FAIL otherwise.
        enough = all(t in fs and fs[t]["k"] >= SCALING_MIN_RUNS and fs[t]["ns"] >= SCALING_MIN_NS
                     for t in ("parity", "majority", "first"))
        if not enough:
            statuses.append("INCONCLUSIVE")
            parts.append(f"sweep {sw}: too few converged runs / n values "
                         f"(need {SCALING_MIN_RUNS} runs over {SCALING_MIN_NS} n per target)")
            continue
        p, mj, fi = fs["parity"], fs["majority"], fs["first"]
        ok = (p["slope"] > 0 and p["r"] > 0.8 and abs(mj["slope"]) < p["slope"] / 5
              and abs(fi["slope"]) < p["slope"] / 5)
        statuses.append("PASS" if ok else "FAIL")
        parts.append(f"sweep {sw}: slope x4 parity {p['slope']:.4g} (r {p['r']:.2f}), majority "
                     f"{mj['slope']:.3g}, first {fi['slope']:.3g}")
    for sw in sorted(set(fits) - set(parity_sweeps)):
        parts.append(f"sweep {sw} (no parity; reported only): " + ", ".join(
            f"{t} {f['slope']:.3g}" for t, f in fits[sw].items()))
    if not parity_sweeps:
        parts.append("no PARITY runs")
    return Verdict(_combine(statuses), "; ".join(parts), numbers)


# =============================================================================================
# norm-blowup-tradeoff (E2)
# =============================================================================================
class TradeoffSpec(SpecBase):
    targets: list[str] = Field(default=["parity", "majority", "first", "mean"], min_length=1)
    ns: list[int] = Field(default=[5, 10, 15, 20], min_length=1)
    weight_decays: list[float] = Field(default=[0.0, 0.1, 0.2, 0.3, 0.4], min_length=1)
    lrs: list[float] = Field(default=[3e-4], min_length=1)
    seeds: list[int] = Field(default=[0], min_length=1)
    random_runs: Union[int, dict[str, int]] = Field(
        default=0, description="> 0: per target (or target -> count), this many runs with n drawn "
        "from ns, wd and lr uniform in the ranges, seed uniform in seed_range (the reference's "
        "random searches), instead of the grid")
    wd_range: tuple[float, float] = Field(default=(0.0, 0.4))
    lr_range: tuple[float, float] = Field(default=(1e-4, 5e-4))
    seed_range: tuple[int, int] = Field(default=(0, 1000))
    search_seed: int = Field(default=0, description="seed of the random search's draws")
    model: ModelChoice = Field(default_factory=_reference_model)
    train: TrainConfig = Field(default_factory=reference_train)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    keep_mse: float = Field(default=1e-3, gt=0)


@register_experiment
class NormBlowupTradeoff(Experiment):
    name = "norm-blowup-tradeoff"
    description = "parameter norm vs LayerNorm blow-up across weight decay, lr and n, per target"
    Spec = TradeoffSpec

    def draws(self, spec: TradeoffSpec):
        """(target, n, wd, lr, seed) of every run: the grid, or the seeded random search."""
        out = []
        for target in spec.targets:
            k = spec.random_runs.get(target, 0) if isinstance(spec.random_runs, dict) \
                else spec.random_runs
            if spec.random_runs:
                g = random.Random(f"{spec.search_seed}:{target}")
                for _ in range(k):
                    out.append((target, g.choice(spec.ns), round(g.uniform(*spec.wd_range), 4),
                                float(f"{g.uniform(*spec.lr_range):.4g}"),
                                g.randint(*spec.seed_range)))
            else:
                out += [(target, n, wd, lr, s) for n in spec.ns for wd in spec.weight_decays
                        for lr in spec.lrs for s in spec.seeds]
        return out

    def plan(self, spec: TradeoffSpec):
        spec.model.validate_now("model")
        plans, seen = [], set()
        for target, n, wd, lr, s in self.draws(spec):
            _validate_boolean(target, n)
            cfg = {"target": target, "n": n, "weight_decay": wd, "lr": lr, "seed": s,
                   "model": spec.model.model_dump(), "train": spec.train.model_dump(),
                   "measure": spec.measure.model_dump(), "keep_mse": spec.keep_mse}
            p = self._plan(cfg, (target, f"n={n}"))
            if p.id not in seen:  # a random search may draw one configuration twice
                seen.add(p.id)
                plans.append(p)
        return plans

    run_group = SharpnessScaling.run_group

    def figures(self, table):
        from ..report.landscape_figures import tradeoff_figure

        return {"blowup_vs_norm_by_n": tradeoff_figure(table)}


TRADEOFF_MIN_PER_N = 4  # converged PARITY runs at one n for the within-n statistic


def tradeoff_stats(table) -> dict:
    conv = [r for r in table if r.get("converged") == 1.0]
    out: dict = {}
    for t in sorted({r["target"] for r in table}):
        rows = [r for r in conv if r["target"] == t]
        prod = [r["param_norm"] * r["blowup"] for r in rows]
        per_n = {}
        for n in sorted({r["n"] for r in rows}):
            at = [r for r in rows if r["n"] == n]
            per_n[n] = {"runs": len(at),
                        "median_norm": _r(float(np.median([r["param_norm"] for r in at])), 3),
                        "median_blowup": _r(float(np.median([r["blowup"] for r in at])), 3),
                        "median_product": _r(float(np.median([r["param_norm"] * r["blowup"] for r in at])), 3),
                        "spearman_norm_blowup": _r(spearman([r["param_norm"] for r in at],
                                                            [r["blowup"] for r in at]), 3),
                        "weight_decays": len({r["weight_decay"] for r in at})}
        out[t] = {"converged": f"{len(rows)}/{sum(1 for r in table if r['target'] == t)}",
                  "spearman_n_product": _r(spearman([r["n"] for r in rows], prod), 3),
                  "n_values": len(per_n), "per_n": per_n}
    return out


@register_claim(
    "parity-needs-norm-or-blowup",
    "norm-blowup-tradeoff",
    "converged PARITY transformers need a large parameter norm or a large LayerNorm blow-up, "
    "more so as n grows (Spearman(n, norm x blow-up) > 0.3), and at fixed n a lower norm comes "
    "with a higher blow-up (mean over n of Spearman(norm, blow-up) < -0.3)",
    "Hahn & Rofin Figs 2, 9, 10 (E2; Corollary 5): PARITY sits further up and right in the "
    "blow-up/norm plane and moves outward with n; weight decay trades norm for blow-up; figure "
    "values not published in the sheet",
)
def check_tradeoff(table):
    stats = tradeoff_stats(table)
    par = stats.get("parity")
    if par is None:
        return Verdict("INCONCLUSIVE", "no PARITY runs", stats)
    rows = [r for r in table if r["target"] == "parity" and r.get("converged") == 1.0]
    # Decision rule, fixed before the runs. (A) Spearman rank correlation between n and
    # norm x blow-up over converged PARITY runs > 0.3 (needs >= 6 runs over >= 2 n values).
    # (B) at each n with >= TRADEOFF_MIN_PER_N converged PARITY runs spanning >= 2 weight decays,
    # Spearman(norm, blow-up) across those runs; their mean < -0.3 (needs >= 1 such n).
    # PASS: A and B. FAIL: either fails. INCONCLUSIVE: too few runs for A or B.
    within = [v["spearman_norm_blowup"] for v in par["per_n"].values()
              if v["runs"] >= TRADEOFF_MIN_PER_N and v["weight_decays"] >= 2
              and v["spearman_norm_blowup"] is not None]
    rho_a = par["spearman_n_product"]
    rho_b = float(np.mean(within)) if within else None
    numbers = {"rho_n_product_parity": rho_a, "mean_rho_norm_blowup_parity": _r(rho_b, 3),
               "n_values_used_for_B": len(within), "per_target": stats}
    if len(rows) < 6 or par["n_values"] < 2 or rho_a is None or rho_b is None:
        return Verdict("INCONCLUSIVE", f"too few converged PARITY runs ({par['converged']}, "
                       f"{par['n_values']} n values, {len(within)} n values for the within-n "
                       "statistic)", numbers)
    ok = rho_a > 0.3 and rho_b < -0.3
    others = ", ".join(f"{t} {s['spearman_n_product']}" for t, s in stats.items() if t != "parity")
    summary = (f"PARITY: Spearman(n, norm x blowup) = {rho_a}, mean within-n Spearman(norm, "
               f"blowup) = {rho_b:.3f} over {len(within)} n; Spearman(n, product) of others: {others}")
    return Verdict("PASS" if ok else "FAIL", summary, numbers)


# =============================================================================================
# training-dynamics (E3)
# =============================================================================================
def _dynamics_train() -> TrainConfig:
    # Sheet E3: 20k steps, logging (here: probing) every 100 steps, no early stop.
    return TrainConfig(steps=20_000, batch=1024, eval_every=100, converge="none",
                       stop_on_converge=False, eval_split="test")


def _dynamics_probe() -> MeasureSpec:
    # Sheet E3: a fixed batch of 1024, sharpness with R = 500 draws reseeded at every probe.
    return MeasureSpec(draws=500, batches=1, batch=1024)


class DynamicsSpec(SpecBase):
    target: str = Field(default="parity", description="Boolean target")
    n: int = Field(default=25, gt=0)
    seeds: list[int] = Field(default=list(range(101)), min_length=1)
    weight_decays: list[float] = Field(default=[0.0, 0.1, 0.2, 0.3], min_length=1)
    lr: float = Field(default=3e-4, gt=0)
    model: ModelChoice = Field(default_factory=_reference_model)
    train: TrainConfig = Field(default_factory=_dynamics_train,
                               description="probes run every train.eval_every steps")
    probe: MeasureSpec = Field(default_factory=_dynamics_probe,
                               description="probe: one fixed batch (batches=1), fresh noise per probe")
    align_loss: float = Field(default=0.01, gt=0, description="convergence = first probe with "
                              "fixed-batch loss below this (the reference's alignment)")
    window: int = Field(default=1000, gt=0, description="steps in each comparison window")
    span: int = Field(default=5000, gt=0, description="aligned curves stored from -span to +span")

    @model_validator(mode="after")
    def _windows(self):
        if self.window % self.train.eval_every or self.span % self.train.eval_every:
            raise ValueError("window and span must be multiples of train.eval_every")
        return self


DYN_NAMES = ("loss", "sharpness_x4", "blowup", "norm_sq")


def window_stats(series: dict[int, float], c: int, window: int, every: int, last: int) -> dict:
    """Means of a probe series in [c-2W, c-W) (control), [c-W, c) (before), [c, c+W) (after).

    ``ok`` only when all three windows lie inside the probed range (c - 2W >= first probe and
    c + W <= last probe + every)."""
    def mean_in(a, b):
        vals = [v for s, v in series.items() if a <= s < b and v is not None and math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    ok = c > 0 and c - 2 * window >= every and c + window <= last + every
    return {"ctrl": mean_in(c - 2 * window, c - window), "before": mean_in(c - window, c),
            "after": mean_in(c, c + window), "ok": ok}


@register_experiment
class TrainingDynamics(Experiment):
    name = "training-dynamics"
    description = "sharpness, blow-up, norm and loss along PARITY training, aligned at convergence"
    Spec = DynamicsSpec

    def plan(self, spec: DynamicsSpec):
        spec.model.validate_now("model")
        _validate_boolean(spec.target, spec.n)
        plans = []
        for wd in spec.weight_decays:
            for s in spec.seeds:
                cfg = {"target": spec.target, "n": spec.n, "seed": s, "weight_decay": wd,
                       "lr": spec.model.lr or spec.lr, "model": spec.model.model_dump(),
                       "train": spec.train.model_dump(), "probe": spec.probe.model_dump(),
                       "align_loss": spec.align_loss, "window": spec.window, "span": spec.span}
                plans.append(self._plan(cfg, (f"wd={wd}",)))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        t0 = time.perf_counter()
        c0 = plans[0].config
        model = ModelChoice(**c0["model"])
        cfg = TrainConfig(**c0["train"])
        pm = MeasureSpec(**c0["probe"])
        members = members_of(plans)
        stack = Stack(model.name, model.params, make_task(c0["target"], {"n": c0["n"]}), members,
                      device)
        fixed = measurement_batches(stack, pm, salt=PROBE_STREAM)  # the same batch(es) every probe
        lossf = get_loss(cfg.loss).fn
        logs: dict[str, dict[int, list]] = {k: {} for k in DYN_NAMES}

        def probe(step):
            x, y = fixed[0]
            out = stack.forward(x, shared_input=False)
            logs["loss"][step] = vmap(lossf)(out, y).cpu().tolist()
            # Reseeded at every probe: fresh noise, keyed by the probe's step.
            logs["sharpness_x4"][step] = (4 * sharpness_of(stack, cfg.loss, fixed, pm, step)).cpu().tolist()
            logs["blowup"][step] = blowup_of(stack, fixed, pm.member_chunk).cpu().tolist()
            logs["norm_sq"][step] = parameter_norm_stack(stack).pow(2).cpu().tolist()

        result = train(stack, cfg, progress=progress, probe=probe)
        seconds = time.perf_counter() - t0
        every, W, span = cfg.eval_every, c0["window"], c0["span"]
        last = max(logs["loss"])
        outcomes = []
        for i, plan in enumerate(plans):
            per = {k: {s: v[i] for s, v in logs[k].items()} for k in DYN_NAMES}
            c = next((s for s in sorted(per["loss"]) if per["loss"][s] < c0["align_loss"]), -1)
            metrics = {"align_step": c, "final_loss": per["loss"][last],
                       "diverged": float(result.diverged[i])}
            ok = True
            for k in ("sharpness_x4", "blowup", "norm_sq"):
                ws = window_stats(per[k], c, W, every, last)
                ok = ok and ws["ok"]
                for part in ("ctrl", "before", "after"):
                    metrics[f"{k}_{part}"] = ws[part]
                metrics[f"{k}_final"] = per[k][last]
            metrics["windows_ok"] = float(ok and c > 0)
            if c > 0:
                for k in DYN_NAMES:
                    for off in range(-span, span + 1, every):
                        if c + off in per[k]:
                            metrics[f"aligned.{k}.{off:+d}"] = per[k][c + off]
            series = [(s, k, per[k][s]) for k in DYN_NAMES for s in sorted(per[k])]
            outcomes.append(RunOutcome(plan, metrics, series, seconds=seconds / len(plans)))
        return outcomes

    def figures(self, table):
        from ..report.landscape_figures import dynamics_figure

        return {"aligned_at_convergence": dynamics_figure(table)}


DYN_MIN_RUNS = 3
# A priori: the window is short (the reference's plots mark -800..-1200 steps around convergence,
# a few percent of a 20k-step run), so a two-fold change of the mean across it is abrupt on the
# run's time scale; the control ratio (the window before vs the one before that) must be at most
# half as large in log terms, so that a steady drift does not count as a change at convergence.
DYN_FACTOR = 2.0


def dynamics_ratios(table) -> dict:
    rows = [r for r in table if r.get("windows_ok") == 1.0]
    out = {"runs": len(rows), "total": len(table)}
    for k in ("sharpness_x4", "blowup", "norm_sq"):
        before = [r[f"{k}_before"] for r in rows]
        after = [r[f"{k}_after"] for r in rows]
        ctrl = [r[f"{k}_ctrl"] for r in rows]
        mb, ma, mc = (float(np.mean(v)) if v else float("nan") for v in (before, after, ctrl))

        def ratio(num, den):
            if not (math.isfinite(num) and math.isfinite(den)):
                return float("nan")
            if den <= 0:
                return float("inf") if num > 0 else float("nan")
            return num / den

        out[k] = {"before": _r(mb, 5), "after": _r(ma, 5), "ctrl": _r(mc, 5),
                  "ratio": ratio(ma, mb), "ctrl_ratio": ratio(mb, mc)}
    return out


@register_claim(
    "abrupt-change-at-convergence",
    "training-dynamics",
    "along PARITY training, sharpness and LayerNorm blow-up change abruptly at convergence: the "
    "mean over runs in a window after convergence differs from the window before by a factor "
    ">= 2, and by at least twice as much (in log) as between the two windows before",
    "Hahn & Rofin Figs 3, 12-14 (E3): abrupt changes in sharpness and blow-up at convergence "
    "(n = 25, seeds 0-100, wd 0-0.3); curve values not published in the sheet",
)
def check_dynamics(table):
    st = dynamics_ratios(table)
    if st["runs"] < DYN_MIN_RUNS:
        return Verdict("INCONCLUSIVE", f"{st['runs']}/{st['total']} runs converged with full "
                       f"windows (need {DYN_MIN_RUNS})", _jsonable(st))
    statuses, parts = [], []
    for k in ("sharpness_x4", "blowup"):
        R, Rc = st[k]["ratio"], st[k]["ctrl_ratio"]
        if not math.isfinite(R) and R != float("inf"):
            statuses.append("INCONCLUSIVE")
            parts.append(f"{k}: undefined ratio")
            continue
        lr = abs(math.log(R)) if R != float("inf") else float("inf")
        lc = abs(math.log(Rc)) if math.isfinite(Rc) and Rc > 0 else float("inf")
        ok = lr >= math.log(DYN_FACTOR) and lr >= 2 * lc
        statuses.append("PASS" if ok else "FAIL")
        parts.append(f"{k}: after/before {R:.3g} (control {Rc:.3g})")
    return Verdict(_combine(statuses), f"{st['runs']} runs; " + "; ".join(parts), _jsonable(st))


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, float) and not math.isfinite(d):
        return str(d)
    if isinstance(d, float):
        return round(d, 5)
    return d


# =============================================================================================
# sensitivity-sharpness (E5 step 3)
# =============================================================================================
def _refit_train() -> TrainConfig:
    # Refit on the full cube: the reference recipe, 10k steps, keep eval MSE < 1e-3.
    return reference_train()


class SensSharpSpec(SpecBase):
    source: LowSensSpec = Field(default_factory=LowSensSpec,
                                   description="the lowsens-generalization spec whose completions "
                                   "are refit (its runs are looked up by id)")
    source_store: Optional[str] = Field(
        default=None, description="store holding the lowsens-generalization runs; runs missing "
        "there (or all, when None) are trained here first and, with a store, written to it")
    random_sizes: list[int] = Field(default=[256], description="training sizes m whose random "
                                    "completion is refit too (the sheet: m = 256)")
    model_seeds: list[int] = Field(default=[0, 1, 2, 3, 4], min_length=1)
    model: ModelChoice = Field(default_factory=_reference_model)
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    train: TrainConfig = Field(default_factory=_refit_train)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    keep_mse: float = Field(default=1e-3, gt=0)


@register_experiment
class SensitivitySharpness(Experiment):
    name = "sensitivity-sharpness"
    description = "sharpness of transformers refit to learned vs random completions (n = 10)"
    Spec = SensSharpSpec

    def plan(self, spec: SensSharpSpec):
        spec.model.validate_now("model")
        plans = []
        for sp in LowSensGeneralization().plan(spec.source):
            m = sp.config["train_size"]
            kinds = ["learned"] + (["random"] if m in spec.random_sizes else [])
            src = {k: sp.config[k] for k in ("n", "train_size", "function_seed", "subset_seed", "seed")}
            for kind in kinds:
                for s in spec.model_seeds:
                    cfg = {"source_run": sp.id, "source": src, "kind": kind, "seed": s,
                           "model": spec.model.model_dump(), "lr": spec.model.lr or spec.lr,
                           "weight_decay": spec.weight_decay, "train": spec.train.model_dump(),
                           "measure": spec.measure.model_dump(), "keep_mse": spec.keep_mse}
                    plans.append(self._plan(cfg, (f"m={m}", kind)))
        return plans

    def source_tables(self, spec: SensSharpSpec, run_ids: set[str], device, progress=False) -> dict:
        """source run id -> {"learned": array, "random": array, "fitted": float}.

        Read from ``spec.source_store`` when it holds the run; otherwise the lowsens-generalization
        run is trained now (deterministic: the same run id gives the same tables) and, when a
        source store is given, written to it like the local executor does.
        """
        src_exp = LowSensGeneralization()
        src_plans = {p.id: p for p in src_exp.plan(spec.source)}
        # Groups of one sweep share sources (the learned and the random refits of one m): keep
        # what this process already read or trained.
        cache = self.__dict__.setdefault("_source_cache", {})
        tables: dict = {r: cache[r] for r in run_ids if r in cache}
        run_ids = {r for r in run_ids if r not in tables}
        store = None
        if spec.source_store:
            from ..store.db import Store

            store = Store(spec.source_store)
        try:
            if store is not None:
                fitted = {r["run_id"]: r.get("fitted") for r in store.table(src_exp.name)
                          if r["run_id"] in run_ids}
                for rid in store.finished(run_ids):
                    arts = store.artifacts(rid)
                    if "learned_table" in arts and "random_table" in arts:
                        tables[rid] = {"learned": np.load(arts["learned_table"]),
                                       "random": np.load(arts["random_table"]),
                                       "fitted": float(fitted.get(rid) or 0.0)}
            missing = [src_plans[r] for r in sorted(run_ids) if r not in tables]
            if missing and store is None and len(cache) == 0:
                # Training in memory: train every source of the spec once (not group by group).
                missing = [p for p in src_plans.values() if p.id not in tables]
            groups: dict = {}
            for p in missing:
                groups.setdefault(p.group, []).append(p)
            for key, members in groups.items():
                label = f"{progress} (source {key[0]})" if isinstance(progress, str) else progress
                outs = src_exp.run_group(spec.source, members, device, progress=label)
                for out in outs:
                    tables[out.plan.id] = {"learned": out.arrays["learned_table"],
                                           "random": out.arrays["random_table"],
                                           "fitted": float(out.metrics["fitted"])}
                    if store is not None:
                        self._store_source(store, src_exp.name, out, device)
        finally:
            if store is not None:
                store.close()
        cache.update(tables)
        return tables

    @staticmethod
    def _store_source(store, experiment: str, out, device) -> None:
        from ..store.artifacts import save_array

        paths = {name: save_array(store.artifact_dir / out.plan.id / f"{name}.npy", arr)
                 for name, arr in out.arrays.items()}
        store.save_run(out.plan.id, experiment, out.plan.config, status="done", metrics=out.metrics,
                       series=out.series, artifacts=paths, seconds=out.seconds, device=str(device))

    def run_group(self, spec, plans, device, progress=False):
        from ..measure.sensitivity import average_sensitivity

        t0 = time.perf_counter()
        tables = self.source_tables(spec, {p.config["source_run"] for p in plans}, device, progress)
        c0 = plans[0].config
        n = c0["source"]["n"]
        members = members_of(plans)
        train_cfg = TrainConfig(**c0["train"])
        with tempfile.TemporaryDirectory(prefix="biaslab_tables_") as tmp:
            params, as_vals = [], []
            for i, p in enumerate(plans):
                arr = np.asarray(tables[p.config["source_run"]][p.config["kind"]], dtype=np.float32)
                path = Path(tmp) / f"{i}.npy"
                np.save(path, arr)
                params.append({"n": n, "path": str(path)})
                as_vals.append(float(average_sensitivity(torch.as_tensor(arr, dtype=torch.float64))))
            # The tables are read into the task states when the stack is built, inside this block.
            stack, result, met, _ = fit_and_measure(
                "table", params, members, ModelChoice(**c0["model"]), train_cfg,
                MeasureSpec(**c0["measure"]), c0["keep_mse"], device, progress)
        seconds = time.perf_counter() - t0
        outcomes = []
        for i, p in enumerate(plans):
            metrics = {k: v[i] for k, v in met.items()}
            metrics.update(train_metrics(result, train_cfg, i))
            metrics["as_table"] = as_vals[i]
            metrics["source_fitted"] = tables[p.config["source_run"]]["fitted"]
            outcomes.append(RunOutcome(p, metrics, history_series(result, i),
                                       seconds=seconds / len(plans)))
        return outcomes

    def figures(self, table):
        from ..report.landscape_figures import sensitivity_sharpness_figure

        return {"sharpness_vs_sensitivity": sensitivity_sharpness_figure(table)}


SENS_MIN_PER_KIND = 3


def sens_sharp_stats(table) -> dict:
    kept = [r for r in table if r.get("converged") == 1.0 and r.get("source_fitted") == 1.0]
    by_kind = {k: [r for r in kept if r["kind"] == k] for k in ("learned", "random")}
    out = {"kept": f"{len(kept)}/{len(table)}",
           "spearman_as_sharpness": _r(spearman([r["as_table"] for r in kept],
                                                [r["sharpness_x4"] for r in kept]), 3),
           "pearson_as_sharpness": _r(pearson([r["as_table"] for r in kept],
                                              [r["sharpness_x4"] for r in kept]), 3)}
    for k, rows in by_kind.items():
        m, sd, cnt = mean_sd([r["sharpness_x4"] for r in rows])
        out[k] = {"runs": cnt, "sharpness_x4": _r(m, 5), "sd": _r(sd, 5),
                  "stderr": _r(stderr([r["sharpness_x4"] for r in rows]), 5),
                  "as": _r(mean_sd([r["as_table"] for r in rows])[0], 3)}
    return out


@register_claim(
    "sharpness-rises-with-sensitivity",
    "sensitivity-sharpness",
    "transformers refit on the full cube (n = 10 in the paper) to more sensitive functions are "
    "sharper: Spearman "
    "(average sensitivity, sharpness) > 0.3 over converged refits, and refits of random "
    "completions are sharper than refits of learned completions by more than two standard errors",
    "Hahn & Rofin Fig 4 / 15 (E5 step 3): sharpness rises with average sensitivity; random "
    "completions (as about 5) are sharper than learned ones; figure values not published in "
    "the sheet",
)
def check_sens_sharp(table):
    st = sens_sharp_stats(table)
    lr_, rd = st["learned"], st["random"]
    # Decision rule, fixed before the runs: >= SENS_MIN_PER_KIND converged refits of fitted
    # sources per kind. PASS: Spearman > 0.3 and mean(random) - mean(learned) > 2 * sqrt(se_l^2 +
    # se_r^2). FAIL: Spearman <= 0 or mean(random) <= mean(learned). INCONCLUSIVE otherwise.
    if lr_["runs"] < SENS_MIN_PER_KIND or rd["runs"] < SENS_MIN_PER_KIND:
        return Verdict("INCONCLUSIVE", f"too few converged refits (learned {lr_['runs']}, random "
                       f"{rd['runs']}; need {SENS_MIN_PER_KIND} each)", st)
    rho = st["spearman_as_sharpness"]
    diff = rd["sharpness_x4"] - lr_["sharpness_x4"]
    se = math.sqrt(lr_["stderr"] ** 2 + rd["stderr"] ** 2)
    if rho is None:
        status = "INCONCLUSIVE"
    elif rho > 0.3 and diff > 2 * se:
        status = "PASS"
    elif rho <= 0 or diff <= 0:
        status = "FAIL"
    else:
        status = "INCONCLUSIVE"
    summary = (f"Spearman(as, sharpness) = {rho}; sharpness x4 learned {lr_['sharpness_x4']} "
               f"(as {lr_['as']}, {lr_['runs']} runs) vs random {rd['sharpness_x4']} "
               f"(as {rd['as']}, {rd['runs']} runs); diff {diff:.4g}, 2 se {2 * se:.3g}")
    return Verdict(status, summary, st)
