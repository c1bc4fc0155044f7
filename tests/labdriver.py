"""Helpers for tests/test_lab.py: a JupyterLab server on a temp copy of notebooks/, and headless Chromium
driving it with Selenium as a user would (open a notebook, Run > Run All Cells, use the widgets).

Nothing here downloads anything: the browser is Debian's /usr/bin/chromium with /usr/bin/chromedriver
(Selenium Manager is never asked), and the server only listens on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--window-size=1400,1000")
VENV_BIN = Path(sys.executable).parent  # the tests' interpreter: the project's .venv/bin


def missing() -> str | None:
    """Why the browser test cannot run here (None: it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for p in (CHROMIUM, CHROMEDRIVER):
        if not p.exists():
            return f"{p} is missing (apt-get install chromium chromium-driver)"
    if not (VENV_BIN / "jupyter").exists():
        return f"{VENV_BIN / 'jupyter'} is missing"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_parameter(nb: Path, name: str, value: str) -> None:
    """Rewrite `name: type = ...` (or `name = ...`) in the notebook's `parameters` cell to `= value`."""
    d = json.loads(nb.read_text())
    cell = next(c for c in d["cells"] if "parameters" in c.get("metadata", {}).get("tags", ()))
    src = "".join(cell["source"])
    new, n = re.subn(rf"^({re.escape(name)}\s*(?::[^=\n]+)?=\s*)[^#\n]*?(\s*(?:#.*)?)$", rf"\g<1>{value}\g<2>",
                     src, count=1, flags=re.M)
    assert n == 1, f"no parameter {name!r} in the parameters cell of {nb.name}:\n{src}"
    cell["source"] = new.splitlines(keepends=True)
    nb.write_text(json.dumps(d, indent=1) + "\n")


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the server's process group (the server shuts its kernels down), then SIGKILL to what is
    left of the group. Kernels run in sessions of their own, but ipykernel's parent poller ends them when
    the server is gone, even killed."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left, even when the server exited
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


@contextmanager
def jupyter_lab(notebook_dir: Path, env: dict, log: Path, timeout: float = 90.0):
    """`jupyter lab --no-browser` on 127.0.0.1 (a free port, a random token) in its own session; yields
    (base_url, token) once /api/status answers; always stopped (SIGTERM to its group, then SIGKILL)."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", "--allow-root", f"--notebook-dir={notebook_dir}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc)


def lab_env(base: Path, results: Path, figures: Path) -> dict:
    """The server's environment: outputs, settings, workspaces and runtime files all under `base`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FPT_", "JUPYTER", "JPY_"))}
    settings = base / "lab-settings"
    notif = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True, exist_ok=True)
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news toast, no fetch
    env.update(FPT_RESULTS_DIR=str(results), FPT_FIGURES_DIR=str(figures), FPT_DATA_DIR=str(base / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(base / "lab-workspaces"),
               JUPYTER_RUNTIME_DIR=str(base / "jupyter-runtime"), IPYTHONDIR=str(base / "ipython"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextmanager
def chromium(user_data_dir: Path, page_load_timeout: float = 60.0):
    """Headless Debian Chromium under Selenium 4, always quit (its processes with it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in (*CHROME_ARGS, f"--user-data-dir={user_data_dir}"):
        opts.add_argument(a)
    service = Service(str(CHROMEDRIVER), log_output=str(user_data_dir.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        driver.set_page_load_timeout(page_load_timeout)
        driver.set_script_timeout(30)
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
            shutil.rmtree(user_data_dir, ignore_errors=True)


# ---- driving JupyterLab ------------------------------------------------------------------------------
def wait_for(driver, cond, timeout: float, what: str, poll: float = 0.5):
    """Poll cond(driver) until it returns something truthy; TimeoutError naming `what` otherwise."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            v = cond(driver)
            if v:
                return v
        except StaleElementReferenceException:
            pass  # the DOM moved under us: ask again
        except WebDriverException as e:
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}" + (f" (last error: {last.msg})" if last else ""))
        time.sleep(poll)


def api(base: str, token: str, path: str, method: str = "GET"):
    """One call to the server's REST API (JSON answer, or None)."""
    req = urllib.request.Request(f"{base}{path}?token={token}", method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else None


def end_sessions(base: str, token: str) -> None:
    """Shut down every notebook session (and its kernel) the server holds; best effort."""
    try:
        for s in api(base, token, "/api/sessions"):
            api(base, token, f"/api/sessions/{s['id']}", "DELETE")
    except OSError:
        pass


def open_notebook(driver, base: str, token: str, name: str, timeout: float = 120.0) -> None:
    """Open notebooks/<name> in JupyterLab and wait until its kernel is idle, and settled: one session
    for the notebook, whose kernel stays the same for a few seconds (JupyterLab sometimes starts a kernel,
    then replaces it, just after opening; a Run All sent in between runs only the first cell)."""
    # a workspace of its own, reset: only this notebook opens, whatever was open before
    driver.get(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}")
    wait_for(driver, lambda d: d.execute_script(
        "return document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length"), timeout, f"{name} to show its cells")
    seen = {}

    def settled(d):
        if kernel_status(d) != "idle":
            return False
        ks = [s["kernel"] for s in api(base, token, "/api/sessions") if s.get("path") == name and s.get("kernel")]
        if len(ks) != 1 or ks[0].get("execution_state") != "idle" or not ks[0].get("connections"):
            seen.clear()
            return False
        if seen.get("id") != ks[0]["id"]:
            seen.update(id=ks[0]["id"], since=time.monotonic())
        return time.monotonic() - seen["since"] >= 3.0

    wait_for(driver, settled, timeout, f"the kernel of {name} to be idle and settled")


def kernel_status(driver) -> str:
    """The current notebook's kernel status as the toolbar shows it ('idle', 'busy', ... or '')."""
    return driver.execute_script("""
        const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
        if (!el) return '';
        const t = (el.getAttribute('title') || el.getAttribute('aria-label') || el.textContent || '').toLowerCase();
        for (const s of ['idle', 'busy', 'starting', 'restarting', 'unknown', 'dead', 'connecting'])
            if (t.includes(s)) return s;
        return t;""")


def run_all_cells(driver, timeout: float = 20.0) -> None:
    """Run > Run All Cells, from the menu bar."""
    from selenium.webdriver.common.by import By

    menu = wait_for(driver, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                                            if e.text.strip() == "Run"), None), timeout, "the Run menu")
    menu.click()
    item = wait_for(driver, lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, '.lm-Menu-item[data-command="runmenu:run-all"]')
         if e.is_displayed()), None), timeout, "Run > Run All Cells")
    item.click()


