"""The committed report, results/cpu/report.html, opened in a real browser: Debian's Chromium, headless,
driven by Selenium 4 through Debian's chromedriver (never a browser or driver fetched at test time).
At a laptop's 1366 x 900 it must show every figure, resolve every link inside the page, never scroll
sideways, log no error, and open with the study at a glance. A screenshot of the first screen is kept
in $FPT_ARTIFACTS (default: the test's tmp_path) for a person to look at."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = ("install them with `apt-get install -y chromium chromium-driver` (Debian's browser and its "
           "WebDriver, at /usr/bin/chromium and /usr/bin/chromedriver) and `.venv/bin/pip install 'selenium>=4,<5'`")
WIDTH, HEIGHT = 1366, 900
NARROW = 1280  # a smaller laptop: the page must not scroll sideways there either
TIMEOUT_S = 20  # every wait is bounded by this


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium at WIDTH x HEIGHT that keeps the console log; quit afterwards."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        pytest.fail(f"selenium is not importable ({err}): {INSTALL}")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.page_load_strategy = "normal"  # get() returns after the load event: every image decoded or failed
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT_S)
        driver.set_script_timeout(TIMEOUT_S)
        driver.set_window_size(WIDTH, HEIGHT)
        yield driver
    finally:
        driver.quit()


def _artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("FPT_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _viewport(driver, width: int) -> dict:
    """Resize so that the page (not the window frame) is `width` wide; the sizes the page then sees."""
    driver.set_window_size(width, HEIGHT)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:  # a window frame takes some of it: make up the difference once
        driver.set_window_size(2 * width - inner, HEIGHT)
    return driver.execute_script("const e = document.documentElement; return {inner: window.innerWidth, "
                                 "client: e.clientWidth, scroll: e.scrollWidth}")


def test_the_report_reads_well_in_a_browser_at_laptop_size(browser, repo_root, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait
    page = repo_root / "results" / "cpu" / "report.html"
    assert page.is_file(), f"{page} missing: run `python -c \"from fptlib.study.report import build; build('cpu')\"`"
    start = time.monotonic()
    browser.get(page.as_uri())
    WebDriverWait(browser, TIMEOUT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")
    loaded = time.monotonic() - start

    # every figure decoded: an <img> that failed has naturalWidth 0
    images = browser.execute_script("return Array.from(document.images).map(i => [i.alt, i.naturalWidth])")
    assert len(images) >= 4 and all(w > 0 for _, w in images), [alt for alt, w in images if not w]

    # every link inside the page lands on an element
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href^=\"#\"]')).map(a => a.getAttribute('href'))")
    dangling = browser.execute_script(
        "return arguments[0].filter(h => !document.getElementById(decodeURIComponent(h.slice(1))))", links)
    assert len(links) >= 10 and dangling == [], dangling

    # it opens with the study at a glance, its first lines on the first screen
    glance = browser.execute_script(
        "window.scrollTo(0, 0); const t = document.querySelector('#at-a-glance table');"
        "if (!t) return null; const r = t.getBoundingClientRect(), row = t.querySelector('tbody tr');"
        "return {top: r.top, row_bottom: row ? row.getBoundingClientRect().bottom : null, "
        "height: window.innerHeight, heading: document.querySelector('#at-a-glance h2').textContent}")
    assert glance is not None, "no table under #at-a-glance"
    assert glance["heading"] == "The study at a glance"
    assert 0 <= glance["top"] and glance["row_bottom"] is not None and glance["row_bottom"] <= glance["height"], glance
    shot = _artifacts(tmp_path) / f"report_cpu_{WIDTH}x{HEIGHT}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0

    # no sideways scrolling at 1366 nor at 1280 pixels, the collapsed summary opened too
    browser.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    for width in (WIDTH, NARROW):
        sizes = _viewport(browser, width)
        assert sizes["inner"] == width and sizes["scroll"] <= sizes["inner"], f"scrolls sideways at {width} px: {sizes}"
        assert sizes["scroll"] <= sizes["client"], f"wider than the window less its scroll bar at {width} px: {sizes}"

    # nothing went wrong on the way
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe
    assert loaded < TIMEOUT_S
