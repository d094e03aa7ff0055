"""`biaslab results`: the stored verdicts as markdown, the tables of docs/results.md.

Claims are grouped by paper and counted; observations (true by construction) are listed apart
and never counted; every row names its bars with their sources, the scale of its preset against
the paper's, and (after ``reproduce --replicates``) whether it held on every seed set. The header
says where the verdicts were computed: commit, machine, torch version, date. Bars every claim
shares (the house rules) are named once in the header, not on every row; the scale of a preset
against the paper's and the cost of its checked runs belong to an experiment, so a last table gives
them once per experiment instead of repeating them on each of its claims' rows."""

from __future__ import annotations

from ..errors import InputError
from .common import emit


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _status(c) -> str:
    v = c.verdict
    return f"{v.status} (not testable at this scale)" if v.not_testable else v.status


def results_rows(checked) -> list[dict]:
    from ..experiments.claims import OBSERVATION
    from ..registry import EXPERIMENTS
    from ..report.pages import paper_of

    rows = []
    for c in checked:
        d = c.detail or {}
        reps = d.get("replicates")
        rows.append({
            "paper": paper_of(EXPERIMENTS.get(c.claim.experiment)),
            "claim": c.claim.name, "experiment": c.claim.experiment,
            "observation": c.claim.kind == OBSERVATION, "status": _status(c),
            "stability": f"{d.get('stability')} ({' '.join(reps)})" if reps else "not rerun",
            "measured": c.verdict.summary,
            "bars": [f"{b.what} {b.value} ({b.source})" for b in c.claim.bars],
            "scale": ", ".join(d.get("scale") or []) or ("the paper's setup" if "scale" in d else "-"),
            "preset": c.preset or "all stored runs", "runs": c.runs,
            "cost": d.get("cost_seconds"), "provenance": d.get("provenance") or {}})
    return sorted(rows, key=lambda r: (r["paper"], r["claim"]))


def markdown(rows: list[dict], store_path: str) -> str:
    lines = [f"Verdicts stored in `{store_path}`."]
    prov = {(r["provenance"].get("commit"), r["provenance"].get("machine"), r["provenance"].get("torch"))
            for r in rows if r["provenance"]}
    dates = sorted(r["provenance"].get("date") for r in rows if r["provenance"].get("date"))
    for commit, mach, torch in sorted(prov, key=str):
        lines.append(f"- commit `{commit}`, machine: {mach}, torch {torch}")
    if dates:
        lines.append(f"- checked {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else ""))
    shared = _house_bars(rows)
    if shared:
        lines.append("- house bars, written \"house\" in the rows of the claims that use them: "
                     + "; ".join(shared))
    claims = [r for r in rows if not r["observation"]]
    counts = {}
    for r in claims:
        key = r["status"].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    untestable = sum("not testable" in r["status"] for r in claims)
    lines.append("")
    lines.append(f"**{len(claims)} claims: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                 + (f" ({untestable} of them not testable at this scale)" if untestable else "")
                 + f"**; {len(rows) - len(claims)} observations (not counted).")
    for title, group in (("Claims", claims), ("Observations (true by construction; not counted)",
                                              [r for r in rows if r["observation"]])):
        if not group:
            continue
        lines += ["", f"### {title}", ""]
        paper = None
        for r in group:
            if r["paper"] != paper:
                paper = r["paper"]
                lines += ["", f"**{paper[1]}**", "",
                          "| claim | verdict | stability | measured | its own bars (source) | experiment (preset, runs) |",
                          "|---|---|---|---|---|---|"]
            own = (["house"] if any(b in shared for b in r["bars"]) else []) + [
                b for b in r["bars"] if b not in shared]
            lines.append("| " + " | ".join(_cell(x) for x in (
                f"`{r['claim']}`", r["status"], r["stability"], r["measured"], "; ".join(own) or "-",
                f"`{r['experiment']}` ({r['preset']}, {r['runs']})")) + " |")
    per_exp: dict = {}
    for r in rows:
        per_exp.setdefault((r["experiment"], r["preset"]), r)
    lines += ["", "### Cost of each experiment's checked runs, and its scale against the paper's setup", "",
              "| experiment | preset | runs | training seconds (sum over runs) | scale vs paper (resolved fields that differ) |",
              "|---|---|---|---|---|"]
    for (e, preset), r in sorted(per_exp.items()):
        sec = r["cost"]
        lines.append("| " + " | ".join(_cell(x) for x in (
            f"`{e}`", preset, r["runs"], sec if sec is not None else "-", r["scale"])) + " |")
    return "\n".join(lines) + "\n"


def _house_bars(rows: list[dict]) -> list[str]:
    """The house rules' bars (``rules.TIE_BAR``, ``rules.MIN_RUNS_BAR``) that some row carries:
    the same text on most rows, so the table names them once."""
    from ..experiments import rules

    house = [f"{b.what} {b.value} ({b.source})" for b in (rules.TIE_BAR, rules.MIN_RUNS_BAR)]
    return [b for b in house if any(b in r["bars"] for r in rows)]


def cmd_results(args) -> int:
    from ..experiments.claims import stored_verdicts
    from ..store import Store

    with Store(args.store, readonly=True) as store:
        checked = stored_verdicts(store)
    if args.preset:
        have = sorted({c.preset or "all stored runs" for c in checked})
        checked = [c for c in checked if c.preset == args.preset]
        if not checked:
            raise InputError("preset", f"no verdict was checked under preset {args.preset!r}",
                             ", ".join(have) or "none: run `biaslab reproduce` first")
    rows = results_rows(checked)
    emit(rows, args.json, lambda rs: print(markdown(rs, args.store), end=""))
    return 0
