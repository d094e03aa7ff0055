"""A study file's claims as claims of the lab's claims layer, decided by ``experiments.rules``.

Each claim is one comparison per cell of the grid axes it does not compare (and does not fix in
``where``), combined by ``claims.combine``: FAIL if a cell fails, PASS if every cell passes.
Study claims are not added to the global registry (a study is a file, not a module); they are
checked and stored by ``check_claims`` like every claim, under the study's experiment name.
"""

from __future__ import annotations

from ..experiments import rules
from ..experiments.claims import Bar, Claim
from .spec import COLUMNS, ClaimSpec, StudySpec


def same(value, wanted) -> bool:
    """An axis value of a stored row equals a value written in the file (numbers as numbers)."""
    if value is None or wanted is None:
        return value is wanted
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == str(wanted)


def _comparison_text(c: ClaimSpec) -> str:
    side = ">" if c.direction == "greater" else "<"
    if c.comparison == "means":
        return f"mean at {c.axis}={c.a} minus mean at {c.axis}={c.b} {side} {c.bar:g}, per cell"
    what = "least-squares slope" if c.comparison == "slope" else "Spearman correlation"
    return f"{what} of {c.statistic} on {c.axis} {side} {c.bar:g}, per cell"


def check_of(c: ClaimSpec, axes: list[str]):
    """``table -> Verdict`` for one claim; ``axes``: the study's varying axes."""
    column = COLUMNS[c.statistic]
    others = [a for a in axes if a != c.axis and a not in c.where]

    def check(table):
        rows = [r for r in table if all(same(r.get(k), v) for k, v in c.where.items())]
        cells: dict = {}
        for r in rows:
            cells.setdefault(tuple(str(r.get(a)) for a in others), []).append(r)
        parts = []
        for key in sorted(cells):
            rs = cells[key]
            label = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or "all runs"
            if c.comparison == "means":
                a = [r.get(column) for r in rs if same(r.get(c.axis), c.a)]
                b = [r.get(column) for r in rs if same(r.get(c.axis), c.b)]
                parts.append(rules.compare_means(a, b, label=label, direction=c.direction,
                                                 margin=c.bar))
            else:
                xs = [r.get(c.axis) for r in rs]
                ys = [r.get(column) for r in rs]
                compare = rules.slope_vs if c.comparison == "slope" else rules.correlation_vs
                parts.append(compare(xs, ys, c.bar, label=label, direction=c.direction))
        return rules.verdict(parts, {"cells": len(parts), "runs": len(rows)})

    return check


def study_claims(spec: StudySpec) -> list[Claim]:
    axes = spec.varying_axes()
    return [Claim(c.name, f"study-{spec.name}", c.statement, f"study question: {spec.question}",
                  check_of(c, axes), statistic=f"{COLUMNS[c.statistic]} of each run",
                  comparison=_comparison_text(c),
                  bars=(Bar("bar", f"{c.bar:g}", c.source), *rules.HOUSE_BARS))
            for c in spec.claims]
