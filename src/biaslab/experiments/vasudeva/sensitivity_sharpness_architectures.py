"""sensitivity-sharpness-architectures: does lower sensitivity go with flatter minima?

Vasudeva et al. §7 / sheet E5 and reproduction target 6 (``papers/low-sensitivity.md``): the
architectures of ``vision-sensitivity`` are trained to equal training accuracy, and on the same
training images each run gets its patch-noise sensitivity and three sharpness measures:
the paper's proxy (``measure/weight_noise.py``: N(0, 0.05^2) on every parameter, 5 draws; mean
L1 logit change ``sharp_l1`` and argmax-flip rate ``sharp_flip``) and the lab's perturbation
sharpness (``measure/landscape.py``: mean rise of the CE loss, ``sharp_loss``). The claim is
correlational, as in the paper.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ... import rng
from ...execute.plan import shared_config
from ...measure.landscape import perturbation_sharpness_stack
from ...measure.weight_noise import weight_noise_sharpness
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from ..stats import ranks, spearman
from .vision_sensitivity import (VisionSensSpec, claim_column, measure_architecture,
                                 plan_architectures)

SHARP_STREAM = 0x54A2


class SharpnessChoice(SpecBase):
    sigma: float = Field(default=0.05, gt=0, description="weight-noise std (reference 0.05)")
    draws: int = Field(default=5, ge=1, description="noisy weight copies (reference 5)")
    lab_sigma: float = Field(default=0.01, gt=0, description="std of the lab's loss sharpness")
    lab_draws: int = Field(description="perturbation draws of the lab's sharpness", default=10, ge=1)


class SharpSpec(VisionSensSpec):
    sharpness: SharpnessChoice = Field(description="how sharpness is measured", default_factory=SharpnessChoice)


@register_experiment
class SensitivitySharpnessArchitectures(Experiment):
    name = "sensitivity-sharpness-architectures"
    description = ("patch-noise sensitivity against weight-noise sharpness (L1 logit change, "
                   "flip rate) and loss sharpness across vision architectures")
    Spec = SharpSpec

    def plan(self, spec: SharpSpec):
        return plan_architectures(self, spec, {"sharpness": spec.sharpness.model_dump()})

    def run_group(self, spec, plans, device, progress=False):
        sh = SharpnessChoice(**shared_config(plans)["sharpness"])

        def sharpness(stack, task, x, y, xt, yt):
            key = rng.key_of(SHARP_STREAM)
            wn = weight_noise_sharpness(stack, x, key, sigma=sh.sigma, draws=sh.draws)
            loss = perturbation_sharpness_stack(stack, "ce", (x, y), sigma=sh.lab_sigma,
                                                draws=sh.lab_draws, key=key, exclude=(),
                                                shared=True, chunk=1)  # one draw at a time
            return {"sharp_l1": wn["l1"], "sharp_flip": wn["flip"], "sharp_loss": loss}

        return measure_architecture(plans, device, progress, extra_measures=sharpness)

    def figures(self, table, artifacts=None):
        from .vision_figures import sharpness_scatter

        return {"sensitivity_vs_sharpness": sharpness_scatter(table)}


PERMUTATIONS = 2000


def permutation_p(xs, ys, seed: int = 0) -> float:
    """One-sided p-value of Spearman rho >= observed under random pairings (fixed seed): the
    Pearson correlation of ranks, for all permutations at once."""
    rx, ry = np.asarray(ranks(list(xs))), np.asarray(ranks(list(ys)))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    if norm == 0:
        return 1.0
    observed = float(rx @ ry / norm)
    g = np.random.default_rng(seed)
    perms = np.stack([g.permutation(ry) for _ in range(PERMUTATIONS)])
    hits = int((perms @ rx / norm >= observed - 1e-12).sum())
    return (hits + 1) / (PERMUTATIONS + 1)


@register_claim(
    "sensitivity-tracks-sharpness",
    "sensitivity-sharpness-architectures",
    "across fitted runs of all architectures, patch-noise sensitivity and the weight-noise L1 "
    "logit change (the paper's sharpness1) are positively rank-correlated",
    "Vasudeva et al. §7 (sheet E5, target 6): lower sensitivity goes with flatter minima "
    "(correlational); expected order ViT < CNN",
)
def check_sharpness(table):
    col = claim_column(table)
    rows = [r for r in table if r.get("fitted") == 1.0 and r.get("sharp_l1") is not None]
    sens = [float(r[col]) for r in rows]
    numbers = {"runs": len(rows), "architectures": len({r["arch"] for r in rows})}
    for m in ("sharp_l1", "sharp_flip", "sharp_loss"):
        numbers[f"spearman_{m}"] = round(spearman(sens, [float(r[m]) for r in rows]), 3)
    means = {}
    for r in rows:
        means.setdefault(r["arch"], []).append((float(r[col]), float(r["sharp_l1"])))
    numbers["by_architecture"] = {a: {"sens": round(float(np.mean([v[0] for v in vals])), 5),
                                      "sharp_l1": round(float(np.mean([v[1] for v in vals])), 4)}
                                  for a, vals in means.items()}
    if len(rows) < 8 or numbers["architectures"] < 3:
        return Verdict("INCONCLUSIVE", f"{len(rows)} fitted runs over {numbers['architectures']} "
                       "architectures (need 8 and 3)", numbers)
    l1 = [float(r["sharp_l1"]) for r in rows]
    rho = spearman(sens, l1)
    p_pos = permutation_p(sens, l1)
    p_neg = permutation_p(sens, [-v for v in l1])
    numbers.update({"rho": round(rho, 3), "p_positive": round(p_pos, 4),
                    "p_negative": round(p_neg, 4)})
    text = (f"Spearman rho(sensitivity {col}, sharp_l1) = {rho:.2f} over {len(rows)} runs "
            f"(one-sided permutation p = {p_pos:.3f}); flip {numbers['spearman_sharp_flip']}, "
            f"loss {numbers['spearman_sharp_loss']}")
    # Rule fixed before the runs: PASS when rho > 0 with one-sided permutation p < 0.05;
    # FAIL when rho < 0 with p < 0.05 the other way; otherwise INCONCLUSIVE.
    if rho > 0 and p_pos < 0.05:
        return Verdict("PASS", text, numbers)
    if rho < 0 and p_neg < 0.05:
        return Verdict("FAIL", text, numbers)
    return Verdict("INCONCLUSIVE", text, numbers)
