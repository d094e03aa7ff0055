"""What the report shows, gathered from the store as plain data for the templates: the stored
claim verdicts, and for each experiment its figures, its spec (every field with its meaning), its
claims' decision rules and its finished runs. Nothing here writes HTML."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field


def page_name(experiment: str) -> str:
    """The file name of an experiment's page (and the stem of its figures)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", experiment)


def paper_of(experiment_cls) -> tuple[int, str]:
    """(order, title) of the paper an experiment reproduces: the ``PAPER`` of the folder its
    module lives in (``experiments/<paper>/``); experiments outside a paper folder come last."""
    import importlib

    package = importlib.import_module(experiment_cls.__module__.rsplit(".", 1)[0])
    return getattr(package, "PAPER_ORDER", 99), getattr(package, "PAPER", "other experiments")


@dataclass
class PaperSection:
    title: str
    claims: list  # of ClaimRow
    counts: dict  # status -> number of claims


def paper_sections(claims, paper_of_experiment: dict) -> list[PaperSection]:
    """The claims grouped by the paper their experiment reproduces, papers in their set order,
    with the verdict counts a reader scans first."""
    groups: dict = {}
    for c in claims:
        groups.setdefault(paper_of_experiment.get(c.experiment, (99, "other experiments")), []).append(c)
    out = []
    for (_, title), rows in sorted(groups.items()):
        # observations hold by construction: shown, never counted
        counts = {s: sum(c.status == s and c.kind != "observation" for c in rows)
                  for s in ("PASS", "FAIL", "INCONCLUSIVE")}
        out.append(PaperSection(title, rows, {k: v for k, v in counts.items() if v}))
    return out


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


@dataclass
class ClaimRow:
    name: str
    experiment: str
    page: str
    statement: str  # the decision rule in words, fixed before the runs
    paper: str  # what the paper reports
    status: str
    summary: str  # our numbers, in words
    numbers: str  # our numbers, as JSON
    preset: str
    runs: int
    checked: str
    kind: str = "claim"
    bars: list = field(default_factory=list)  # of claims.Bar, each with its source
    scale: list = field(default_factory=list)  # "field ours vs paper" of the checked preset
    not_testable: str = ""
    stability: str = ""  # over reproduce --replicates: "stable (PASS PASS PASS)"


@dataclass
class ExperimentPage:
    name: str
    page: str
    description: str
    preset: str  # the preset whose spec is shown
    spec: list[dict]  # {field, value, description, group}
    spec_note: str
    claims: list[ClaimRow]
    columns: list[str]  # of the run table
    rows: list[list[str]]
    figures: list[dict] = field(default_factory=list)  # {file, alt, caption}
    paper: str = ""


def claim_rows(checked) -> list[ClaimRow]:
    """The stored verdicts (``CheckedClaim``s) as table rows, sorted by claim name."""
    out = []
    for c in sorted(checked, key=lambda c: c.claim.name):
        claim, v = c.claim, c.verdict
        out.append(ClaimRow(claim.name, claim.experiment, page_name(claim.experiment) + ".html",
                            claim.statement, claim.paper, v.status, v.summary,
                            json.dumps(v.numbers, indent=1, default=str),
                            f"preset {c.preset}" if c.preset else "all stored runs", c.runs,
                            _when(c.checked), claim.kind, list(claim.bars),
                            list((c.detail or {}).get("scale") or []), v.not_testable or "",
                            _stability(c.detail or {})))
    return out


def _stability(detail: dict) -> str:
    reps = detail.get("replicates")
    return f"{detail.get('stability')} over {len(reps)} seed sets ({' '.join(reps)})" if reps else ""


def spec_rows(experiment: str, exp, presets: list[str]) -> tuple[str, list[dict], str]:
    """Every field of the experiment's spec under the first of ``presets`` it has (the preset its
    claims were checked under, then cpu), else its defaults; with a note saying which."""
    from ..spec import describe, presets_of, resolve

    have = presets_of(experiment)
    preset = next((p for p in presets if p in have), None)
    spec = resolve(exp.Spec, experiment, preset)
    note = (f"preset {preset}" if preset else "defaults (no preset)") + \
        "; the run table below shows the values each run used"
    rows = [{**r, "value": "" if r["group"] else _cell(r["value"])} for r in describe(spec)]
    return preset or "defaults", rows, note


def natural_key(text: str) -> list:
    """Sort key that reads digit runs as numbers: deg_learned_2 before deg_learned_10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", str(text)) if part]


def run_table(rows: list[dict], config_keys=None) -> tuple[list[str], list[list[str]]]:
    """Finished runs as text cells: run id, then the grid's axes (config keys whose value
    differs between runs), then the other config keys, then the final metrics; each part in
    natural order. ``config_keys``: which columns are config (None: all are)."""
    if not rows:
        return [], []
    keys = {k for r in rows for k in r} - {"run_id"}
    config = keys if config_keys is None else keys & set(config_keys)

    def varies(k):
        return len({json.dumps(r.get(k), sort_keys=True, default=str) for r in rows}) > 1
    axes = sorted((k for k in config if varies(k)), key=natural_key)
    fixed = sorted(config - set(axes), key=natural_key)
    cols = ["run_id", *axes, *fixed, *sorted(keys - config, key=natural_key)]
    return cols, [[_cell(r.get(c)) for c in cols] for r in rows]
