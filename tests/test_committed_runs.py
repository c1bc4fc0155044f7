"""Committed `cpu` results keep their numbers: a few short committed runs, retrained from their own
config.json with one thread (as every committed run was), give the same test accuracy and the same
learning curve. Losses may differ in their last bits on another CPU instruction set than the one
that computed them (tests/test_golden.py says why); accuracies must be exact."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

RUNS = Path(__file__).resolve().parent.parent / "results" / "cpu" / "runs"
# Output-only runs on cached features: the shortest committed runs (seconds each).
SHORT = ["listops__minilm__pretrained__output__s0__a2e148bcdd0b", "listops__minilm__random__output__s0__f274e548fe7d",
         "mnist__minilm__pretrained__output__s0__9d4767f52b79"]


def _curve(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHORT)
def test_a_committed_run_retrains_to_its_numbers(name, tmp_path):
    from fptlib.config import RunConfig
    from fptlib.training import train
    src = RUNS / name
    config = json.loads((src / "config.json").read_text())
    cfg = RunConfig.from_dict({k: v for k, v in config.items() if k != "config_hash"})
    assert cfg.hash() == config["config_hash"] == name.rsplit("__", 1)[1]  # the run id still names this config
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        new = train(cfg, tmp_path / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    old = json.loads((src / "result.json").read_text())
    assert (new["test_accuracy"], new["train_accuracy"], new["data_hash"]) == (
        old["test_accuracy"], old["train_accuracy"], old["data_hash"])
    a, b = _curve(src), _curve(tmp_path / "run")
    assert [(r["step"], r["val_accuracy"]) for r in a] == [(r["step"], r["val_accuracy"]) for r in b]
    for x, y in zip(a, b):
        for k in ("train_loss", "val_loss"):
            assert (x[k] is None and y[k] is None) or math.isclose(x[k], y[k], rel_tol=1e-5), (x, y)
