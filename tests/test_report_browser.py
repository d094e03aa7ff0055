"""The report in a real browser: headless Chromium (the system's package, driven by selenium and
the system chromedriver) opens every page of a report made from a small real run, and the test
fails on a console error, an image that does not load, or a run table that does not sort/filter.
It keeps a screenshot of the index (``BIASLAB_SCREENSHOT`` names where; the README's
screenshots are of the report of every cpu preset, ``docs/report-all-cpu*.png``). `make test`
installs Chromium and its driver (Debian's packages, when apt-get is there and allowed); where
they are still missing the tests are skipped with the reason, except under CI (``CI=true``),
where a missing browser FAILS them: CI must run them."""

import os
import shutil
from pathlib import Path

import pytest

from biaslab.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
except ImportError:
    webdriver = None
MISSING = ("selenium is not installed (pip install -e '.[test]')" if webdriver is None else
           "no Chromium and chromedriver installed (apt-get install chromium chromium-driver)"
           if not (CHROMIUM and DRIVER) else None)


@pytest.fixture(scope="module", autouse=True)
def browser_installed():
    """Skip without a browser, but fail under CI, where the browser tests must run."""
    if MISSING and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI: {MISSING}", pytrace=False)
    if MISSING:
        pytest.skip(MISSING)

TINY = ["n=4", "train_sizes=[4]", "function_seeds=[0,1]", "random_completions=1", "train.steps=20",
        "train.batch=8", "train.eval_every=10", "model.params.d_model=8", "model.params.n_heads=2",
        "model.params.n_layers=1", "model.params.d_ff=8"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    sets = [a for o in TINY for a in ("--set", o)]
    assert main(["reproduce", "lowsens-learned-below-random", "--preset", "cpu", *sets, "--store",
                 str(tmp / "s.sqlite"), "--report", str(tmp / "rep"), "--quiet"]) == 0
    return tmp / "rep"


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _open(browser, page: Path) -> None:
    browser.get(page.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"{page.name}: console errors {errors}"
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))")
    assert not broken, f"{page.name}: images that did not load: {broken}"


def test_every_page_renders_without_errors(report, browser):
    pages = sorted(report.glob("*.html"))
    assert len(pages) >= 2
    for page in pages:
        _open(browser, page)
    _open(browser, report / "index.html")
    status = browser.find_element("css selector", "table.claims .status").text
    assert status in ("PASS", "FAIL", "INCONCLUSIVE")
    shot = Path(os.environ.get("BIASLAB_SCREENSHOT", report / "index.png"))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_experiment_page_shows_figures_and_its_table_sorts_and_filters(report, browser):
    _open(browser, report / "index.html")
    # Two clicks from the index to a claim's figure: the claim's experiment link, then the page.
    browser.find_element("css selector", "table.claims td a").click()
    _open(browser, Path(browser.current_url.split("#")[0].removeprefix("file://")))
    images = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert images and min(images) > 100
    rows = "return Array.from(document.querySelectorAll('#runs tbody tr'))"
    ids = browser.execute_script(rows + ".map(r => r.cells[0].textContent)")
    assert len(ids) >= 2
    browser.find_element("xpath", "//table[@id='runs']//th[text()='run_id']").click()
    assert browser.execute_script(rows + ".map(r => r.cells[0].textContent)") == sorted(ids)
    browser.find_element("xpath", "//table[@id='runs']//th[text()='run_id']").click()
    assert browser.execute_script(rows + ".map(r => r.cells[0].textContent)") == sorted(ids)[::-1]
    browser.find_element("css selector", "input.filter").send_keys(ids[0])
    shown = browser.execute_script(rows + ".filter(r => !r.hidden).map(r => r.cells[0].textContent)")
    assert shown == [ids[0]]
    assert browser.find_element("css selector", ".count").text.startswith(f"1 of {len(ids)}")
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_index_groups_claims_by_paper_and_filters_them(report, browser):
    _open(browser, report / "index.html")
    heading = "return Array.from(document.querySelectorAll('#claims tr.paper')).map(r => r.hidden)"
    shown = ("return Array.from(document.querySelectorAll('#claims tbody tr:not(.paper)'))"
             ".filter(r => !r.hidden).map(r => r.id)")
    headings = browser.execute_script("return Array.from(document.querySelectorAll("
                                      "'#claims tr.paper')).map(r => r.textContent)")
    assert any("Hahn & Rofin" in h for h in headings)
    everything = browser.execute_script(shown)
    assert "claim-lowsens-learned-below-random" in everything
    box = browser.find_element("css selector", "input.filter[data-table='claims']")
    box.send_keys("lowsens-learned-below-random")
    assert browser.execute_script(shown) == ["claim-lowsens-learned-below-random"]
    assert browser.find_element("css selector", ".count[data-table='claims']").text == \
        f"1 of {len(everything)} claims"
    box.send_keys(" no-such-word")
    assert browser.execute_script(shown) == [] and all(browser.execute_script(heading))
    # one click from a claim's row to its experiment's figures
    box.clear()
    box.send_keys(" ")
    browser.find_element("css selector", "#claim-lowsens-learned-below-random a[href$='#figures']").click()
    assert browser.current_url.endswith("#figures")
    images = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert images and min(images) > 100


def test_the_check_catches_a_missing_image_and_a_script_error(tmp_path, browser):
    (tmp_path / "img.html").write_text("<!doctype html><img src='missing.png' alt='gone'>")
    with pytest.raises(AssertionError, match="missing.png"):
        _open(browser, tmp_path / "img.html")
    (tmp_path / "js.html").write_text("<!doctype html><script>undefinedFunction()</script>")
    with pytest.raises(AssertionError, match="console errors"):
        _open(browser, tmp_path / "js.html")
