"""The one claim path: Claim, Bar, Verdict, the one way parts combine, and ``check_claims``.

A claim is a paper's statement turned into a check on the stored table of one experiment,
written before the runs: it declares its *statistic* (what is computed), its *comparison* (how
it is compared) and its *bars* (the thresholds), and every bar names its source (a paper figure
or table, a reference file) or gives a one-line reason. It returns PASS / FAIL / INCONCLUSIVE
with its numbers. The comparisons themselves (ties within 2 standard errors, cells of fewer than
3 runs) live in ``rules.py``.

An *observation* is a check that holds by construction (e.g. a LayerNorm model trading weight
norm for blow-up): it is checked, stored and shown, but never counted in verdict totals.

``check_claims`` is the only place a verdict is computed for the record: it reads the finished
runs the caller names, checks each claim, and stores the verdict with the preset, the scale
(how the preset differs from the paper's), the bars and where it was computed. The report shows
these stored verdicts; it never recomputes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ..registry import CLAIMS

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
STATUSES = (PASS, FAIL, INCONCLUSIVE)
CLAIM, OBSERVATION = "claim", "observation"
NOT_TESTABLE = "not testable at this scale"


@dataclass(frozen=True)
class Bar:
    """A threshold a claim's statistic is held against, and where it comes from.

    ``what``: the quantity ("tie band", "slope ratio"); ``value``: the bar as a reader sees it
    ("2 se", "1/5", "0.985"); ``source``: a paper figure/table or reference file, or
    "reason: ..." in one line where the paper gives no number."""

    what: str
    value: str
    source: str

    def __str__(self) -> str:
        return f"{self.what} {self.value} ({self.source})"

    def as_dict(self) -> dict:
        return {"what": self.what, "value": self.value, "source": self.source}


@dataclass
class Verdict:
    status: str  # PASS | FAIL | INCONCLUSIVE
    summary: str
    numbers: dict = field(default_factory=dict)
    not_testable: Optional[str] = None  # why the runs cannot show the effect at this scale


def not_testable(reason: str, numbers: Optional[dict] = None) -> Verdict:
    """The verdict of a claim whose runs cannot show the effect at all at this scale (e.g. no
    run reaches the solution the claim is about): INCONCLUSIVE, marked so, with the reason,
    instead of an INCONCLUSIVE that reads like noise."""
    return Verdict(INCONCLUSIVE, f"{NOT_TESTABLE}: {reason}", dict(numbers or {}), not_testable=reason)


@dataclass
class Claim:
    name: str
    experiment: str
    statement: str
    paper: str  # what the paper reports, for the results table
    check: Callable[[list[dict]], Verdict]
    statistic: str = ""
    comparison: str = ""
    bars: tuple = ()
    kind: str = CLAIM
    cannot: dict = field(default_factory=dict)  # status -> why the rule can never give it

    def describe_bars(self) -> str:
        return "; ".join(str(b) for b in self.bars)

    def as_dict(self) -> dict:
        return {"name": self.name, "experiment": self.experiment, "kind": self.kind,
                "statement": self.statement, "paper": self.paper, "statistic": self.statistic,
                "comparison": self.comparison, "bars": [b.as_dict() for b in self.bars],
                "cannot": dict(self.cannot)}


def _status(part) -> str:
    return part if isinstance(part, str) else part.status


def combine(parts: Iterable) -> str:
    """The one way a verdict is made of parts (statuses or ``rules.Part``s): FAIL if any part
    fails, PASS if every part passes, INCONCLUSIVE otherwise (also when there is no part)."""
    statuses = [_status(p) for p in parts]
    if not statuses:
        return INCONCLUSIVE
    if FAIL in statuses:
        return FAIL
    return PASS if all(s == PASS for s in statuses) else INCONCLUSIVE


def _register(kind: str, name: str, experiment: str, statement: str, paper: str, *,
              statistic: str, comparison: str, bars, cannot: Optional[dict] = None):
    # That every claim declares a statistic, a comparison and sourced bars is checked by
    # tests/test_claim_verdicts.py over the whole registry; here only what is malformed.
    bars = tuple(bars)
    for b in bars:
        if not isinstance(b, Bar) or not b.source.strip():
            raise ValueError(f"claim {name}: every bar needs a source ({b!r})")
    unknown = set(cannot or {}) - set(STATUSES)
    if unknown:
        raise ValueError(f"claim {name}: cannot names unknown statuses {sorted(unknown)}")

    def deco(fn):
        CLAIMS.add(name, Claim(name, experiment, statement, paper, fn, statistic, comparison, bars,
                               kind, dict(cannot or {})), statement)
        return fn

    return deco


def register_claim(name: str, experiment: str, statement: str, paper: str, *, statistic: str = "",
                   comparison: str = "", bars=(), cannot: Optional[dict] = None):
    """Decorator: register ``fn(table) -> Verdict`` as the check of the paper's claim ``name``.
    ``cannot``: status -> why this rule can by design never give it (read by the test that feeds
    every claim tables for all three statuses)."""
    return _register(CLAIM, name, experiment, statement, paper, statistic=statistic,
                     comparison=comparison, bars=bars, cannot=cannot)


def register_observation(name: str, experiment: str, statement: str, paper: str, *,
                         statistic: str = "", comparison: str = "", bars=(),
                         cannot: Optional[dict] = None):
    """Decorator: register a check that holds by construction. It is stored and shown beside
    the claims but never counted in verdict totals."""
    return _register(OBSERVATION, name, experiment, statement, paper, statistic=statistic,
                     comparison=comparison, bars=bars, cannot=cannot)


def claims_of(kind: Optional[str] = None) -> list[Claim]:
    """Every registered claim (of ``kind`` when given), sorted by name."""
    return [CLAIMS.get(n) for n in CLAIMS.names() if kind is None or CLAIMS.get(n).kind == kind]


@dataclass
class CheckedClaim:
    """A verdict as stored: the claim, its verdict, the preset it was checked under, when, and the
    detail the claims layer records (scale, replicates, provenance, cost)."""

    claim: Claim
    verdict: Verdict
    preset: Optional[str]
    runs: int
    checked: float
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        c, v = self.claim, self.verdict
        return {"claim": c.name, "experiment": c.experiment, "kind": c.kind, "preset": self.preset,
                "status": v.status, "summary": v.summary, "numbers": v.numbers, "runs": self.runs,
                "checked": self.checked, "statement": c.statement, "paper": c.paper,
                "statistic": c.statistic, "comparison": c.comparison,
                "bars": [b.as_dict() for b in c.bars], "not_testable": v.not_testable,
                "scale": self.detail.get("scale", []), "replicates": self.detail.get("replicates"),
                "stability": self.detail.get("stability")}


def check_claims(store, claims: list[Claim], runs: Optional[dict[str, set[str]]] = None,
                 preset: Optional[str] = None, specs: Optional[dict] = None,
                 replicates: Optional[dict[str, list[str]]] = None) -> list[CheckedClaim]:
    """Check ``claims`` on the store's finished runs and store each verdict.

    ``runs``: experiment -> the run ids to check on (e.g. the plan of the preset just run); an
    experiment missing from it (or ``runs=None``) is checked on every finished run it has in
    the store. ``preset`` is recorded beside the verdict (None: "all stored runs"). ``specs``:
    experiment -> the resolved spec the runs came from, for the verdict's scale (how it differs
    from the ``paper`` preset). ``replicates``: claim -> the statuses of its reruns on disjoint
    seed sets (``reproduce --replicates``), stored with a stability label.
    """
    from .provenance import provenance, scale_of, stability

    # what depends only on the experiment (its table, cost and scale) is read once per experiment
    tables: dict[str, tuple[list[dict], float, list[str]]] = {}
    out = []
    where = provenance()
    for claim in claims:
        if claim.experiment not in tables:
            rows = store.table(claim.experiment)
            ids = (runs or {}).get(claim.experiment)
            rows = rows if ids is None else [r for r in rows if r["run_id"] in ids]
            spec = (specs or {}).get(claim.experiment)
            tables[claim.experiment] = (rows, _cost(store, claim.experiment, rows),
                                        scale_of(claim.experiment, spec) if spec is not None else [])
        table, cost, scale = tables[claim.experiment]
        verdict = claim.check(table)
        detail = {"kind": claim.kind, "bars": [b.as_dict() for b in claim.bars],
                  "statistic": claim.statistic, "comparison": claim.comparison,
                  "not_testable": verdict.not_testable, "provenance": where,
                  "cost_seconds": cost, "scale": scale}
        reps = (replicates or {}).get(claim.name)
        if reps is not None:
            detail["replicates"] = [verdict.status] + list(reps)
            detail["stability"] = stability(detail["replicates"])
        checked = store.save_verdict(claim.name, claim.experiment, verdict.status, verdict.summary,
                                     verdict.numbers, preset=preset, runs=len(table), detail=detail)
        out.append(CheckedClaim(claim, verdict, preset, len(table), checked, detail))
    return out


def _cost(store, experiment: str, table: list[dict]) -> float:
    """CPU-side cost of the checked runs: the sum of their stored training seconds."""
    ids = {r["run_id"] for r in table}
    return round(sum(r["seconds"] or 0.0 for r in store.runs(experiment, status="done")
                     if r["id"] in ids), 1)


def stored_verdicts(store) -> list[CheckedClaim]:
    """The verdicts the last checks stored, for registered claims (sorted by claim name)."""
    out = []
    for row in store.verdicts():
        if row["claim"] not in CLAIMS:
            continue
        claim = CLAIMS.get(row["claim"])
        detail = row.get("detail") or {}
        out.append(CheckedClaim(claim, Verdict(row["status"], row["summary"], row["numbers"],
                                               detail.get("not_testable")),
                                row.get("preset"), row.get("runs") or 0, row["checked"], detail))
    return out


def replicate_statuses(store, claims: list[Claim], runs_by_replicate: list[dict[str, set[str]]]) -> dict:
    """claim -> its status on each replicate's runs (experiment -> run ids per replicate), not
    stored: ``check_claims`` records them beside the verdict of replicate 0."""
    tables = {c.experiment: store.table(c.experiment) for c in claims}
    out: dict[str, list[str]] = {}
    for claim in claims:
        for runs in runs_by_replicate:
            ids = runs.get(claim.experiment, set())
            table = [r for r in tables[claim.experiment] if r["run_id"] in ids]
            out.setdefault(claim.name, []).append(claim.check(table).status)
    return out
