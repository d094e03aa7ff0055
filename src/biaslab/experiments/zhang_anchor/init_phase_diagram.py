"""init-phase-diagram (Zhang et al. E1): which solution the held-out pair (4,3) gets over the
initialization rate gamma x depth x seeds x learning rates, one stack per depth; best of the
learning rates per cell, cells whose seen-pair test accuracy < 90% are "failed". The shared
setup: ``zhang_anchor/protocol.py``.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from .. import rules
from ..base import Experiment, Verdict, register_claim, register_experiment
from ..claims import INCONCLUSIVE, Bar, not_testable
from ..rules import HOUSE_BARS
from ..stats import mean_sd
from .protocol import (SOLVED, VALID_ACC, AnchorSetup, gamma_key, rounded3, run_solution_group,
                       valid)


class PhaseSpec(AnchorSetup):
    gammas: list[float] = Field(default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], min_length=1,
                                description="initialization rates (std d_in^-gamma)")
    depths: list[int] = Field(default=[2, 3, 4, 5, 6], min_length=1,
                              description="decoder layers (one stack each)")
    seeds: list[int] = Field(default=[1, 2, 3], min_length=1, description="model seeds")
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

    def figures(self, table, artifacts):
        from .figures import deviation_histograms, phase_diagrams

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
        runs.setdefault((gamma_key(r["gamma"]), int(r["depth"])), {}).setdefault(int(r["seed"]), []).append(r)
    cells = {}
    for cell, by_seed in runs.items():
        seen, sym, inf, other = [], [], [], []
        for rs in by_seed.values():
            seen.append(max(r["seen_test_acc"] for r in rs))
            ok = [r for r in rs if valid(r)]
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


def seed_bests(table) -> dict:
    """(gamma, depth) -> per seed: best seen-pair test accuracy over lrs, and best symmetric and
    inferential accuracy over the seed's valid lrs (None when none is valid). The paper's
    protocol per seed, before its mean over seeds (phase_cells)."""
    runs: dict = {}
    for r in table:
        runs.setdefault((gamma_key(r["gamma"]), int(r["depth"])), {}).setdefault(int(r["seed"]), []).append(r)
    out: dict = {}
    for cell, by_seed in runs.items():
        for seed, rs in sorted(by_seed.items()):
            ok = [r for r in rs if valid(r)]
            out.setdefault(cell, []).append({
                "seed": seed, "seen": max(r["seen_test_acc"] for r in rs),
                "symmetric": max(r["symmetric_acc"] for r in ok) if ok else None,
                "inferential": max(r["inferential_acc"] for r in ok) if ok else None})
    return out


VALID_BAR = Bar("valid cell", "mean best seen-pair test accuracy >= 0.9",
                "Zhang et al. Fig 2: cells with seen-anchor test accuracy < 90% are shaded (failed)")
ZONE_BAR = Bar("solution accuracy", "0.9", "reason: Fig 2's zones are 'nearly 100%' (paper text); "
               "0.9 = the paper's own validity bar; per-cell numbers are not published")


def _phase_check(table, gamma: float, mapping: str) -> Verdict:
    """At ``gamma``, every valid cell (any depth) answers (4,3) with ``mapping`` above 0.9:
    per cell, the seeds' best-of-lrs accuracies against the bar (>= 3 seeds, 2-se tie band)."""
    cells = {d: rows for (g, d), rows in seed_bests(table).items() if g == gamma_key(gamma)}
    summary_cells = {c: v for c, v in phase_cells(table).items() if c[0] == gamma_key(gamma)}
    parts, numbers = [], {}
    for d, rows in sorted(cells.items()):
        c = summary_cells[(gamma_key(gamma), d)]
        numbers[f"depth={d}"] = {"seen": rounded3(c["seen"]), "failed": c["failed"],
                                 "symmetric": rounded3(c["symmetric"]),
                                 "inferential": rounded3(c["inferential"]),
                                 "valid_seeds": f"{c['valid_seeds']}/{c['seeds']}"}
        if c["failed"]:
            continue
        values = [r[mapping] for r in rows if r[mapping] is not None]
        part = rules.compare_to_bar(values, SOLVED, label=f"gamma {gamma} depth {d} {mapping}",
                                    direction="greater")
        parts.append(part)
        numbers[f"depth={d}"].update(part.numbers)
    if not parts:
        return Verdict(INCONCLUSIVE, f"gamma {gamma}: no valid cell ({len(cells)} cells, all failed "
                       "or missing)", numbers)
    return rules.verdict(parts, numbers)


