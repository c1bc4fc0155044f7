"""Checked in a real browser: JupyterLab as a user opens it, notebooks 04 and 00 run there, and their
widgets (the attention explorer, the run browser) render and answer their controls.

One `jupyter lab` (started as the README documents it, on a temp copy of notebooks/ whose parameters
cells say scale = "smoke", results and figures in temp dirs) serves both tests; each test drives its own
headless Debian Chromium through Selenium 4. Screenshots go to $FPT_ARTIFACTS (else the test's tmp_path).
Needs `apt-get install chromium chromium-driver` and `pip install selenium` (`make test-deps`); fails without them.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import labdriver as lab_driver
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # JupyterLab, a browser, notebooks run


@pytest.fixture(autouse=True)
def _browser_installed():
    if lab_driver.missing() is not None:  # never skipped: a missing browser is a broken set-up, and says how to fix it
        pytest.fail(f"{lab_driver.missing()} (run `make test-deps`)")


SEEDS = (0, 1, 2)  # the tiny runs notebook 00's run browser is given
PRETRAIN = f"""
import sys
from pathlib import Path
from fptlib.config import RunConfig, resolve
from fptlib.training import train
runs = Path(sys.argv[1])
for seed in {SEEDS!r}:
    cfg = resolve(RunConfig(task="bit-xor", scale="smoke", steps=4, seed=seed))
    train(cfg, runs / cfg.run_id(), progress=False)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(url, token, results dir, server log): JupyterLab on a smoke-scale copy of notebooks/, with three finished
    smoke runs of Bit XOR (seeds 0-2) in its results dir."""
    repo = Path(__file__).resolve().parent.parent
    base = tmp_path_factory.mktemp("lab")
    nbdir, results, figures = base / "notebooks", base / "results", base / "figures"
    shutil.copytree(repo / "notebooks", nbdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for stem in ("04_attention_maps", "00_summary"):
        lab_driver.set_parameter(nbdir / f"{stem}.ipynb", "scale", '"smoke"')
    env = lab_driver.lab_env(base, results, figures)
    r = subprocess.run([sys.executable, "-c", PRETRAIN, str(results / "smoke" / "runs")], env=env, cwd=base,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    log = base / "jupyter.log"
    with lab_driver.jupyter_lab(nbdir, env, log) as (url, token):
        yield SimpleNamespace(url=url, token=token, results=results, log=log)


@pytest.fixture
def artifacts(tmp_path) -> Path:
    d = Path(os.environ["FPT_ARTIFACTS"]) if os.environ.get("FPT_ARTIFACTS") else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def browser(lab, tmp_path):
    """A fresh headless Chromium; once it is closed, the notebook's session and kernel are shut down."""
    try:
        with lab_driver.chromium(tmp_path / "chromium-profile") as driver:
            yield driver
    finally:
        lab_driver.end_sessions(lab.url, lab.token)


def on_failure(driver, path: Path, log: Path) -> None:
    """Keep a screenshot of the failure, and show the end of the server's log."""
    try:
        driver.save_screenshot(str(path))
    except Exception:  # a broken browser must not hide the failure itself
        pass
    print(f"--- end of {log}:\n{log.read_text(errors='replace')[-4000:]}")


def run_notebook(driver, url, token, name, timeout):
    lab_driver.open_notebook(driver, url, token, name)
    lab_driver.run_all_cells(driver)
    lab_driver.wait_until_executed(driver, timeout)
    return lab_driver.wait_for_widget(driver, 60)


def test_attention_explorer_in_jupyterlab(lab, browser, artifacts):
    url, token = lab.url, lab.token
    t0 = time.monotonic()
    try:
        box = run_notebook(browser, url, token, "04_attention_maps.ipynb", timeout=240)
        lab_driver.show(browser, box)
        browser.save_screenshot(str(artifacts / "lab_04_explorer_layer1.png"))

        layer = lab_driver.labelled(box, "widget-slider", "layer")
        readout = layer.find_element("css selector", ".widget-readout")
        assert readout.text.strip() == "1"
        before = lab_driver.image_state(browser, box)
        assert before["complete"] and before["width"] > 200, before
        assert "layer 1</b>" in box.get_attribute("innerHTML")

        # the user's move: focus the slider's handle, press the right arrow
        handle = layer.find_element("css selector", ".noUi-handle")
        browser.execute_script("arguments[0].focus();", handle)
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()

        lab_driver.wait_for(browser, lambda d: readout.text.strip() == "2", 20, "the layer readout to show 2")
        after = lab_driver.wait_for(
            browser, lambda d: (s := lab_driver.image_state(d, box))["src"] != before["src"] and s["complete"] and s,
            60, "the heatmap to be redrawn")
        assert after["digest"] != before["digest"], "the heatmap's pixels did not change with the layer"
        assert "per-layer table, layer 2" in box.text
        lab_driver.show(browser, box)
        browser.save_screenshot(str(artifacts / "lab_04_explorer_layer2.png"))
    except BaseException:
        on_failure(browser, artifacts / "lab_04_failure.png", lab.log)
        raise
    finally:
        print(f"notebook 04 in JupyterLab: {time.monotonic() - t0:.0f} s")


def test_run_browser_in_jupyterlab(lab, browser, artifacts):
    url, token = lab.url, lab.token
    t0 = time.monotonic()
    try:
        box = run_notebook(browser, url, token, "00_summary.ipynb", timeout=120)
        lab_driver.show(browser, box)
        browser.save_screenshot(str(artifacts / "lab_00_browser_all_seeds.png"))

        from selenium.webdriver.support.ui import Select
        seed_box = lab_driver.labelled(box, "widget-select-multiple", "seed")
        seeds = Select(seed_box.find_element("css selector", "select"))
        assert [o.text for o in seeds.options] == [str(s) for s in SEEDS]
        assert [o.text for o in seeds.all_selected_options] == [str(s) for s in SEEDS]
        table = box.find_element("css selector", ".widget-html table")
        before_table, before_img = table.text, lab_driver.image_state(browser, box)
        assert f"{len(SEEDS)} of {len(SEEDS)} runs" in box.text and "0,1,2" in before_table

        seeds.deselect_by_visible_text("1")  # the user's click on seed 1

        lab_driver.wait_for(browser, lambda d: f"2 of {len(SEEDS)} runs" in box.text, 30,
                            "the run count to show 2 of 3")
        after_table = lab_driver.wait_for(
            browser, lambda d: (t := box.find_element("css selector", ".widget-html table").text) != before_table and t,
            30, "the table to change")
        assert "0,2" in after_table and "0,1,2" not in after_table, after_table
        after_img = lab_driver.wait_for(
            browser, lambda d: (s := lab_driver.image_state(d, box))["src"] != before_img["src"]
            and s["complete"] and s, 60, "the curves to be redrawn")
        assert after_img["digest"] != before_img["digest"], "the curves' pixels did not change with the selection"
        lab_driver.show(browser, box)
        browser.save_screenshot(str(artifacts / "lab_00_browser_seed1_off.png"))
    except BaseException:
        on_failure(browser, artifacts / "lab_00_failure.png", lab.log)
        raise
    finally:
        print(f"notebook 00 in JupyterLab: {time.monotonic() - t0:.0f} s")
