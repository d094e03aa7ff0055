"""The report: one folder that opens offline. ``index.html`` holds the claims table (the stored
verdicts, our numbers beside the paper's); each experiment gets a page with its claims' decision
rules, its figures (PNG files beside the page), its run table (sortable and filterable in the page)
and its spec. Pages are Jinja2 templates (``templates/``); the data comes from ``pages.py``."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
STATIC = ("report.css", "report.js")  # copied beside the pages


def fig_to_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def _write(path: Path, data: str | bytes) -> None:
    """Write through a temporary file and a rename: a reader never sees half a page."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


def _draws_data(fig) -> bool:
    """Whether any axes of ``fig`` holds data (lines, points, bars, images, tables), not only a
    "not measured" note."""
    import matplotlib.pyplot as plt

    drawn = any(ax.lines or ax.collections or ax.patches or ax.images or ax.tables
                for ax in fig.axes)
    if not drawn:
        plt.close(fig)
    return drawn


def _config_keys(store, experiment: str) -> set[str]:
    from ..store.query import flatten_config as _flatten

    return {k for r in store.runs(experiment, "done") for k in _flatten(r["config"])}


def write_report(store, out_dir: str | os.PathLike) -> Path:
    """Write the report folder and return its ``index.html``.

    Verdicts are not recomputed here: the claims table shows what ``check_claims`` stored (by
    ``biaslab reproduce``), with the preset and the time of the check. A claim whose experiment
    has runs in the store but no stored verdict yet is checked once, on every stored run of it,
    and recorded as such (preset "all stored runs").
    """
    from .. import __version__
    from ..experiments.claims import check_claims, stored_verdicts
    from ..registry import CLAIMS, EXPERIMENTS
    from ..store.view import Artifacts
    from .pages import (ExperimentPage, claim_rows, page_name, paper_of, paper_sections,
                        run_table, spec_rows)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [e for e in store.experiments() if e in EXPERIMENTS]
    tables = {e: store.table(e) for e in names}
    checked = {c.claim.name: c for c in stored_verdicts(store)}
    unchecked = [CLAIMS.get(n) for n in CLAIMS.names()
                 if n not in checked and tables.get(CLAIMS.get(n).experiment)]  # runs done
    checked.update({c.claim.name: c for c in check_claims(store, unchecked)})
    claims = claim_rows(checked.values())

    papers = {n: paper_of(EXPERIMENTS.get(n)) for n in {c.experiment for c in claims} | set(names)}
    # experiments in paper order, so the navigation bar and the list read paper by paper
    names.sort(key=lambda n: (papers[n], n))
    pages = []
    for name in names:
        exp = EXPERIMENTS.get(name)()
        stem = page_name(name)
        mine = [c for c in claims if c.experiment == name]
        presets = [c.preset for c in mine] + ["cpu"]
        preset, spec, note = spec_rows(name, exp, presets)
        columns, rows = run_table(tables[name], _config_keys(store, name))
        figures = []
        for fig_name, fig in exp.figures(tables[name], Artifacts(store.artifact_paths(name))).items():
            if not _draws_data(fig):  # e.g. a measure the preset leaves out: no empty frame
                continue
            file = f"{stem}__{fig_name}.png"
            _write(out / file, fig_to_png(fig))
            words = fig_name.replace("_", " ")
            figures.append({"file": file, "caption": words,
                            "alt": f"{name}: {words} ({len(tables[name])} finished runs)"})
        pages.append(ExperimentPage(name, stem, exp.description, preset, spec, note, mine,
                                    columns, rows, figures, papers[name][1]))

    env = _environment()
    common = {"experiments": pages, "store": str(store.path), "version": __version__,
              "written": time.strftime("%Y-%m-%d %H:%M")}
    for e in pages:
        _write(out / f"{e.page}.html", env.get_template("experiment.html").render(
            e=e, current=e.name, **common))
    for name in STATIC:
        shutil.copyfile(TEMPLATES / name, out / name)
    index = out / "index.html"
    _write(index, env.get_template("index.html").render(
        claims=claims, sections=paper_sections(claims, papers), current=None, inconclusive=any(c.status == "INCONCLUSIVE" for c in claims),
        **common))
    return index
