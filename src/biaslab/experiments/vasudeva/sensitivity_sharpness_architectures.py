"""sensitivity-sharpness-architectures: does lower sensitivity go with flatter minima?

Vasudeva et al. §7 / sheet E5 and reproduction target 6 (``papers/low-sensitivity.md``): the
architectures of ``vision-sensitivity`` are trained to equal training accuracy, and on the same
training images each run gets its patch-noise sensitivity and three sharpness measures:
the paper's proxy (``measure/weight_noise.py``: N(0, 0.05^2) on every parameter, 5 draws; mean
L1 logit change ``sharp_l1`` and argmax-flip rate ``sharp_flip``) and the lab's perturbation
sharpness (``measure/landscape.py``: mean rise of the CE loss, ``sharp_loss``). The claim is
the paper's pairwise ordering (the ViT flatter than the CNNs, in both forms); the rank
correlation across runs is an observation.
"""

from __future__ import annotations

from pydantic import Field

from ... import rng
from ...execute.plan import shared_config
from ...measure.landscape import perturbation_sharpness
from ...measure.weight_noise import weight_noise_sharpness
from .. import rules
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from ..claims import INCONCLUSIVE, Bar, register_observation
from ..stats import spearman
from .protocol import claim_column
from .vision_sensitivity import VisionSensSpec, measure_architecture, plan_architectures

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
            loss = perturbation_sharpness(stack, "ce", (x, y), sigma=sh.lab_sigma,
                                          draws=sh.lab_draws, key=key, exclude=(),
                                          shared=True, chunk=1)  # one draw at a time
            return {"sharp_l1": wn["l1"], "sharp_flip": wn["flip"], "sharp_loss": loss}

        return measure_architecture(plans, device, progress, extra_measures=sharpness)

    def figures(self, table, artifacts=None):
        from .figures.vision import sharpness_scatter

        return {"sensitivity_vs_sharpness": sharpness_scatter(table)}


SHARP_FORMS = {"sharp_l1": "sharpness1, L1 logit distance", "sharp_flip": "sharpness2, flip rate"}
#: the "CNN" the paper's flatness ordering names: the reference's ResNet-18 (cifar/cifar_sens.py)
#: and the lab's small CNN, each compared with the ViT
CNNS = ("resnet18", "cnn")
E5 = ("Vasudeva et al. §7 (sheet E5, target 6): 5 weight copies with N(0, 0.05^2) on every "
      "parameter; sharpness1 = mean L1 logit change, sharpness2 = argmax-flip fraction")


def flatness_parts(table, flat, sharp) -> list:
    """One comparison per sharpness form: the sharpness of the runs selected by ``sharp`` above
    that of the runs selected by ``flat``; each is (label, row -> bool), over fitted runs."""
    def cell(select, form):
        return [float(r[form]) for r in table if r.get("fitted") == 1.0 and select(r)
                and r.get(form) is not None]

    return [rules.compare_means(cell(sharp[1], form), cell(flat[1], form), direction="greater",
                                label=f"{form}: {sharp[0]} - {flat[0]}") for form in SHARP_FORMS]


def arch_is(name: str):
    return name, lambda r: r.get("arch") == name


@register_claim(
    "vit-flatter-than-cnn",
    "sensitivity-sharpness-architectures",
    "at matched train accuracy the ViT sits in a flatter minimum than the CNNs (ResNet-18 and "
    "the small CNN): lower weight-noise sharpness in both of the paper's forms",
    "Vasudeva et al. §7 (sheet E5, target 6): lower sensitivity goes with flatter minima; "
    "the transformer flatter than the CNN",
    statistic="mean sharpness1 (L1 logit change) and sharpness2 (flip rate) over fitted runs",
    comparison="CNN > ViT for each CNN and each form (Welch difference of means)",
    bars=[rules.TIE_BAR, rules.MIN_RUNS_BAR, Bar("weight noise", "std 0.05, 5 copies", E5)],
)
def check_vit_flatter(table):
    parts = [p for cnn in CNNS if any(r["arch"] == cnn for r in table)
             for p in flatness_parts(table, arch_is("vit"), arch_is(cnn))]
    if not parts:
        return Verdict(INCONCLUSIVE, "no CNN in the table", {})
    return rules.verdict(parts)


@register_observation(
    "sensitivity-tracks-sharpness",
    "sensitivity-sharpness-architectures",
    "across fitted runs of all architectures, patch-noise sensitivity and weight-noise sharpness "
    "(both forms) are rank-correlated (shown, not counted: the paper's statements are the "
    "pairwise orderings)",
    "Vasudeva et al. §7 (sheet E5, target 6): lower sensitivity goes with flatter minima "
    "(correlational)",
    statistic="Spearman rho of sensitivity at the claim sigma against sharp_l1 and sharp_flip",
    comparison="rho > 0 by Fisher z",
    bars=[rules.TIE_BAR, Bar("rho", "0", "reason: the paper states a direction, no strength")],
)
def check_sharpness(table):
    col = claim_column(table)
    rows = [r for r in table if r.get("fitted") == 1.0 and r.get("sharp_l1") is not None]
    sens = [float(r[col]) for r in rows]
    parts = [rules.correlation_vs(sens, [float(r[form]) for r in rows], 0.0, direction="greater",
                                  label=f"rho({col}, {form})") for form in SHARP_FORMS]
    numbers = {"runs": len(rows), "architectures": len({r["arch"] for r in rows}),
               "spearman_sharp_loss": round(spearman(sens, [float(r.get("sharp_loss", 0.0))
                                                            for r in rows]), 3)}
    return rules.verdict(parts, numbers)
