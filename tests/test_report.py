"""The report: claims evaluated from the store, figures embedded, one HTML page."""

from biaslab.experiments.claims import check_claims
from biaslab.experiments.hahn_rofin.lowsens_generalization import check_lowsens
from biaslab.registry import CLAIMS
from biaslab.report.html import write_report
from biaslab.store import Store


def _rows(learned, random, m=128, fitted=1.0):
    return [{"train_size": m, "n": 10, "fitted": fitted, "as_learned": a, "as_random": r}
            for a, r in zip(learned, random)]


def test_lowsens_claim_rules():
    assert check_lowsens(_rows([3.0, 3.2, 3.1], [5.0, 5.0, 4.9])).status == "PASS"
    assert check_lowsens(_rows([5.5, 5.2, 5.4], [5.0, 5.0, 4.9])).status == "FAIL"
    assert check_lowsens(_rows([3.0], [5.0])).status == "INCONCLUSIVE"  # one fitted run
    noisy = _rows([1.0, 4.9, 4.95], [5.0, 5.0, 5.0])  # below on average, not by 2 stderr
    assert check_lowsens(noisy).status == "INCONCLUSIVE"
    unfitted = _rows([3.0, 3.1], [5.0, 5.0], fitted=0.0)
    assert check_lowsens(unfitted).status == "INCONCLUSIVE"
    mixed = _rows([3.0, 3.1, 3.2], [5.0, 5.0, 5.0]) + _rows([5.5, 5.6, 5.7], [5.0, 5.0, 4.9], m=512)
    v = check_lowsens(mixed)
    assert v.status == "FAIL" and "m=512" in v.numbers


def test_report_has_claims_and_figures(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        for i, (a, r) in enumerate([(3.0, 5.0), (3.3, 5.0), (2.9, 4.9)]):
            store.save_run(f"r{i}", "lowsens-generalization", {"n": 10, "train_size": 128},
                           status="done", metrics={"fitted": 1.0, "as_learned": a, "as_random": r})
        # a reading command: without a stored verdict the report says so and writes nothing
        page = write_report(store, tmp_path / "bare")
        assert store.verdicts() == [] and "NOT CHECKED" in page.read_text()
        check_claims(store, [CLAIMS.get("lowsens-learned-below-random")])  # what reproduce does
        page = write_report(store, tmp_path / "rep")
        verdicts = store.verdicts()
    html = page.read_text()
    assert "lowsens-learned-below-random" in html and "PASS" in html
    # Figures are PNG files beside the experiment's page (the folder opens offline).
    exp_page = (tmp_path / "rep" / "lowsens-generalization.html").read_text()
    assert "src=\"lowsens-generalization__sensitivity_by_m.png\"" in exp_page
    assert (tmp_path / "rep" / "lowsens-generalization__sensitivity_by_m.png").stat().st_size > 1000
    assert verdicts[0]["status"] == "PASS"