CELL_STATE_JS = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
const cells = [...panel.querySelectorAll('.jp-CodeCell')];
const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
const errors = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.textContent).filter(t => t.includes('Traceback') || /^-{20,}/m.test(t));
return {prompts: prompts, errors: errors};
"""


def wait_until_executed(driver, timeout: float, stall: float = 30.0) -> list[str]:
    """Wait until every code cell has run (no [*], the last one numbered); fail at the first traceback,
    or when nothing runs any more for `stall` seconds (the kernel idle, no [*]) before the last cell."""
    state, idle_since = {}, [None]

    def done(d):
        state.update(d.execute_script(CELL_STATE_JS))
        if state["errors"]:
            raise AssertionError("a cell failed in JupyterLab:\n" + state["errors"][0][-3000:])
        p = state["prompts"]
        if p and not any("*" in s for s in p) and re.search(r"\[\d+\]", p[-1]):
            return p
        if any("*" in s for s in p) or kernel_status(d) != "idle":
            idle_since[0] = None
        elif idle_since[0] is None:
            idle_since[0] = time.monotonic()
        elif time.monotonic() - idle_since[0] > stall:
            raise AssertionError(f"Run All stopped: the kernel has been idle for {stall:.0f} s with cells "
                                 f"left unrun; prompts: {p}")
        return None

    try:
        return wait_for(driver, done, timeout, "every cell to run")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; prompts now: {state.get('prompts')}") from None


def last_output(driver):
    """The output area of the notebook's last code cell."""
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    return cells[-1].find_element(By.CSS_SELECTOR, ".jp-Cell-outputArea")


def wait_for_widget(driver, timeout: float):
    """The ipywidgets VBox rendered in the last cell's output, once its image has loaded. A widget
    manager that is missing (or too old for the kernel's ipywidgets) leaves text there instead: that
    text is in the error."""
    from selenium.webdriver.common.by import By

    def rendered(d):
        out = last_output(d)
        boxes = out.find_elements(By.CSS_SELECTOR, ".jupyter-widgets.widget-vbox")
        if boxes and d.execute_script(
                "const i = arguments[0].querySelector('img'); return !!i && i.complete && i.naturalWidth > 0",
                boxes[0]):
            return boxes[0]
        return None

    try:
        return wait_for(driver, rendered, timeout, "the widget to render")
    except TimeoutError as e:
        text = last_output(driver).text
        raise AssertionError(f"{e}; the last cell's output shows instead: {text[:1500]!r}") from None


def labelled(box, cls: str, label: str):
    """The ipywidget of class `cls` (widget-slider, widget-select-multiple...) whose description is `label`."""
    from selenium.webdriver.common.by import By

    return box.find_element(By.XPATH, f".//div[contains(concat(' ', @class, ' '), ' {cls} ')]"
                                      f"[./label[normalize-space()='{label}']]")


def image_state(driver, box) -> dict:
    """The widget's (first) image: its src (a new blob: URL on every change), a digest of its pixels, size."""
    return driver.execute_script("""
        const img = arguments[0].querySelector('img');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        const px = ctx.getImageData(0, 0, c.width, c.height).data;
        let h = 2166136261 >>> 0;
        for (let i = 0; i < px.length; i += 1) { h ^= px[i]; h = Math.imul(h, 16777619) >>> 0; }
        return {src: img.src, digest: h, width: c.width, height: c.height,
                complete: img.complete && img.naturalWidth > 0};""", box)


def show(driver, el) -> None:
    """Scroll el to the top of the notebook's view."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", el)
    time.sleep(0.5)
