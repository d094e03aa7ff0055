"""The report folder: index with the claims table, a page per experiment with its claims' rules,
figures (alt text), run table, every spec field, and links between the pages; all offline."""

import re
from html.parser import HTMLParser
from pathlib import Path

from biaslab.cli import main
from biaslab.report.html import write_report
from biaslab.spec import describe, resolve
from biaslab.store import Store


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.imgs, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.refs.append(a["href"])
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.refs.append(a.get("href") or a.get("src"))
        if tag == "img":
            self.imgs.append(a)


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def _store(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        for i, (a, r) in enumerate([(3.0, 5.0), (3.3, 5.0), (2.9, 4.9)]):
            store.save_run(f"r{i}", "lowsens-generalization", {"n": 10, "train_size": 128, "seed": i},
                           status="done", metrics={"fitted": 1.0, "as_learned": a, "as_random": r})
    return path


def test_folder_is_self_contained_and_linked(tmp_path):
    with Store(_store(tmp_path)) as store:
        index = write_report(store, tmp_path / "rep")
    out = index.parent
    pages = sorted(p.name for p in out.glob("*.html"))
    assert pages == ["index.html", "lowsens-generalization.html"]
    assert not list(out.glob("*.tmp"))
    for page in pages:
        parsed = _parse(out / page)
        for ref in parsed.refs:
            assert not re.match(r"^(https?:)?//", ref), f"{page} reaches the network: {ref}"
            target, _, anchor = ref.partition("#")
            target_path = out / (target or page)
            assert target_path.exists(), f"{page} links to missing {ref}"
            if anchor:
                assert anchor in _parse(target_path).ids, f"{page}: no #{anchor} in {target}"
        for img in parsed.imgs:
            assert img.get("alt"), f"{page}: an image without alt text"
            assert (out / img["src"]).stat().st_size > 1000
    idx = (out / "index.html").read_text()
    # The claims table: claim, verdict, our numbers beside the paper's, preset, link to the page.
    assert "lowsens-learned-below-random" in idx and "PASS" in idx
    assert 'href="lowsens-generalization.html#claim-lowsens-learned-below-random"' in idx
    from biaslab.registry import CLAIMS

    claim = CLAIMS.get("lowsens-learned-below-random")
    assert claim.paper.split()[0] in idx


def test_experiment_page_has_rule_spec_runs_and_figures(tmp_path):
    from biaslab.experiments import get_experiment
    from biaslab.registry import CLAIMS

    with Store(_store(tmp_path)) as store:
        write_report(store, tmp_path / "rep")
    page = (tmp_path / "rep" / "lowsens-generalization.html").read_text()
    parsed = _parse(tmp_path / "rep" / "lowsens-generalization.html")
    # The decision rule in words.
    statement = CLAIMS.get("lowsens-learned-below-random").statement
    assert statement.replace("'", "&#39;").replace('"', "&#34;")[:60] in page
    # Every spec field, with its meaning.
    exp = get_experiment("lowsens-generalization")
    for row in describe(resolve(exp.Spec, "lowsens-generalization", "cpu")):
        assert f"<code>{row['field']}</code>" in page
    # The run table: one row per finished run, config and metric columns, sortable + filterable.
    assert 'id="runs" class="sortable"' in page and 'class="filter"' in page
    body = page.split('id="runs"')[1].split("</table>")[0]
    assert body.count("<tr>") == 1 + 3
    for col in ("run_id", "as_learned", "train_size"):
        assert f">{col}</th>" in body
    assert parsed.imgs and all("lowsens-generalization" in i["alt"] for i in parsed.imgs)


def test_report_escapes_stored_text_and_cli_writes_folder(tmp_path, capsys):
    path = _store(tmp_path)
    with Store(path) as store:
        store.save_run("evil", "lowsens-generalization", {"n": 10, "train_size": 128, "label": "<script>x</script>"},
                       status="done", metrics={"fitted": 0.0, "as_learned": 1.0, "as_random": 1.0})
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "lowsens-generalization.html").read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert (tmp_path / "rep" / "report.js").exists() and (tmp_path / "rep" / "report.css").exists()


def test_open_uses_a_browser_when_there_is_one_and_says_so_when_not(tmp_path, capsys, monkeypatch):
    import webbrowser

    path = _store(tmp_path)
    opened = []

    class Fake:
        def open(self, url):
            opened.append(url)
            return True

    monkeypatch.setattr(webbrowser, "get", lambda *a: Fake())
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "rep"), "--open"]) == 0
    assert opened == [(tmp_path / "rep" / "index.html").resolve().as_uri()]

    def none(*a):
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", none)
    capsys.readouterr()
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "rep2"), "--open"]) == 0
    assert "no web browser available" in capsys.readouterr().err
    assert (tmp_path / "rep2" / "index.html").exists()


def test_run_table_shows_the_grid_axes_first_in_natural_order():
    from biaslab.report.pages import run_table

    rows = [{"run_id": "a", "n": 10, "seed": 0, "lr": 0.1, "deg_learned_10": 1, "deg_learned_2": 2},
            {"run_id": "b", "n": 4, "seed": 1, "lr": 0.1, "deg_learned_10": 3, "deg_learned_2": 4}]
    cols, cells = run_table(rows, config_keys={"n", "seed", "lr"})
    assert cols == ["run_id", "n", "seed", "lr", "deg_learned_2", "deg_learned_10"]
    assert cells[0][:2] == ["a", "10"]
