"""synthetic-vocabulary: given two perfectly predictive features, does one attention layer use
the low-sensitivity one?

Vasudeva et al., "sensitivity beyond Boolean data" (sheet §2 "Synthetic vocabulary", §4 E1; no
reference code; sizes unpublished). The label of a sequence is carried at once by FREQUENT words
(``frequent_count`` positions repeat it: no single token replacement changes it, low
sensitivity) and by a SPARSE word (one position carries it: replacing that token changes it,
high sensitivity); see ``tasks/vocab_features.py``. A one-layer attention model (value matrix
W_v, then a linear U) is trained on sequences where both agree, then tested on sequences where
they disagree: the share of its predictions that follow the frequent feature is its preference.
``frequent_count = 1`` is a control in which both features are carried by one position each.

Measured per run: accuracy on training draws, on fresh agreeing draws, on each feature alone,
the preference, the model's token-replacement sensitivity on training data, and (for scale)
the sensitivity of the two feature functions themselves under the same measure.
"""

from __future__ import annotations

import time

import torch
from pydantic import Field
from torch import nn

from ... import rng
from ...execute.plan import shared_config
from ...measure.tokenwise import TokenReplacement, tokenwise_flip_sensitivity
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ..base import Experiment, RunOutcome, SpecBase, Verdict, register_claim, register_experiment
from ..claims import combine
from ..common import ModelChoice, planned_lr, mean_sd, members_of, stderr

EVAL_STREAM = 0x70CA  # rng stream of the evaluation draws
SENS_STREAM = 0x70CB  # rng stream of the replacement tokens


class VocabSpec(SpecBase):
    task: dict = Field(default_factory=dict, description="vocab_features fields besides frequent_count")
    frequent_counts: list[int] = Field(default=[1, 3, 6], min_length=1,
                                       description="positions holding the frequent feature (grid)")
    model: ModelChoice = Field(description="the model trained", default_factory=lambda: ModelChoice(
        name="one_layer_attention", params={"d_model": 64}))
    seeds: list[int] = Field(default=[0, 1, 2, 3, 4, 5], min_length=1, description="model seeds")
    lr: float = Field(description="learning rate", default=1e-3, gt=0)
    weight_decay: float = Field(description="AdamW weight decay", default=0.0, ge=0)
    train: TrainConfig = Field(description="training recipe", default_factory=lambda: TrainConfig(
        steps=1500, batch=128, loss="ce", converge="none", stop_on_converge=False, eval_every=100))
    eval_examples: int = Field(default=4096, gt=0, description="draws per evaluation split")
    sensitivity_examples: int = Field(default=512, gt=0, description="training draws measured")
    min_train_acc: float = Field(default=0.99, ge=0, le=1,
                                 description="runs that fit their training draws below this are "
                                 "left out of the claim")


class FeatureOracle(nn.Module):
    """The label as one feature alone says it: logits = counts of that feature's words per class."""

    def __init__(self, task, feature: str):
        super().__init__()
        self.task, self.feature = task, feature

    def forward(self, x):
        w = self.task.word_class(x)
        on = w[self.feature]
        return torch.stack([(on & (w["class"] == c)).sum(-1).float() for c in (0, 1)], -1)