def _no_solution(table, mapping: str) -> Optional[Verdict]:
    """``not_testable`` when no valid run of the table found ``mapping`` at >= 90%."""
    found = [r for r in table if valid(r) and r[f"{mapping}_acc"] >= SOLVED]
    if found:
        return None
    best = max((r[f"{mapping}_acc"] for r in table if valid(r)), default=None)
    return not_testable(f"no valid run found the {mapping} solution (best {rounded3(best)} of "
                        f"{sum(valid(r) for r in table)} valid runs); see the Zhang pilot in "
                        "docs/results.md", {"best_valid": rounded3(best)})


_PHASE = dict(statistic="per (gamma, depth) cell and seed: the best accuracy on (4,3) over the "
              "seed's valid learning rates (the paper's best-of-lrs protocol)",
              comparison="every valid cell at this gamma (any depth): the seeds' values above the "
              "bar by 2 se")


@register_claim(
    "init-phase-small-gamma-symmetric",
    "init-phase-diagram",
    "at gamma = 0.5 (large init) the held-out pair (4,3) is answered symmetrically (x-6) in every "
    "valid cell (seen-pair test accuracy >= 90%) at every depth, best of learning rates per seed",
    "Zhang et al. Fig 2a: symmetric accuracy 'nearly 100%' in the large-init zone (gamma ~0.3-0.6 "
    "at small depth); 2-layer gamma 0.5 is the paper's symmetric example; per-cell values not published",
    bars=[ZONE_BAR, VALID_BAR, *HOUSE_BARS], **_PHASE,
)
def check_phase_symmetric(table):
    return _phase_check(table, 0.5, "symmetric")


@register_claim(
    "init-phase-large-gamma-inferential",
    "init-phase-diagram",
    "at gamma = 0.8 (small init) the held-out pair (4,3) is answered inferentially (x-10) in every "
    "valid cell (seen-pair test accuracy >= 90%) at every depth, best of learning rates per seed",
    "Zhang et al. Fig 2b: inferential accuracy near 100% at small init (large gamma), all depths; "
    "2-layer gamma 0.8 is the paper's inferential example; per-cell values not published",
    bars=[ZONE_BAR, VALID_BAR, *HOUSE_BARS], **_PHASE,
)
def check_phase_inferential(table):
    return _no_solution(table, "inferential") or _phase_check(table, 0.8, "inferential")


VERY_LARGE_GAMMA, DEEP = 0.3, 4  # the corner of Fig 2 the paper shades (exact ticks unpublished)


@register_claim(
    "init-phase-very-large-init-fails",
    "init-phase-diagram",
    "at very large init (gamma <= 0.3) and depth >= 4 the model fails even on the seen anchors: "
    "seen-pair test accuracy (best of learning rates per seed) stays below 90%",
    "Zhang et al. Fig 2a,b (shaded zone) and §4: 'very large init plus depth fails even on seen "
    "anchors' (memorizes samples); exact gamma ticks and cell values not published (sheet §5)",
    statistic="per seed of each cell with gamma <= 0.3 and depth >= 4: the best seen-pair test "
              "accuracy over learning rates",
    comparison="every such cell: the seeds' values below 0.9 by 2 se",
    bars=[Bar("failed", "seen-pair test accuracy < 0.9", "Zhang et al. Fig 2: shaded when < 90%"),
          Bar("zone", "gamma <= 0.3, depth >= 4", "reason: the shaded corner of Fig 2 (smallest "
              "gammas, larger depths); the paper publishes no ticks"), *HOUSE_BARS],
)
def check_very_large_init(table):
    cells = {c: rows for c, rows in seed_bests(table).items()
             if c[0] <= VERY_LARGE_GAMMA + 1e-9 and c[1] >= DEEP}
    if not cells:
        return not_testable(f"the preset has no cell with gamma <= {VERY_LARGE_GAMMA} and depth >= {DEEP}")
    parts = [rules.compare_to_bar([r["seen"] for r in rows], VALID_ACC, label=f"gamma {g} depth {d} seen",
                                  direction="less") for (g, d), rows in sorted(cells.items())]
    return rules.verdict(parts, {f"gamma={g},depth={d}": p.numbers for (g, d), p in zip(sorted(cells), parts)})
