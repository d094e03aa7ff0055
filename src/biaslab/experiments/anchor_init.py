"""Anchor functions and the initialization rate (Zhang et al., NeurIPS 2024; sheet: anchor-init.md).

A decoder learns composite anchor functions f = key + d(a1) + d(a2) with (3,4) trained as x-6
and (4,3) held out. Its answer on (4,3) tells the solution: x-10 = inferential (it composed the
single-anchor maps), x-6 = symmetric (it merged (4,3) with its mirror). The paper's finding:
the initialization rate gamma (std d_in^-gamma; larger gamma = smaller init) decides which.

* ``init-phase-diagram`` (E1): gamma x depth x seeds x learning rates, one stack per depth;
  best of the learning rates per cell, cells whose seen-pair test accuracy < 90% are "failed".
* ``anchor-mechanisms`` (E3): two-layer models at gamma 0.5 and 0.8: stable ranks,
  condensation of W_Q(1), fused last-token vectors, attention flow, embeddings, and (a
  cross-paper question) the sharpness of inferential vs symmetric solutions.
* ``complexity-control`` (E4): learning rate x weight decay at gamma 0.5, 3 layers, with both
  (3,4) and (4,3) held out.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar, Optional

import torch
from pydantic import Field

from .. import rng
from ..measure import anchor as A
from ..measure.landscape import perturbation_sharpness
from ..measure.norms import stable_ranks_stack
from ..measure.sensitivity import tokenwise_sensitivity_stack
from ..models.base import POSITION_PREFIX
from ..registry import MODELS
from ..tasks import make_task
from ..train import Stack, TrainConfig, train
from .base import Experiment, RunOutcome, SpecBase, Verdict, register_claim, register_experiment
from .common import mean_sd, members_of, stderr
from .stats import spearman

HELDOUT = "4,3"  # the pair scored in every experiment (also when (3,4) is held out too)
VALID_ACC = 0.9  # the paper's bar: seen pairs with test keys >= 90%, else the run "failed"
SOLVED = 0.9  # a held-out answer this frequent counts as the model's solution
MEASURE_SEED = 0  # every member is measured on the same inputs (common random numbers)
REL_SIGMA = 0.05  # sharpness noise, relative to each model's weight RMS (see _relative_sharpness)


# -- shared setup -----------------------------------------------------------------------------------
def _train_config() -> TrainConfig:
    # Paper App. A: AdamW, CE on the last token, clip 1, warmup for 10 of 210 epochs (1/21 of
    # the steps), then cosine down to peak/25 (2.5e-4 -> 1e-5); a fixed budget, not stopped at
    # convergence (the mechanisms keep forming after the training set is fitted).
    return TrainConfig(steps=3000, batch=256, loss="ce", schedule="warmup_cosine", warmup_steps=150,
                       min_lr_ratio=0.04, converge="none", eval_every=250)


def _decoder() -> dict:
    # The CPU sanity scale; presets set the paper's d_model 400 / d_ff 1200 / d_head 200.
    return {"d_model": 64, "d_ff": 192, "d_head": 32}


class AnchorSetup(SpecBase):
    """What every anchor experiment shares: model, task, optimizer, training, measuring."""

    model: dict = Field(default_factory=_decoder,
                        description="decoder params except n_layers (see `biaslab list`)")
    task: dict = Field(default_factory=dict, description="anchor task params (default: paper's)")
    weight_decay: float = Field(default=0.01, ge=0)
    clip_norm: Optional[float] = Field(default=1.0, gt=0)
    measure_batch: int = Field(default=2048, gt=0, description="sequences per accuracy measure")
    train: TrainConfig = Field(default_factory=_train_config)

    def validate_now(self, depths) -> None:
        """Fail on a bad model or task before anything trains."""
        make_task("anchor", self.task)
        for L in depths:
            MODELS.get("decoder").config({**self.model, "n_layers": L})

    def config(self, **run) -> dict:
        cfg = {"model": {**self.model, "n_layers": run.pop("depth")}, "task": dict(self.task),
               "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
               "measure_batch": self.measure_batch, "train": self.train.model_dump()}
        cfg.update(run)
        cfg["depth"] = cfg["model"]["n_layers"]
        return cfg


def train_anchor_stack(plans, device, progress=False):
    """One stack of decoders (members differ in seed, gamma, lr, weight decay); trained."""
    c0 = plans[0].config
    task = make_task("anchor", c0["task"])
    members = members_of(plans, "gamma", "clip_norm")
    stack = Stack("decoder", c0["model"], task, members, device)
    result = train(stack, TrainConfig(**c0["train"]), progress=progress)
    return stack, result


def solution_metrics(stack, result, batch: int) -> tuple[list[dict], torch.Tensor]:
    """Per member: which answer (4,3) gets, seen-pair test accuracy, training loss, histogram.

    (4,3) is scored with train keys, as the authors' code does; seen pairs with test keys
    ("generalization on data"). Returns the metric dicts and the histograms [M, 33].
    """
    key = rng.key_of(MEASURE_SEED, stack.device)
    ho = A.heldout_accuracy_stack(stack, key, pair=HELDOUT, batch=batch)
    seen = A.seen_accuracy_stack(stack, key, batch=batch)
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
    rows, hist = solution_metrics(stack, result, plans[0].config["measure_batch"])
    seconds = (time.perf_counter() - t0) / len(plans)
    return [RunOutcome(p, rows[i], _series(result, i), arrays={"deviation_hist": hist[i].numpy()},
                       seconds=seconds) for i, p in enumerate(plans)]


def _series(result, i):
    return [(h["step"], k, h[k][i]) for h in result.history for k in ("train_loss", "acc")]


def _valid(row) -> bool:
    return row.get("seen_test_acc") is not None and row["seen_test_acc"] >= VALID_ACC \
        and not row.get("diverged")


def _g(x) -> float:
    return round(float(x), 4)  # gammas compared by value, not float identity


def _compare(low: list[float], high: list[float]) -> dict:
    """Means of two groups, their difference high - low and its standard error."""
    ml, _, kl = mean_sd(low)
    mh, _, kh = mean_sd(high)
    se = math.sqrt(stderr(low) ** 2 + stderr(high) ** 2)
    return {"low": ml, "high": mh, "diff": mh - ml, "se": se, "n": (kl, kh)}


def _r(x, nd=3):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, nd)


# == E1: the phase diagram ==========================================================================
class PhaseSpec(AnchorSetup):
    gammas: list[float] = Field(default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], min_length=1)
    depths: list[int] = Field(default=[2, 3, 4, 5, 6], min_length=1)
    seeds: list[int] = Field(default=[1, 2, 3], min_length=1)
    lrs: list[float] = Field(default=[1e-3, 2e-3], min_length=1,
                             description="peak learning rates; each cell keeps the best")


@register_experiment
class InitPhaseDiagram(Experiment):
    name = "init-phase-diagram"
    description = ("which solution (4,3) gets over initialization rate gamma x depth "
                   "(best of learning rates, mean over seeds)")
    Spec = PhaseSpec

    def plan(self, spec: PhaseSpec):
        spec.validate_now(spec.depths)
        return [self._plan(spec.config(depth=L, gamma=g, seed=s, lr=lr), (f"depth={L}",))
                for L in spec.depths for g in spec.gammas for s in spec.seeds for lr in spec.lrs]

    def run_group(self, spec, plans, device, progress=False):
        return run_solution_group(plans, device, progress)

    def figures(self, table):
        from ..report.anchor_figures import deviation_histograms, phase_diagrams

        return {"phase_diagrams": phase_diagrams(phase_cells(table)),
                "deviation_histograms": deviation_histograms(table, by=("depth", "gamma"))}


def phase_cells(table) -> dict:
    """(gamma, depth) -> the cell's numbers, the paper's protocol.

    Per seed: the best seen-pair test accuracy over learning rates, and the best symmetric and
    inferential accuracy over the *valid* learning rates (seen-pair accuracy >= 90%, not
    diverged); per cell: means over seeds. A cell is failed when its mean best seen accuracy is
    below 90% or no seed has a valid run.
    """
    runs: dict = {}
    for r in table:
        runs.setdefault((_g(r["gamma"]), int(r["depth"])), {}).setdefault(int(r["seed"]), []).append(r)
    cells = {}
    for cell, by_seed in runs.items():
        seen, sym, inf, other = [], [], [], []
        for rs in by_seed.values():
            seen.append(max(r["seen_test_acc"] for r in rs))
            ok = [r for r in rs if _valid(r)]
            if ok:
                sym.append(max(r["symmetric_acc"] for r in ok))
                inf.append(max(r["inferential_acc"] for r in ok))
                other.append(min(r["other_acc"] for r in ok))
        mean_seen = mean_sd(seen)[0]
        cells[cell] = {"symmetric": mean_sd(sym)[0], "inferential": mean_sd(inf)[0],
                       "other": mean_sd(other)[0], "seen": mean_seen,
                       "failed": not sym or mean_seen < VALID_ACC,
                       "valid_seeds": len(sym), "seeds": len(by_seed)}
    return cells


def _phase_check(table, gamma: float, mapping: str) -> Verdict:
    """At ``gamma``, every valid cell (any depth) answers (4,3) with ``mapping`` >= 90%.

    Rule fixed before the runs: INCONCLUSIVE when no cell at this gamma is valid (all failed or
    missing); FAIL when a valid cell gives ``mapping`` to at most half of the sequences (the
    other reading or noise dominates); PASS when every valid cell is >= 90%; else INCONCLUSIVE.
    """
    cells = {d: c for (g, d), c in phase_cells(table).items() if g == _g(gamma)}
    other = "inferential" if mapping == "symmetric" else "symmetric"
    numbers = {f"depth={d}": {mapping: _r(c[mapping]), "seen": _r(c["seen"]), "failed": c["failed"],
                              other: _r(c[other]),
                              "valid_seeds": f"{c['valid_seeds']}/{c['seeds']}"}
               for d, c in sorted(cells.items())}
    valid = {d: c[mapping] for d, c in cells.items() if not c["failed"]}
    shown = ", ".join(f"depth {d}: {_r(v)} ({other} {_r(cells[d][other])})"
                      for d, v in sorted(valid.items())) or "none"
    summary = (f"gamma {gamma}: {mapping} accuracy on (4,3), best of lrs, valid cells: {shown}; "
               f"{len(cells) - len(valid)}/{len(cells)} cells failed")
    if not valid:
        return Verdict("INCONCLUSIVE", summary + " (no valid cell)", numbers)
    if any(v <= 0.5 for v in valid.values()):
        return Verdict("FAIL", summary, numbers)
    if all(v >= SOLVED for v in valid.values()):
        return Verdict("PASS", summary, numbers)
    return Verdict("INCONCLUSIVE", summary, numbers)


@register_claim(
    "init-phase-small-gamma-symmetric",
    "init-phase-diagram",
    "at gamma = 0.5 (large init) the held-out pair (4,3) is answered symmetrically (x-6) by >= 90% "
    "in every valid cell (seen-pair test accuracy >= 90%), best of learning rates, mean over seeds",
    "Zhang et al. Fig 2a: symmetric accuracy 'nearly 100%' in the large-init zone (gamma ~0.3-0.6 "
    "at small depth); 2-layer gamma 0.5 is the paper's symmetric example; per-cell values not published",
)
def check_phase_symmetric(table):
    return _phase_check(table, 0.5, "symmetric")


@register_claim(
    "init-phase-large-gamma-inferential",
    "init-phase-diagram",
    "at gamma = 0.8 (small init) the held-out pair (4,3) is answered inferentially (x-10) by >= 90% "
    "in every valid cell (seen-pair test accuracy >= 90%), best of learning rates, mean over seeds",
    "Zhang et al. Fig 2b: inferential accuracy near 100% at small init (large gamma), all depths; "
    "2-layer gamma 0.8 is the paper's inferential example; per-cell values not published",
)
def check_phase_inferential(table):
    return _phase_check(table, 0.8, "inferential")


# == E3: mechanisms of the two solutions =============================================================
class MechanismSpec(AnchorSetup):
    gammas: list[float] = Field(default=[0.5, 0.8], min_length=1)
    seeds: list[int] = Field(default=[1, 2, 3], min_length=1)
    lr: float = Field(default=2e-3, gt=0, description="peak learning rate")
    depth: int = Field(default=2, ge=1)
    sharpness_draws: int = Field(default=10, gt=0)
    probe_batch: int = Field(default=512, gt=0, description="sequences for sharpness / sensitivity")


def _relative_sharpness(stack, i: int, x, y, draws: int, key) -> float:
    """Hahn & Rofin's perturbation sharpness with noise scaled to the member's own weights.

    An absolute sigma would compare differently scaled models (gamma 0.8 starts ~4x smaller
    than 0.5 at d_model 64), so sigma = REL_SIGMA x RMS of the perturbed weights: every weight
    matrix and embedding except positions (as the sharpness paper), not LayerNorms or biases.
    """
    module = stack.member(i)
    L = module.cfg.n_layers
    exclude = (POSITION_PREFIX, "head.bias", "final_ln",
               *(f"layers.{j}.ln{k}" for j in range(L) for k in (1, 2)))
    ws = [p.detach() for n, p in module.named_parameters() if not n.startswith(exclude)]
    rms = torch.sqrt(sum(w.pow(2).sum() for w in ws) / sum(w.numel() for w in ws))
    return float(perturbation_sharpness(module, "ce", (x, y), sigma=REL_SIGMA * float(rms),
                                        draws=draws, key=key, exclude=exclude))


@register_experiment
class AnchorMechanisms(Experiment):
    name = "anchor-mechanisms"
    description = ("two-layer models at gamma 0.5 vs 0.8: stable ranks, condensation, fused "
                   "vectors, attention flow, embeddings, sharpness")
    Spec = MechanismSpec
    #: A Store, set by whoever draws the figures, to also draw the artifact figures (attention
    #: flow, cosine heatmaps, embedding PCA); without it only the metric figures are drawn.
    store: ClassVar = None

    def plan(self, spec: MechanismSpec):
        spec.validate_now([spec.depth])
        return [self._plan(spec.config(depth=spec.depth, gamma=g, seed=s, lr=spec.lr,
                                       sharpness_draws=spec.sharpness_draws,
                                       probe_batch=spec.probe_batch), (f"depth={spec.depth}",))
                for g in spec.gammas for s in spec.seeds]

    def run_group(self, spec, plans, device, progress=False):
        t0 = time.perf_counter()
        c0 = plans[0].config
        stack, result = train_anchor_stack(plans, device, progress)
        rows, hist = solution_metrics(stack, result, c0["measure_batch"])
        task, M = stack.task, stack.M
        p = task.params
        # Complexity (Fig 5, D.3): stable ranks, condensation of W_Q(1), embedding order.
        ranks = stable_ranks_stack(stack)
        cond = A.query_condensation_stack(stack)
        wq = stack.params["layers.0.attn.q.weight"]
        u = wq / wq.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        qcos = u @ u.transpose(-1, -2)  # [M, rows, rows]: Fig 5a,b
        order = A.embedding_order_stack(stack)
        items = A.item_tokens(task, stack.device)
        e = stack.params["token_embed.weight"][:, items]
        e = e - e.mean(-2, keepdim=True)
        uu, ss, _ = torch.linalg.svd(e, full_matrices=False)
        pca = uu[..., :2] * ss[..., None, :2]  # [M, items, 2]: Fig 5c,d (PCA for t-SNE)
        used = torch.cat([torch.tensor(task.anchor_tokens, device=stack.device), items])
        em_used = A.stable_rank(stack.params["token_embed.weight"][:, used])
        # Fused vectors (Fig 4): keys item_min+10..+20 (30..40), the pairs trained to their
        # composition, so a sequence's value is both its target and its composite value.
        clean = [f"{a},{b}" for a, b in task.train_pairs if f"{a},{b}" not in p.perturbed]
        probe = A.probe_sequences(task, range(p.item_min + 10, p.item_min + 21), clean,
                                  device=stack.device)
        fused = A.fused_similarity_stack(stack, probe)
        # Attention flow (Fig 3): key = the largest item (99), pair (4,3).
        flow = A.attention_flow_stack(stack, A.probe_sequences(task, [p.item_max], [HELDOUT],
                                                               device=stack.device))
        # Cross-paper: sharpness and token-wise sensitivity on training-distribution inputs.
        key = rng.key_of(MEASURE_SEED, stack.device)
        x, y = task.sample({}, rng.derive(key, 0x5A), c0["probe_batch"], "train")
        tok = tokenwise_sensitivity_stack(stack, x[:256], rng.derive(key, 0x5B), exclude_same=True)
        outcomes = []
        for i, plan in enumerate(plans):
            m = rows[i]
            m.update({"sr_wq1": float(ranks["layers.0.attn.q.weight"][i]),
                      "sr_wem": float(ranks["token_embed.weight"][i]), "sr_wem_used": float(em_used[i]),
                      "cond_wq1": float(cond[i]), "emb_order": float(order["max"][i]),
                      "fused_same": float(fused["same"][i]), "fused_diff": float(fused["different"][i]),
                      "fused_gap": float(fused["gap"][i]),
                      "sharpness_rel": _relative_sharpness(stack, i, x, y, c0["sharpness_draws"],
                                                           rng.derive(key, 0x5C)),
                      "tokenwise_sens": float(tok["mean"][i])})
            m.update({f"flow_{j}": float(v) for j, v in enumerate(flow["last"][i, 0])})
            arrays = {"deviation_hist": hist[i].numpy(),
                      "attention": flow["attn"][i, :, 0].mean(1).cpu().numpy(),  # [layers, L, L]
                      "probe_tokens": flow_tokens(task, stack.device),
                      "fused_cos": fused["cos"][i].cpu().numpy(),
                      "fused_values": fused["values"].cpu().numpy(),
                      "query_cos": qcos[i].cpu().numpy(), "embedding_pca": pca[i].cpu().numpy(),
                      "embedding_tokens": items.cpu().numpy()}
            outcomes.append(RunOutcome(plan, m, _series(result, i), arrays=arrays))
        seconds = (time.perf_counter() - t0) / M
        for o in outcomes:
            o.seconds = seconds
        return outcomes

    def figures(self, table):
        from ..report import anchor_figures as F

        figs = {"complexity_and_fusion": F.mechanism_strips(table),
                "deviation_histograms": F.deviation_histograms(table, by=("gamma",))}
        if self.store is not None:
            figs.update(F.mechanism_artifact_figures(table, self.store))
        return figs


def flow_tokens(task, device):
    """The attention-flow probe's tokens (for the figure's labels)."""
    p = task.params
    return A.probe_sequences(task, [p.item_max], [HELDOUT], device=device)[0].cpu().numpy()


def _by_gamma(table, metric: str, valid_only: bool = True) -> dict[float, list[float]]:
    out: dict = {}
    for r in table:
        if (not valid_only or _valid(r)) and r.get(metric) is not None:
            out.setdefault(_g(r["gamma"]), []).append(r[metric])
    return out


def _direction(cmp: dict, lower: bool) -> str:
    """PASS when gamma 0.8 is on the expected side by > 2 SE, FAIL when on the other side or
    equal, INCONCLUSIVE in between or with fewer than two valid runs per gamma."""
    if min(cmp["n"]) < 2:
        return "INCONCLUSIVE"
    d = -cmp["diff"] if lower else cmp["diff"]
    if d <= 0:
        return "FAIL"
    return "PASS" if d > 2 * cmp["se"] else "INCONCLUSIVE"


def _combine(statuses) -> str:
    return "FAIL" if "FAIL" in statuses else "PASS" if all(s == "PASS" for s in statuses) else "INCONCLUSIVE"


@register_claim(
    "anchor-small-init-low-complexity",
    "anchor-mechanisms",
    "two-layer models at gamma 0.8 have a lower stable rank of W_Q(1) and of the token embedding "
    "W_em and a more condensed W_Q(1) (share of row pairs with |cos| > 0.7) than at gamma 0.5",
    "Zhang et al. Fig 5, D.3 (sheet target 4): small init gives low-rank, condensed W_Q(1) "
    "(few blocks), large init none; stable ranks lower at gamma 0.8; numbers not published",
)
def check_low_complexity(table):
    # Rule fixed before the runs: valid runs only (seen-pair test accuracy >= 90%); each of the
    # three measures must differ in the expected direction by more than two standard errors of
    # the difference (PASS); any measure on the wrong side (or equal) is a FAIL.
    numbers, statuses = {}, []
    for metric, lower in (("sr_wq1", True), ("sr_wem", True), ("cond_wq1", False)):
        v = _by_gamma(table, metric)
        cmp = _compare(v.get(0.5, []), v.get(0.8, []))
        statuses.append(_direction(cmp, lower))
        numbers[metric] = {"gamma0.5": _r(cmp["low"]), "gamma0.8": _r(cmp["high"]),
                           "se_diff": _r(cmp["se"]), "valid_runs": list(cmp["n"]), "status": statuses[-1]}
    v = _by_gamma(table, "sr_wem_used")
    numbers["sr_wem_used (not in rule)"] = {"gamma0.5": _r(mean_sd(v.get(0.5, []))[0]),
                                            "gamma0.8": _r(mean_sd(v.get(0.8, []))[0])}
    summary = "; ".join(f"{k} {n['gamma0.5']} (g0.5) vs {n['gamma0.8']} (g0.8)"
                        for k, n in numbers.items() if "status" in n)
    return Verdict(_combine(statuses), summary + f"; valid runs {numbers['sr_wq1']['valid_runs']}",
                   numbers)


@register_claim(
    "anchor-small-init-fused-parallel",
    "anchor-mechanisms",
    "the gamma 0.8 model's last-token vectors (X_ao of layer 2) are nearly parallel for sequences "
    "with equal composite value (mean cosine >= 0.9) and more so than the gamma 0.5 model's",
    "Zhang et al. Fig 4 (sheet target 5): inferential model cos ~ 1 for equal f values, low "
    "otherwise; symmetric model low throughout; numbers not published",
)
def check_fused(table):
    # Rule fixed before the runs: valid runs; PASS when mean same-value cosine at gamma 0.8 is
    # >= 0.9 and exceeds gamma 0.5's by more than two standard errors of the difference; FAIL
    # when it does not exceed gamma 0.5's at all; INCONCLUSIVE otherwise.
    same = _by_gamma(table, "fused_same")
    diff = _by_gamma(table, "fused_diff")
    cmp = _compare(same.get(0.5, []), same.get(0.8, []))
    numbers = {"same_gamma0.5": _r(cmp["low"]), "same_gamma0.8": _r(cmp["high"]), "se_diff": _r(cmp["se"]),
               "different_gamma0.5": _r(mean_sd(diff.get(0.5, []))[0]),
               "different_gamma0.8": _r(mean_sd(diff.get(0.8, []))[0]), "valid_runs": list(cmp["n"])}
    summary = (f"same-value cos {numbers['same_gamma0.5']} (g0.5) vs {numbers['same_gamma0.8']} (g0.8); "
               f"different-value {numbers['different_gamma0.5']} vs {numbers['different_gamma0.8']}; "
               f"valid runs {list(cmp['n'])}")
    status = _direction(cmp, lower=False)
    if status == "PASS" and not cmp["high"] >= 0.9:
        status = "INCONCLUSIVE"
    return Verdict(status, summary, numbers)


@register_claim(
    "anchor-inferential-flatter",
    "anchor-mechanisms",
    "cross-paper (Hahn & Rofin: simple solutions sit in flat minima): models that answer (4,3) "
    "inferentially sit in flatter minima of the training loss than models that answer it "
    "symmetrically (perturbation sharpness with noise 0.05 x the model's weight RMS)",
    "not in Zhang et al.; their story (small init -> low complexity -> reasoning) and Hahn & "
    "Rofin's (low sensitivity <-> flat minima) together predict it",
)
def check_flatter(table):
    # Rule fixed before the runs (exploratory, two-sided): valid runs classified by their answer
    # on (4,3) (>= 90% inferential / symmetric), whatever their gamma; needs two of each. PASS
    # when the inferential mean is lower by more than two standard errors of the difference,
    # FAIL when it is higher by more than two, INCONCLUSIVE otherwise.
    groups: dict = {"inferential": [], "symmetric": []}
    tok: dict = {"inferential": [], "symmetric": []}
    for r in table:
        if not _valid(r) or r.get("sharpness_rel") is None:
            continue
        for kind in groups:
            if r[f"{kind}_acc"] >= SOLVED:
                groups[kind].append(r["sharpness_rel"])
                tok[kind].append(r.get("tokenwise_sens"))
    cmp = _compare(groups["symmetric"], groups["inferential"])
    numbers = {"sharpness_symmetric": _r(cmp["low"], 4), "sharpness_inferential": _r(cmp["high"], 4),
               "se_diff": _r(cmp["se"], 4), "runs": {"symmetric": cmp["n"][0], "inferential": cmp["n"][1]},
               "tokenwise_sens_symmetric": _r(mean_sd(tok["symmetric"])[0]),
               "tokenwise_sens_inferential": _r(mean_sd(tok["inferential"])[0])}
    summary = (f"relative sharpness: inferential {numbers['sharpness_inferential']} "
               f"(n={cmp['n'][1]}) vs symmetric {numbers['sharpness_symmetric']} (n={cmp['n'][0]}); "
               f"token-wise sensitivity {numbers['tokenwise_sens_inferential']} vs "
               f"{numbers['tokenwise_sens_symmetric']}")
    if min(cmp["n"]) < 2:
        return Verdict("INCONCLUSIVE", summary + " (fewer than 2 runs of a solution)", numbers)
    if cmp["diff"] < -2 * cmp["se"]:
        return Verdict("PASS", summary, numbers)
    if cmp["diff"] > 2 * cmp["se"]:
        return Verdict("FAIL", summary, numbers)
    return Verdict("INCONCLUSIVE", summary, numbers)


# == E4: learning rate and weight decay =============================================================
def _both_held_out() -> dict:
    # App. E: hold out (3,4) too (so nothing is perturbed); avoids high-lr instability. Then the
    # mirror of (4,3) is trained to nothing, so symmetric_acc equals inferential_acc by
    # construction here; the deviation histogram still shows x-6 answers as +4.
    return {"held_out": ["3,4", "4,3"], "perturbed": {}}


class ComplexitySpec(AnchorSetup):
    task: dict = Field(default_factory=_both_held_out)
    gamma: float = Field(default=0.5, gt=0)
    depth: int = Field(default=3, ge=1)
    lrs: list[float] = Field(default=[2.5e-4, 5e-4, 1e-3, 2e-3, 3e-3], min_length=2)
    weight_decays: list[float] = Field(default=[0.003, 0.01, 0.03, 0.1, 0.3], min_length=2)
    seeds: list[int] = Field(default=[1, 2, 3], min_length=1)


@register_experiment
class ComplexityControl(Experiment):
    name = "complexity-control"
    description = "inferential accuracy on (4,3) over learning rate x weight decay (gamma 0.5, 3 layers)"
    Spec = ComplexitySpec

    def plan(self, spec: ComplexitySpec):
        spec.validate_now([spec.depth])
        plans = []
        for lr in spec.lrs:
            for wd in spec.weight_decays:
                for s in spec.seeds:
                    cfg = spec.config(depth=spec.depth, gamma=spec.gamma, seed=s, lr=lr)
                    cfg["weight_decay"] = wd
                    plans.append(self._plan(cfg, (f"depth={spec.depth}",)))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        return run_solution_group(plans, device, progress)

    def figures(self, table):
        from ..report.anchor_figures import lr_wd_figure

        return {"lr_weight_decay": lr_wd_figure(table)}


def axis_trend(table, axis: str) -> dict:
    """Inferential accuracy along ``axis`` (lr or weight_decay), pooled over the other axis."""
    rows = [r for r in table if _valid(r)]
    xs, ys = [float(r[axis]) for r in rows], [r["inferential_acc"] for r in rows]
    values = sorted(set(xs))
    ends = [[y for x, y in zip(xs, ys) if x == v] for v in (values[:1] + values[-1:])] if values else [[], []]
    cmp = _compare(ends[0], ends[1])
    means = {f"{v:g}": _r(mean_sd([y for x, y in zip(xs, ys) if x == v])[0]) for v in values}
    return {"rho": spearman(xs, ys) if len(xs) > 2 else float("nan"), "diff": cmp["diff"],
            "se": cmp["se"], "n_ends": cmp["n"], "means": means, "valid": len(rows), "runs": len(table)}


@register_claim(
    "complexity-lr-wd-no-drop",
    "complexity-control",
    "with (3,4) and (4,3) held out, 3 layers, gamma 0.5: inferential accuracy on (4,3) does not "
    "fall as the learning rate grows, nor as the weight decay grows",
    "Zhang et al. App. E (sheet target 6): larger lr (warmup multiplier 5 -> 60) and larger "
    "weight decay (0.003 -> 0.3) raise inferential accuracy (trend only; 9-run means, figures only)",
)
def check_lr_wd(table):
    # Rule fixed before the runs, per axis over valid runs (seen-pair test acc >= 90%), pooled
    # over the other axis: FAIL when the largest setting's mean is below the smallest's by more
    # than two standard errors AND the Spearman correlation is negative; PASS when it is not
    # below by more than two standard errors AND Spearman >= 0; INCONCLUSIVE otherwise (also
    # when an end has fewer than 2 valid runs or accuracy does not vary at all).
    numbers, statuses = {}, []
    for axis in ("lr", "weight_decay"):
        t = axis_trend(table, axis)
        if min(t["n_ends"]) < 2 or math.isnan(t["rho"]):
            status = "INCONCLUSIVE"
        elif t["diff"] < -2 * t["se"] and t["rho"] < 0:
            status = "FAIL"
        elif t["diff"] >= -2 * t["se"] and t["rho"] >= 0:
            status = "PASS"
        else:
            status = "INCONCLUSIVE"
        statuses.append(status)
        numbers[axis] = {"spearman": _r(t["rho"]), "last_minus_first": _r(t["diff"]),
                         "se": _r(t["se"]), "mean_inferential_by_value": t["means"],
                         "valid_runs": f"{t['valid']}/{t['runs']}", "status": status}
    summary = "; ".join(f"{a}: Spearman {n['spearman']}, last-first {n['last_minus_first']} "
                        f"(se {n['se']}), valid {n['valid_runs']}" for a, n in numbers.items())
    return Verdict(_combine(statuses), summary, numbers)
