import json
import os
import sys
import threading
from pathlib import Path

import pytest

# Tests never write into the repository's results/ or figures/, and never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("FPT_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("FPT_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def fpt_cmd():
    """The installed console script, run with the interpreter running the tests."""
    return [sys.executable, "-m", "fptlib.cli"]


def numbers(result: dict) -> dict:
    """The parts of a result that must repeat exactly (timings excluded)."""
    from fptlib.training import result_without_timing
    return result_without_timing(result)


# metrics.jsonl fields that measure time, not the learning: left out when curves are compared
WALL_CLOCK_FIELDS = ("elapsed_seconds",)


def curve(run_dir: Path) -> list[dict]:
    """A run's learning curve (metrics.jsonl), every field but the wall-clock ones."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in WALL_CLOCK_FIELDS} for x in lines if x.strip()]


# Every wait on a child process in the tests is bounded: these are the limits the tests use, sized for
# CI's two cores. On a slower or busier machine FPT_TEST_TIME_SCALE=N multiplies them, and every test's
# pytest-timeout limit with them.
TIME_SCALE = float(os.environ.get("FPT_TEST_TIME_SCALE", "1"))
SHORT_WAIT = 120 * TIME_SCALE      # a command that answers at once (--help, a refusal) or a short training run
LONG_WAIT = 900 * TIME_SCALE       # a command that trains or executes a notebook or two
REPRODUCE_WAIT = 2100 * TIME_SCALE  # `fpt reproduce --scale smoke` of every notebook


def read_line(stream, timeout: float = SHORT_WAIT) -> str:
    """The next line from a child's pipe, or an AssertionError after `timeout` seconds instead of a hang."""
    got: list = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        raise AssertionError(f"no line from the child process within {timeout} s")
    return got[0]


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# ---- reliability accounting -------------------------------------------------------------------
# A test that injects a fault or tries a bad input records it through the `reliability` fixture,
# once the fault has happened or the input has been tried, and after its handling has been checked.
# An event counts only if the test that recorded it passed: a failing test adds nothing. Nothing is
# counted by a test's name. Each event has a kind (below); the suite ends with the totals and the
# count per kind, the same on every run of the same tests.
FAULT_KINDS = {
    "SIGKILL": "a training process killed outright (at a named fault point, or at a random moment of training)",
    "SIGINT/SIGTERM": "an interrupt or termination signal to a process tree",
    "SLURM cancel": "a queued SLURM job cancelled while it trains",
    "full disk": "ENOSPC while a checkpoint or the result is written",
    "non-finite loss": "a NaN or infinite training loss",
    "failure inside a run": "an error raised inside a notebook or inside a worker's run",
    "concurrent processes": "two processes working on one run directory or one table at once",
    "network failure": "no server at the address, or the connection cut mid-download",
}
BAD_INPUT_KINDS = {
    "command line": "an invalid flag, choice or value given to fpt",
    "parameter": "an invalid value through the Python API, a notebook parameter or an environment variable",
    "damaged checkpoint": "a checkpoint with a file missing, truncated or changed, or of another config",
    "wrong run directory": "a run directory of another config, in use or unwritable, or its result.json or "
                           "config.json damaged or foreign",
    "corrupt data": "a truncated, corrupt, mislabelled or unsafe data file, archive, pickle or cache",
    "missing data": "data, weights or a tool that is not on this machine",
    "mixed results": "results of different code or data versions put in one table",
}


class Reliability:
    """What one test records; committed to the suite's totals only if the test passes."""

    def __init__(self, node):
        self.node = node
        node._fpt_reliability_events = []

    def _record(self, side: str, kinds: dict, kind: str, what: str) -> None:
        if kind not in kinds:
            raise ValueError(f"unknown {side} kind {kind!r}; choose one of {', '.join(kinds)} (tests/conftest.py)")
        self.node._fpt_reliability_events.append((side, kind, what))

    def fault(self, what: str, *, kind: str) -> None:
        """One fault injected (a kill, a full disk, a NaN...), recorded once it has happened and been handled."""
        self._record("faults", FAULT_KINDS, kind, what)

    def bad_input(self, what: str, *, kind: str) -> None:
        """One bad input tried, recorded once it has been refused (or otherwise handled) as expected."""
        self._record("bad inputs", BAD_INPUT_KINDS, kind, what)


def pytest_configure(config):
    config._fpt_reliability = {"faults": {}, "bad inputs": {}, "tests": 0}


def pytest_collection_modifyitems(config, items):
    """FPT_TEST_TIME_SCALE stretches each test's pytest-timeout limit (its marker's, else the default)."""
    if TIME_SCALE == 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        m = item.get_closest_marker("timeout")
        limit = float(m.args[0] if m.args else m.kwargs.get("timeout", default)) if m else default
        if limit:
            item.add_marker(pytest.mark.timeout(limit * TIME_SCALE), append=False)


@pytest.fixture
def reliability(request) -> Reliability:
    return Reliability(request.node)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    events = getattr(item, "_fpt_reliability_events", None)
    if report.when != "call" or not events:
        return
    if report.passed:
        counts = item.config._fpt_reliability
        counts["tests"] += 1
        for side, kind, _ in events:
            counts[side][kind] = counts[side].get(kind, 0) + 1
    events.clear()


def reliability_lines(counts: dict) -> list[str]:
    """The closing lines: the totals, then the count per kind (largest first, ties by name)."""
    faults, bad = (sum(counts[side].values()) for side in ("faults", "bad inputs"))
    lines = [f"reliability: {faults} faults injected, {bad} bad inputs tried "
             f"(recorded by {counts['tests']} passing tests)"]
    for side in ("faults", "bad inputs"):
        if counts[side]:
            kinds = sorted(counts[side].items(), key=lambda kv: (-kv[1], kv[0]))
            lines.append(f"  {side}: " + ", ".join(f"{k} {n}" for k, n in kinds))
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    c = getattr(config, "_fpt_reliability", None)
    if not c or not c["tests"]:
        return
    for line in reliability_lines(c):
        terminalreporter.write_line(line)
