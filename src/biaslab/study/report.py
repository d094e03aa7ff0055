"""The study's report page: its question, its claims' verdicts, each measure against each axis
of the grid, and the run table. One folder that opens offline (index.html + PNGs)."""

from __future__ import annotations

import html
from pathlib import Path

from .spec import COLUMNS, StudySpec

AXIS_LABELS = {"task": "task", "model": "model", "lr": "learning rate",
               "weight_decay": "weight decay", "gamma": "initialization rate gamma",
               "clip_norm": "clip norm"}


def _key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def axis_figures(spec: StudySpec, table: list[dict]) -> dict:
    """One figure per measure: a panel per grid axis (every axis with two or more values, else
    the model axis), every run a dot, the mean and sd per axis value; runs split by colour along
    the first other varying axis, so a panel does not pool what that axis separates."""
    from ..plots.figures import PALETTE, plt, strip_with_means

    axes = spec.varying_axes() or ["model"]
    figs = {}
    for measure in spec.measures:
        column = COLUMNS[measure]
        fig, panels = plt.subplots(1, len(axes), figsize=(4.6 * len(axes), 3.8), squeeze=False)
        for ax, axis in zip(panels[0], axes):
            values = sorted({r.get(axis) for r in table}, key=_key)
            hue = next((a for a in axes if a != axis), None)
            hues = sorted({r.get(hue) for r in table}, key=_key) if hue else [None]
            width = 0.6 / len(hues)
            for i, h in enumerate(hues):
                rows = [r for r in table if hue is None or r.get(hue) == h]
                groups = {str(v): [r.get(column) for r in rows if r.get(axis) == v] for v in values}
                strip_with_means(ax, groups, offset=(i - (len(hues) - 1) / 2) * width,
                                 color=PALETTE[i % len(PALETTE)],
                                 label=f"{hue}={h}" if hue else None)
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([str(v) for v in values], rotation=20, fontsize=8)
            ax.set_xlabel(AXIS_LABELS[axis])
            ax.set_ylabel(column)
            if hue:
                ax.legend(frameon=False, fontsize=7)
        fig.suptitle(f"{measure} against each axis ({len(table)} runs)")
        fig.tight_layout()
        figs[measure] = fig
    return figs


def _table_html(table: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for r in table:
        cells = []
        for c in columns:
            v = r.get(c)
            cells.append(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def write_study_page(spec: StudySpec, table: list[dict], checked, out_dir) -> Path:
    """Write ``out_dir/index.html`` and a PNG per measure; returns the page's path."""
    from ..report.html import fig_to_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for measure, fig in axis_figures(spec, table).items():
        (out / f"{measure}.png").write_bytes(fig_to_png(fig))  # closes the figure
        images.append(f'<h3>{html.escape(measure)}</h3><img src="{measure}.png" alt="{measure}">')
    verdicts = "".join(
        f"<tr><td>{html.escape(c.claim.name)}</td><td class='{c.verdict.status}'>{c.verdict.status}"
        f"</td><td>{html.escape(c.claim.statement)}</td><td>{html.escape(c.claim.comparison)}; "
        f"{html.escape(c.claim.describe_bars())}</td><td>{html.escape(c.verdict.summary)}</td></tr>"
        for c in checked)
    claims = (f"<h2>Claims</h2><table><tr><th>claim</th><th>verdict</th><th>statement</th>"
              f"<th>rule</th><th>measured</th></tr>{verdicts}</table>" if checked else "")
    columns = ["run_id", *spec.varying_axes(), "seed", *[COLUMNS[m] for m in spec.measures],
               "converge_step"]
    columns = list(dict.fromkeys(c for c in columns if any(c in r for r in table)))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>study {html.escape(spec.name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}td,th{{border:1px solid #ccc;
padding:2px 6px;font-size:12px}}table{{border-collapse:collapse}}.PASS{{color:#070}}.FAIL{{color:#b00}}
.INCONCLUSIVE{{color:#a60}}img{{max-width:100%}}</style></head><body>
<h1>study {html.escape(spec.name)}</h1><p><b>Question.</b> {html.escape(spec.question)}</p>
<p>{len(table)} runs: tasks {', '.join(spec.tasks)}; models {', '.join(spec.models)};
seeds {spec.seeds}; measures {', '.join(spec.measures)}.</p>{claims}
<h2>Each measure against each axis</h2>{''.join(images)}
<h2>Runs</h2>{_table_html(table, columns)}</body></html>"""
    path = out / "index.html"
    path.write_text(page)
    return path
