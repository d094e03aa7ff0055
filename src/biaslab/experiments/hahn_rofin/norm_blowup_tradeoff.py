"""norm-blowup-tradeoff (Hahn & Rofin E2): parameter norm against LayerNorm blow-up, with weight
decay and learning rate varied at n in {5, 10, 15, 20} (a grid, or the reference's random
searches). Measured with ``experiments/protocol.py``; each run also stores the parameter norm at
initialization (``init_norm``, same exclusions) and ``norm_ratio`` = param_norm / init_norm,
because at small width LayerNorm gains and embeddings dominate the plain norm.

Claims (issue 10 item 2): ``parity-further-out-in-norm-blowup-plane`` (the paper's comparison
between targets and across n), ``layernorm-trades-norm-for-blowup`` (the within-n trade-off, for
every target: a property of LayerNorm models, not evidence for PARITY), and the first rule kept as
``parity-needs-norm-or-blowup-old-rule``.
"""

from __future__ import annotations

import math
import random
import time
from typing import Union

import numpy as np
from pydantic import Field

from ...execute.plan import shared_config
from ...measure.norms import parameter_norm_stack
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from ..claims import combine
from ..common import ModelChoice, planned_lr, members_of
from ..outcomes import member_outcomes, train_metrics
from ..protocol import (MeasureSpec, measure_members, reference_model, reference_train,
                        validate_boolean)
from ..stats import jsonable, linfit, mean_sd, rounded, spearman


class TradeoffSpec(SpecBase):
    targets: list[str] = Field(default=["parity", "majority", "first", "mean"], min_length=1,
                               description="Boolean targets")
    ns: list[int] = Field(default=[5, 10, 15, 20], min_length=1, description="input lengths")
    weight_decays: list[float] = Field(default=[0.0, 0.1, 0.2, 0.3, 0.4], min_length=1,
                                       description="grid: AdamW weight decays")
    lrs: list[float] = Field(default=[3e-4], min_length=1, description="grid: learning rates")
    seeds: list[int] = Field(default=[0], min_length=1, description="grid: model seeds")
    random_runs: Union[int, dict[str, int]] = Field(
        default=0, description="> 0: per target (or target -> count), this many runs with n drawn "
        "from ns, wd and lr uniform in the ranges, seed uniform in seed_range (the reference's "
        "random searches), instead of the grid")
    wd_range: tuple[float, float] = Field(default=(0.0, 0.4), description="random search: weight decay range")
    lr_range: tuple[float, float] = Field(default=(1e-4, 5e-4), description="random search: lr range")
    seed_range: tuple[int, int] = Field(default=(0, 1000), description="random search: seed range")
    search_seed: int = Field(default=0, description="seed of the random search's draws")
    model: ModelChoice = Field(default_factory=reference_model,
                               description="the model trained (default: the reference's)")
    train: TrainConfig = Field(default_factory=reference_train, description="training recipe")
    measure: MeasureSpec = Field(default_factory=MeasureSpec, description="how runs are measured")
    keep_mse: float = Field(default=1e-3, gt=0, description="converged = eval MSE below this")


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
            validate_boolean(target, n)
            # the grid's lr is this spec's lr: a model.lr set overrides it, as in every experiment
            cfg = {"target": target, "n": n, "weight_decay": wd,
                   "lr": planned_lr(lr, spec.model.lr), "seed": s,
                   "model": spec.model.model_dump(), "train": spec.train.model_dump(),
                   "measure": spec.measure.model_dump(), "keep_mse": spec.keep_mse}
            p = self._plan(cfg, (target, f"n={n}"))
            if p.id not in seen:  # a random search may draw one configuration twice
                seen.add(p.id)
                plans.append(p)
        return plans

    def run_group(self, spec, plans, device, progress=False):
        return fit_measure_with_init(plans, device, progress)

    def figures(self, table, artifacts):
        from . import figures
        from .norm_blowup_figures import outward_figure

        return {"blowup_vs_norm_by_n": figures.tradeoff_figure(table),
                "outward_by_n": outward_figure(table)}


