"""norm-blowup-tradeoff (Hahn & Rofin E2): parameter norm against LayerNorm blow-up, with weight
decay and learning rate varied at n in {5, 10, 15, 20} (a grid, or the reference's random
searches). Measured with ``experiments/protocol.py``.
"""

from __future__ import annotations

import random
from typing import Union

import numpy as np
from pydantic import Field

from ...train import TrainConfig
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from ..common import ModelChoice
from ..protocol import (MeasureSpec, fit_measure_group, reference_model, reference_train,
                        validate_boolean)
from ..stats import rounded, spearman


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
            cfg = {"target": target, "n": n, "weight_decay": wd, "lr": lr, "seed": s,
                   "model": spec.model.model_dump(), "train": spec.train.model_dump(),
                   "measure": spec.measure.model_dump(), "keep_mse": spec.keep_mse}
            p = self._plan(cfg, (target, f"n={n}"))
            if p.id not in seen:  # a random search may draw one configuration twice
                seen.add(p.id)
                plans.append(p)
        return plans

    def run_group(self, spec, plans, device, progress=False):
        return fit_measure_group(plans, device, progress)

    def figures(self, table, artifacts):
        from . import figures

        return {"blowup_vs_norm_by_n": figures.tradeoff_figure(table)}


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
                        "median_norm": rounded(float(np.median([r["param_norm"] for r in at])), 3),
                        "median_blowup": rounded(float(np.median([r["blowup"] for r in at])), 3),
                        "median_product": rounded(float(np.median([r["param_norm"] * r["blowup"] for r in at])), 3),
                        "spearman_norm_blowup": rounded(spearman([r["param_norm"] for r in at],
                                                            [r["blowup"] for r in at]), 3),
                        "weight_decays": len({r["weight_decay"] for r in at})}
        out[t] = {"converged": f"{len(rows)}/{sum(1 for r in table if r['target'] == t)}",
                  "spearman_n_product": rounded(spearman([r["n"] for r in rows], prod), 3),
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

