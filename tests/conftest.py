import os
import re
import sys
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


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# ---- reliability accounting -------------------------------------------------------------------
# Tests that take the `reliability` fixture record each fault they inject and each bad input they
# try. Tests elsewhere that predate it are counted once per test (each parametrized case once) by
# their names, so adding such a test with a telling name keeps the count honest without editing it.
FAULT_TEST_NAMES = re.compile(r"kill|interrupt|non_finite")
BAD_INPUT_TEST_NAMES = re.compile(
    r"refuse|unknown|bad_|wrong|missing|corrupt|unwritable|must_divide|longer_than|in_use|truncated|"
    r"malformed|impossible|unsafe|unclaimed|without_header|outside|damage|misplaced|no_server|"
    r"explains_the_offline|pickles_with_code|without_checksum")
NOT_BAD_INPUT = {"test_vocabulary_is_the_papers_25_letters_plus_padding_and_unknown",  # a token's name
                 "test_median_is_numpys_truncated_median"}  # truncated division, not a file


class Reliability:
    def __init__(self, config):
        self.config = config

    def fault(self, what: str = "") -> None:
        """One fault injected (a kill, a full disk, a NaN...)."""
        self.config._fpt_reliability["faults"] += 1

    def bad_input(self, what: str = "") -> None:
        """One bad input tried (expected to be refused with a clear message)."""
        self.config._fpt_reliability["bad_inputs"] += 1


def pytest_configure(config):
    config._fpt_reliability = {"faults": 0, "bad_inputs": 0, "faults_by_name": 0, "bad_inputs_by_name": 0}


@pytest.fixture
def reliability(request) -> Reliability:
    return Reliability(request.config)


def pytest_runtest_call(item):
    if "reliability" in getattr(item, "fixturenames", ()):
        return
    name = getattr(item, "originalname", None) or item.name
    counts = item.config._fpt_reliability
    if FAULT_TEST_NAMES.search(name):
        counts["faults_by_name"] += 1
    elif BAD_INPUT_TEST_NAMES.search(name) and name not in NOT_BAD_INPUT:
        counts["bad_inputs_by_name"] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    c = getattr(config, "_fpt_reliability", None)
    if not c or not any(c.values()):
        return
    faults, bad = c["faults"] + c["faults_by_name"], c["bad_inputs"] + c["bad_inputs_by_name"]
    terminalreporter.write_line(
        f"reliability: {faults} faults injected, {bad} bad inputs tried "
        f"({c['faults']} + {c['bad_inputs']} recorded one by one, {c['faults_by_name']} + "
        f"{c['bad_inputs_by_name']} counted once per test by name)")