def fit_measure_with_init(plans, device, progress=False):
    """``protocol.fit_measure_group`` plus the parameter norm of every member at initialization
    (taken from the stack before its first step; positional embeddings excluded, as in
    ``param_norm``) and the ratio of the final norm to it."""
    t0 = time.perf_counter()
    c0 = shared_config(plans)
    cfg, model = TrainConfig(**c0["train"]), ModelChoice(**c0["model"])
    stack = Stack(model.name, model.params, make_task(c0["target"], {"n": c0["n"]}),
                  members_of(plans), device)
    init = [float(v) for v in parameter_norm_stack(stack).detach().cpu()]
    result = train(stack, cfg, progress=progress)
    met = measure_members(stack, cfg.loss, MeasureSpec(**c0["measure"]), c0["keep_mse"])
    met["init_norm"] = init
    met["norm_ratio"] = [a / b if b > 0 else float("nan") for a, b in zip(met["param_norm"], init)]
    return member_outcomes(plans, lambda i: {**{k: v[i] for k, v in met.items()},
                                             **train_metrics(result, cfg, i)},
                           time.perf_counter() - t0, result=result, series=("train_loss", "mse"))


TRADEOFF_MIN_PER_N = 4  # converged PARITY runs at one n for the within-n statistic


def _median(vals):
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else float("nan")


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
                        "median_norm": rounded(float(np.median([r["param_norm"] for r in at])), 3),
                        "median_blowup": rounded(float(np.median([r["blowup"] for r in at])), 3),
                        "median_product": rounded(float(np.median([r["param_norm"] * r["blowup"] for r in at])), 3),
                        "median_norm_ratio": rounded(_median([r.get("norm_ratio") for r in at]), 4),
                        "spearman_norm_blowup": rounded(spearman([r["param_norm"] for r in at],
                                                            [r["blowup"] for r in at]), 3),
                        "weight_decays": len({r["weight_decay"] for r in at})}
        out[t] = {"converged": f"{len(rows)}/{sum(1 for r in table if r['target'] == t)}",
                  "spearman_n_product": rounded(spearman([r["n"] for r in rows], prod), 3),
                  "n_values": len(per_n), "per_n": per_n}
    return out


