"""experiments.execute training runs side by side in worker processes: same results as one at a time
with the same threads, errors surface in the caller, and the worker count is validated."""
import json

import pytest
import torch

from fptlib import experiments as E
from fptlib.config import RunConfig, resolve
from fptlib.experiments import Run, execute, run_dir_for


def _runs(task="bit-xor", seeds=(0, 1)):
    return [Run(f"s{s}", resolve(RunConfig(task=task, scale="smoke", seed=s, steps=6))) for s in seeds]


def _curve(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if "second" not in k and k != "time"} for line in lines]


def test_side_by_side_gives_what_one_at_a_time_gives_with_the_same_threads(tmp_path, monkeypatch):
    runs = _runs()
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path / "a"))
    side = execute(runs, progress=False, workers=2)
    curves = {r.row: _curve(run_dir_for(r.config)) for r in runs}
    assert side.test_accuracy.notna().all() and len(side) == 2
    # each worker had usable_cores() // 2 threads; one at a time with as many must agree exactly
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path / "b"))
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, E.usable_cores() // 2))
    try:
        alone = execute(runs, progress=False, workers=1)
    finally:
        torch.set_num_threads(before)
    assert list(side.test_accuracy) == list(alone.test_accuracy)
    assert {r.row: _curve(run_dir_for(r.config)) for r in runs} == curves
    # a second call finds both cached and trains nothing
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path / "a"))
    stamp = {r.row: (run_dir_for(r.config) / "result.json").stat().st_mtime_ns for r in runs}
    execute(runs, progress=False, workers=2)
    assert {r.row: (run_dir_for(r.config) / "result.json").stat().st_mtime_ns for r in runs} == stamp


def test_a_run_failing_in_a_worker_stops_execute_with_its_message(tmp_path, reliability):
    # CIFAR-10 is not in the (empty) data directory: the worker's error reaches the caller intact
    reliability.bad_input("a failing run among runs side by side")
    runs = _runs(seeds=(0,)) + [Run("c", resolve(RunConfig(task="cifar10", scale="smoke", steps=6)))]
    with pytest.raises(Exception, match="fpt data fetch cifar10"):
        execute(runs, progress=False, workers=2)
    assert not (run_dir_for(runs[1].config) / "result.json").exists()


def test_worker_count_comes_from_the_environment_or_the_machine(monkeypatch, reliability):
    cpu = [Run("x", resolve(RunConfig(task="bit-xor", scale="cpu", seed=s))) for s in range(8)]
    monkeypatch.setenv(E.WORKERS_ENV, "3")
    assert E.default_workers(cpu) == 3
    for bad in ("0", "two", "-1"):
        reliability.bad_input(f"FPT_WORKERS={bad}")
        monkeypatch.setenv(E.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match="FPT_WORKERS=.*whole number"):
            E.default_workers(cpu)
    monkeypatch.delenv(E.WORKERS_ENV)
    assert E.default_workers(_runs()) == 1  # smoke runs take less than starting a worker
    expected = 1 if torch.cuda.is_available() else min(E.usable_cores(), 4)
    assert E.default_workers(cpu) == expected
    assert E.default_workers(cpu[:1]) == expected  # a lone run gets the same threads as any other
