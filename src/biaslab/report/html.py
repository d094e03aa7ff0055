"""One self-contained HTML page: the claims table, then every experiment's figures (PNG, inline)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path

STATUS_COLOR = {"PASS": "#2e7d32", "FAIL": "#c62828", "INCONCLUSIVE": "#b26a00"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1em 0} th,td{border-bottom:1px solid #ddd;
padding:.45em .6em;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f5f5f5} .status{font-weight:700;color:#fff;padding:.15em .5em;border-radius:4px}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em} .note{background:#fff8e1;padding:.6em 1em;border-radius:4px}
"""


def fig_to_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(store, out_dir: str | os.PathLike) -> Path:
    """Write ``index.html``: the verdicts the last checks stored, then every figure.

    Verdicts are not recomputed here: the table shows what ``check_claims`` stored (by
    ``biaslab reproduce``), with the preset and the time of the check. A claim whose experiment
    has runs in the store but no stored verdict yet is checked once, on every stored run of it,
    and recorded as such (preset "all stored runs").
    """
    from ..experiments.claims import check_claims, stored_verdicts
    from ..registry import CLAIMS, EXPERIMENTS
    from ..store.view import Artifacts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    experiments = [e for e in store.experiments() if e in EXPERIMENTS]
    tables = {e: store.table(e) for e in experiments}
    checked = {c.claim.name: c for c in stored_verdicts(store)}
    unchecked = [CLAIMS.get(n) for n in CLAIMS.names()
                 if n not in checked and CLAIMS.get(n).experiment in tables]
    checked.update({c.claim.name: c for c in check_claims(store, unchecked)})
    rows = [checked[n] for n in sorted(checked)]
    parts = [f"<h1>biaslab report</h1><p class='sub'>store <code>{html.escape(str(store.path))}</code>"
             f" &middot; {time.strftime('%Y-%m-%d %H:%M')}</p>"]
    if any(c.verdict.status == "INCONCLUSIVE" for c in rows):
        parts.append("<p class='note'>INCONCLUSIVE means the stored runs are too few or too close "
                     "to decide under the claim's rule (fixed before the runs), e.g. a small "
                     "<code>cpu</code> preset; run the <code>gpu</code> or <code>paper</code> preset.</p>")
    parts.append("<h2>Claims</h2><table><tr><th>claim</th><th>verdict</th><th>measured</th>"
                 "<th>paper</th></tr>")
    for c in rows:
        claim, v = c.claim, c.verdict
        color = STATUS_COLOR.get(v.status, "#555")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.checked))
        basis = f"preset {c.preset}" if c.preset else "all stored runs"
        parts.append(
            f"<tr><td><b>{html.escape(claim.name)}</b><br>{html.escape(claim.statement)}</td>"
            f"<td><span class='status' style='background:{color}'>{v.status}</span>"
            f"<br><small>{html.escape(basis)}, {c.runs} runs<br>checked {when}</small></td>"
            f"<td>{html.escape(v.summary)}<details><summary>numbers</summary><pre>"
            f"{html.escape(json.dumps(v.numbers, indent=1))}</pre></details></td>"
            f"<td>{html.escape(claim.paper)}</td></tr>")
    parts.append("</table>")
    for name in experiments:
        exp = EXPERIMENTS.get(name)()
        table = tables[name]
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(exp.description)} "
                     f"&middot; {len(table)} finished runs</p>")
        for fig_name, fig in exp.figures(table, Artifacts(store.artifact_paths(name))).items():
            png = fig_to_png(fig)
            (out / f"{name}__{fig_name}.png").write_bytes(png)
            b64 = base64.b64encode(png).decode()
            parts.append(f"<figure><img alt='{html.escape(fig_name)}' src='data:image/png;base64,"
                         f"{b64}'><figcaption>{html.escape(fig_name.replace('_', ' '))}</figcaption></figure>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>biaslab report</title>" \
           f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    tmp = out / "index.html.tmp"
    tmp.write_text(page)
    os.replace(tmp, out / "index.html")
    return out / "index.html"
