"""The one claim path: Claim, Verdict, how parts of a verdict combine, and ``check_claims``.

A claim is a paper's statement turned into a check on the stored table of one experiment,
written before the runs and returning PASS / FAIL / INCONCLUSIVE with its numbers.
``check_claims`` is the only place a verdict is computed for the record: it reads the finished
runs the caller names (the runs of the plan just executed, or every stored run of the
experiment), checks each claim, and stores the verdict with the preset and the time. The report
shows these stored verdicts; it never recomputes one on another set of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ..registry import CLAIMS

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass
class Verdict:
    status: str  # PASS | FAIL | INCONCLUSIVE
    summary: str
    numbers: dict = field(default_factory=dict)


@dataclass
class Claim:
    name: str
    experiment: str
    statement: str
    paper: str  # what the paper reports, for the results table
    check: Callable[[list[dict]], Verdict]


def combine(statuses: Iterable[str]) -> str:
    """The verdict of a claim made of parts: FAIL if any part fails, PASS if every part passes,
    INCONCLUSIVE otherwise (also when there is no part at all)."""
    statuses = list(statuses)
    if not statuses:
        return INCONCLUSIVE
    if FAIL in statuses:
        return FAIL
    return PASS if all(s == PASS for s in statuses) else INCONCLUSIVE


def register_claim(name: str, experiment: str, statement: str, paper: str):
    """Decorator: register ``fn(table) -> Verdict`` as the check of claim ``name``."""

    def deco(fn):
        CLAIMS.add(name, Claim(name, experiment, statement, paper, fn), statement)
        return fn

    return deco


@dataclass
class CheckedClaim:
    """A verdict as stored: the claim, its verdict, the preset it was checked under and when."""

    claim: Claim
    verdict: Verdict
    preset: Optional[str]
    runs: int
    checked: float

    def as_dict(self) -> dict:
        c, v = self.claim, self.verdict
        return {"claim": c.name, "experiment": c.experiment, "preset": self.preset,
                "status": v.status, "summary": v.summary, "numbers": v.numbers, "runs": self.runs,
                "checked": self.checked, "statement": c.statement, "paper": c.paper}


def check_claims(store, claims: list[Claim], runs: Optional[dict[str, set[str]]] = None,
                 preset: Optional[str] = None) -> list[CheckedClaim]:
    """Check ``claims`` on the store's finished runs and store each verdict.

    ``runs``: experiment -> the run ids to check on (e.g. the plan of the preset just run); an
    experiment missing from it (or ``runs=None``) is checked on every finished run it has in
    the store. ``preset`` is recorded beside the verdict (None: "all stored runs").
    """
    tables: dict[str, list[dict]] = {}
    out = []
    for claim in claims:
        if claim.experiment not in tables:
            rows = store.table(claim.experiment)
            ids = (runs or {}).get(claim.experiment)
            tables[claim.experiment] = rows if ids is None else [r for r in rows if r["run_id"] in ids]
        table = tables[claim.experiment]
        verdict = claim.check(table)
        checked = store.save_verdict(claim.name, claim.experiment, verdict.status, verdict.summary,
                                     verdict.numbers, preset=preset, runs=len(table))
        out.append(CheckedClaim(claim, verdict, preset, len(table), checked))
    return out


def stored_verdicts(store) -> list[CheckedClaim]:
    """The verdicts the last checks stored, for registered claims (sorted by claim name)."""
    out = []
    for row in store.verdicts():
        if row["claim"] not in CLAIMS:
            continue
        claim = CLAIMS.get(row["claim"])
        out.append(CheckedClaim(claim, Verdict(row["status"], row["summary"], row["numbers"]),
                                row.get("preset"), row.get("runs") or 0, row["checked"]))
    return out