@register_experiment
class SyntheticVocabulary(Experiment):
    name = "synthetic-vocabulary"
    description = "one attention layer: frequent (low-sensitivity) vs sparse (high-sensitivity) feature"
    Spec = VocabSpec

    def plan(self, spec: VocabSpec):
        spec.model.validate_now("model")
        plans = []
        for k in spec.frequent_counts:
            params = {**spec.task, "frequent_count": k}
            make_task("vocab_features", params)  # validate now
            for seed in spec.seeds:
                cfg = {"task": params, "model": spec.model.model_dump(), "seed": seed,
                       "lr": planned_lr(spec.lr, spec.model.lr), "weight_decay": spec.weight_decay,
                       "train": spec.train.model_dump(), "eval_examples": spec.eval_examples,
                       "sensitivity_examples": spec.sensitivity_examples,
                       "min_train_acc": spec.min_train_acc}
                plans.append(self._plan(cfg, (f"frequent={k}",)))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        c0 = shared_config(plans)
        t0 = time.perf_counter()
        task = make_task("vocab_features", c0["task"])
        model = ModelChoice(**c0["model"])
        cfg = TrainConfig(**c0["train"])
        stack = Stack(model.name, model.params, task, members_of(plans), device)
        key = rng.key_of(EVAL_STREAM, stack.device)
        splits = {s: task.sample({}, key, c0["eval_examples"], s)
                  for s in ("train", "test", "conflict", "frequent_only", "sparse_only")}

        def accuracies() -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return {s: (stack.forward(x).argmax(-1) == y).float().mean(-1)
                        for s, (x, y) in splits.items()}

        curve = []

        def probe(step):
            curve.append((step, accuracies()["conflict"].tolist()))

        result = train(stack, cfg, progress=progress, probe=probe)
        acc = accuracies()
        x, _ = task.sample({}, rng.key_of(SENS_STREAM, stack.device), c0["sensitivity_examples"])
        measure = TokenReplacement(task.vocab_size)
        sens = tokenwise_flip_sensitivity(stack, x, measure, key)["mean"]
        feature_sens = {f: float(tokenwise_flip_sensitivity(FeatureOracle(task, f), x, measure, key)["mean"])
                        for f in ("frequent", "sparse")}
        seconds = time.perf_counter() - t0
        outcomes = []
        for i, plan in enumerate(plans):
            metrics = {"train_acc": float(acc["train"][i]), "test_acc": float(acc["test"][i]),
                       "follows_frequent": float(acc["conflict"][i]),
                       "frequent_only_acc": float(acc["frequent_only"][i]),
                       "sparse_only_acc": float(acc["sparse_only"][i]),
                       "sensitivity": float(sens[i]),
                       "sens_frequent_feature": feature_sens["frequent"],
                       "sens_sparse_feature": feature_sens["sparse"],
                       "diverged": float(result.diverged[i])}
            series = [(s, "follows_frequent", v[i]) for s, v in curve]
            series += [(h["step"], "train_loss", h["train_loss"][i]) for h in result.history]
            outcomes.append(RunOutcome(plan, metrics, series, seconds=seconds / len(plans)))
        return outcomes

    def figures(self, table, artifacts):
        from .text_figures import vocabulary_preference_figure

        return {"synthetic_vocabulary_preference": vocabulary_preference_figure(table)}


@register_claim(
    "synthetic-vocabulary", "synthetic-vocabulary",
    "trained where a frequent-word feature (low sensitivity) and a sparse-word feature (high "
    "sensitivity) both give the label, one attention layer follows the frequent feature when "
    "they disagree",
    "Vasudeva et al. §4 (synthetic vocabulary, unverified summary): the model prefers the "
    "low-sensitivity, frequent-token feature; no numbers published",
)
def check_synthetic_vocabulary(table):
    cells: dict[int, list[float]] = {}
    controls: dict[int, list[float]] = {}
    for r in table:
        k, s = int(r["task.frequent_count"]), int(r.get("task.sparse_count", 1))
        if r.get("diverged") or r["train_acc"] < r.get("min_train_acc", 0.99):
            continue
        (cells if k > s else controls).setdefault(k, []).append(r["follows_frequent"])
    numbers = {f"frequent={k}": {"follows_frequent": round(mean_sd(v)[0], 4), "runs": len(v)}
               for k, v in sorted({**cells, **controls}.items())}
    summary = "; ".join(f"{name}: {c['follows_frequent']:.3f} ({c['runs']} fitted)"
                        for name, c in numbers.items())
    if not cells or any(len(v) < 2 for v in cells.values()):
        return Verdict("INCONCLUSIVE", "fewer than 2 fitted runs in a setting where the frequent "
                       f"feature is the less sensitive one; {summary}", numbers)
    statuses = []
    for k, vals in cells.items():
        m = mean_sd(vals)[0]
        # Rule: PASS when the mean preference exceeds 1/2 by more than two standard errors;
        # FAIL when it is below 1/2 (the sparse feature is preferred).
        statuses.append("FAIL" if m < 0.5 else "PASS" if m - 2 * stderr(vals) > 0.5 else "INCONCLUSIVE")
    return Verdict(combine(statuses), f"conflict predictions following the frequent feature: {summary}", numbers)

