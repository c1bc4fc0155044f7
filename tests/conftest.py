import os
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