@register_claim(
    "parity-needs-norm-or-blowup-old-rule",
    "norm-blowup-tradeoff",
    "(old rule, kept for the record; was 'parity-needs-norm-or-blowup': its part B holds for "
    "MAJORITY as strongly as for PARITY, and part A is not the paper's between-target comparison) "
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
    numbers = {"rho_n_product_parity": rho_a, "mean_rho_norm_blowup_parity": rounded(rho_b, 3),
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



# --- The paper's comparison and the restated trade-off (issue 10 item 2) --------------------------
# Both rules were written before any run of the presets that carry them; both are symmetric: a
# difference within two standard errors of zero is a tie and gives INCONCLUSIVE, never FAIL.
MIN_CELL = 2  # converged runs of one target at one n, for a mean and its standard error
MIN_NS = 3  # n values the comparison and the slope need ("at each n" and "moves with n")


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
    cells: dict = {}
    for r in table:
        if r.get("converged") == 1.0:
            u = outward(r, norm_key)
            if math.isfinite(u):
                cells.setdefault((r["target"], r["n"]), []).append(u)
    return cells


def _sign(diff: float, se: float) -> str:
    """PASS when diff > 2 se, FAIL when diff < -2 se, INCONCLUSIVE in between (a tie)."""
    if not math.isfinite(diff):
        return "INCONCLUSIVE"
    return "PASS" if diff > 2 * se else "FAIL" if diff < -2 * se else "INCONCLUSIVE"


def further_out_stats(table, norm_key: str = "param_norm") -> dict:
    """Per n: PARITY's mean outward value minus each other target's (Welch standard error); the
    least-squares slope of PARITY's outward value on n (its standard error); the parts' statuses."""
    cells = outward_cells(table, norm_key)
    par_ns = sorted(n for (t, n), v in cells.items() if t == "parity" and len(v) >= MIN_CELL)
    comps, compared_ns = [], set()
    for n in par_ns:
        mp, sp, kp = mean_sd(cells[("parity", n)])
        for t in sorted({t for t, m in cells if m == n and t != "parity"}):
            mo, so, ko = mean_sd(cells[(t, n)])
            if ko < MIN_CELL:
                continue
            d, se = mp - mo, math.sqrt(sp ** 2 / kp + so ** 2 / ko)
            comps.append({"n": n, "other": t, "diff": rounded(d, 4), "se": rounded(se, 4),
                          "runs": f"{kp}/{ko}", "status": _sign(d, se)})
            compared_ns.add(n)
    xs = [n for n in par_ns for _ in cells[("parity", n)]]
    ys = [u for n in par_ns for u in cells[("parity", n)]]
    fit = linfit(xs, ys)
    slope, se_slope = fit["slope"], float("nan")
    if len(xs) > 2 and math.isfinite(slope):
        x = np.asarray(xs, float)
        resid = np.asarray(ys) - (fit["intercept"] + slope * x)
        se_slope = math.sqrt(float((resid ** 2).sum()) / (len(xs) - 2) / float(((x - x.mean()) ** 2).sum()))
    others = {}
    for t in sorted({t for t, _ in cells if t != "parity"}):
        o = [(n, u) for (tt, n), v in cells.items() if tt == t for u in v]
        others[t] = rounded(linfit([a for a, _ in o], [b for _, b in o])["slope"], 4)
    means = {f"{t} n={n}": rounded(mean_sd(v)[0], 4) for (t, n), v in sorted(cells.items())}
    return {"comparisons": comps, "compared_ns": sorted(compared_ns), "parity_ns": par_ns,
            "slope": rounded(slope, 5), "slope_se": rounded(se_slope, 5),
            "slope_status": _sign(slope, se_slope), "other_slopes": others, "mean_outward": means}


def further_out_verdict(st: dict) -> str:
    """The rule on ``further_out_stats``: INCONCLUSIVE with fewer than MIN_NS n values compared or
    on the slope; else every comparison and the slope combined (any FAIL fails, all PASS pass)."""
    if len(st["compared_ns"]) < MIN_NS or len(st["parity_ns"]) < MIN_NS:
        return "INCONCLUSIVE"
    return combine([c["status"] for c in st["comparisons"]] + [st["slope_status"]])


@register_claim(
    "parity-further-out-in-norm-blowup-plane",
    "norm-blowup-tradeoff",
    "converged PARITY transformers lie further out in the (parameter norm, LayerNorm blow-up) "
    "plane than every other target at each n (mean log(norm x blow-up) higher by more than 2 "
    "standard errors), and move outward with n (slope of log(norm x blow-up) on n above 2 se); "
    "a difference of the opposite sign beyond 2 se fails, a tie is INCONCLUSIVE; needs >= 3 n",
    "Hahn & Rofin Figs 2, 9, 10 (E2; sheet §4 E2, §7 target 3; Corollary 5): in the "
    "blow-up (log x) vs norm plane PARITY sits further up and right than MAJORITY, FIRST and "
    "MEAN and moves outward with n; figure values not published in the sheet",
)
def check_further_out(table):
    # Decision rule, fixed before the runs (reference: Figs 2/9/10 of the paper, the reference's
    # logged norm x blow-up; sheet §1 Corollary 5, §4 E2). Converged runs only (eval MSE <
    # keep_mse, the reference's plotting filter). u = log(norm) + log(blow-up) per run. (1) At each
    # n where PARITY and another target each have >= 2 converged runs: d = mean u(PARITY) - mean
    # u(other), se = sqrt(s_p^2/k_p + s_o^2/k_o); "out" if d > 2 se, "in" if d < -2 se, a tie
    # otherwise. (2) Least-squares slope of PARITY's u on n over its runs (n values with >= 2 runs),
    # with its standard error; "out" / "in" / tie by the same 2-se band. PASS: every comparison and
    # the slope "out". FAIL: any of them "in". INCONCLUSIVE: otherwise, or < 3 n values compared.
    # The same rule on the norm relative to its init value (norm_ratio) is reported, not decided.
    st = further_out_stats(table)
    status = further_out_verdict(st)
    rel = further_out_stats(table, "norm_ratio") if any("norm_ratio" in r for r in table) else None
    numbers = {**st, "relative_to_init": None if rel is None else {
        "status": further_out_verdict(rel), "comparisons": rel["comparisons"],
        "slope": rel["slope"], "slope_se": rel["slope_se"]}}
    if len(st["compared_ns"]) < MIN_NS or len(st["parity_ns"]) < MIN_NS:
        return Verdict(status, f"too few n values with >= {MIN_CELL} converged runs: PARITY at "
                       f"{st['parity_ns']}, compared at {st['compared_ns']} (need {MIN_NS})",
                       jsonable(numbers))
    comps = "; ".join(f"n={c['n']} vs {c['other']}: {c['diff']:+.3g} (se {c['se']:.2g})"
                      for c in st["comparisons"])
    summary = (f"PARITY minus other targets in mean log(norm x blow-up): {comps}; PARITY's slope "
               f"on n {st['slope']:+.4g} (se {st['slope_se']:.2g}); relative to init: "
               f"{numbers['relative_to_init']['status'] if rel else 'not stored'}")
    return Verdict(status, summary, jsonable(numbers))


def within_n_tradeoff(table, norm_key: str = "param_norm") -> dict:
    """Per target: Spearman(norm, blow-up) at each n with >= TRADEOFF_MIN_PER_N converged runs
    over >= 2 weight decays, their mean, and the standard error of that mean under no association
    (Var of Spearman's rho over k independent pairs is 1/(k-1), exactly, under the null)."""
    conv = [r for r in table if r.get("converged") == 1.0]
    out = {}
    for t in sorted({r["target"] for r in table}):
        cells = []
        for n in sorted({r["n"] for r in conv if r["target"] == t}):
            at = [r for r in conv if r["target"] == t and r["n"] == n]
            if len(at) < TRADEOFF_MIN_PER_N or len({r["weight_decay"] for r in at}) < 2:
                continue
            rho = spearman([r.get(norm_key) for r in at], [r["blowup"] for r in at])
            if math.isfinite(rho):
                cells.append((n, rho, len(at)))
        if not cells:
            out[t] = {"cells": 0, "status": "INCONCLUSIVE"}
            continue
        mean = float(np.mean([c[1] for c in cells]))
        se0 = math.sqrt(sum(1 / (k - 1) for _, _, k in cells)) / len(cells)
        out[t] = {"cells": len(cells), "rho_by_n": {n: rounded(r, 3) for n, r, _ in cells},
                  "mean_rho": rounded(mean, 4), "se0": rounded(se0, 4),
                  "status": _sign(-mean, se0)}  # a trade-off is a negative association
    return out


@register_claim(
    "layernorm-trades-norm-for-blowup",
    "norm-blowup-tradeoff",
    "in post-LN transformers, at fixed n and across weight decay, a lower parameter norm comes "
    "with a higher LayerNorm blow-up for every target trained (mean within-n Spearman(norm, "
    "blow-up) below -2 standard errors of the null for each target); a property of LayerNorm "
    "models, not evidence that PARITY needs norm or blow-up",
    "Hahn & Rofin Figs 3, 9, 10 (E2, E3: weight decay trades norm for blow-up); the paper "
    "states it for PARITY; with scale-invariant LayerNorms weight decay shrinks the weights "
    "before a LayerNorm and so raises its inverse std for any target",
)
def check_layernorm_tradeoff(table):
    # Decision rule, fixed before the runs (reference: sheet §4 E2/E3 "weight decay trades norm for
    # blow-up"). Converged runs only. Per target and n with >= 4 converged runs over >= 2 weight
    # decays: Spearman rho(norm, blow-up). Per target: mean rho over its n values; se0 =
    # sqrt(sum_n 1/(k_n - 1)) / #n (the null standard error of that mean). Per target: PASS if
    # mean < -2 se0, FAIL if mean > +2 se0, a tie otherwise. The claim needs >= 2 targets with a
    # cell (it is about LayerNorm models, not one target); then FAIL if any target FAILs, PASS if
    # all PASS, INCONCLUSIVE otherwise. The rule on norm_ratio is reported, not decided.
    st = within_n_tradeoff(table)
    used = {t: v for t, v in st.items() if v["cells"]}
    rel = within_n_tradeoff(table, "norm_ratio") if any("norm_ratio" in r for r in table) else None
    numbers = {"per_target": st, "relative_to_init": rel}
    if len(used) < 2:
        return Verdict("INCONCLUSIVE", f"within-n statistic for {len(used)} target(s) (need 2)",
                       jsonable(numbers))
    parts = "; ".join(f"{t} {v['mean_rho']:+.3f} (2 se0 {2 * v['se0']:.2f}, {v['cells']} n)"
                      for t, v in used.items())
    return Verdict(combine(v["status"] for v in used.values()),
                   f"mean within-n Spearman(norm, blow-up): {parts}", jsonable(numbers))
