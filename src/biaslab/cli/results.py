"""`biaslab results`: the stored verdicts as markdown, the tables of docs/results.md.

Claims are grouped by paper and counted; observations (true by construction) are listed apart
and never counted; every row names its bars with their sources, the scale of its preset against
the paper's, and (after ``reproduce --replicates``) whether it held on every seed set. The header
says where the verdicts were computed: commit, machine, torch version, date; a last table gives
the cost of each experiment's checked runs."""

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
            "bars": "; ".join(f"{b.what} {b.value} ({b.source})" for b in c.claim.bars) or "-",
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
                          "| claim | verdict | stability | measured | bars (source) | scale vs paper | preset, runs |",
                          "|---|---|---|---|---|---|---|"]
            lines.append("| " + " | ".join(_cell(x) for x in (
                f"`{r['claim']}`", r["status"], r["stability"], r["measured"], r["bars"], r["scale"],
                f"{r['preset']}, {r['runs']}")) + " |")
    cost: dict = {}
    for r in rows:
        cost.setdefault(r["experiment"], (r["preset"], r["runs"], r["cost"]))
    lines += ["", "### Cost of each experiment's checked runs", "",
              "| experiment | preset | runs | training seconds (sum over runs) |", "|---|---|---|---|"]
    for e, (preset, runs, sec) in sorted(cost.items()):
        lines.append(f"| `{e}` | {preset} | {runs} | {sec if sec is not None else '-'} |")
    return "\n".join(lines) + "\n"


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
