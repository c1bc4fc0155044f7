"""fptlib.study.executor trains runs side by side in worker processes: same results as one at a time
with the same threads, errors surface in the caller, and the worker count is validated."""
import json

import pytest
import torch
from conftest import SHORT_WAIT

from fptlib.config import RunConfig, resolve
from fptlib.runs import PlannedRun, execute, local
from fptlib.training import run_dir_for


def _runs(task="bit-xor", seeds=(0, 1)):
    return [PlannedRun(f"s{s}", resolve(RunConfig(task=task, scale="smoke", seed=s, steps=6))) for s in seeds]


def _curve(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if "second" not in k and k != "time"} for line in lines]


def test_side_by_side_gives_what_one_at_a_time_gives_with_the_same_threads(tmp_path, monkeypatch):
    runs = _runs()
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path / "a"))
    side = execute(runs, progress=False, workers=2)
    curves = {r.row: _curve(run_dir_for(r.config)) for r in runs}
    assert side.test_accuracy.notna().all() and len(side) == 2
    # each worker had threads_per_worker(2) threads; one at a time with as many must agree exactly
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path / "b"))
    before = torch.get_num_threads()
    torch.set_num_threads(local.threads_per_worker(2))
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


def test_the_progress_bar_counts_each_run_as_it_ends(tmp_path, monkeypatch):
    # A short run next to a long one: its tick must come while the long one still trains, not when
    # every run has ended (a day-long grid would otherwise show 0 done until its last run).
    import time
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path))
    short = PlannedRun("short", resolve(RunConfig(task="bit-xor", scale="smoke", seed=0, steps=2)))
    long = PlannedRun("long", resolve(RunConfig(task="bit-xor", scale="smoke", seed=1, steps=400, eval_every=400)))

    ticks = []

    class Bar:  # what tqdm's bar is asked to do
        def update(self, n):
            ticks.append(time.time())

        def set_postfix_str(self, s):
            pass

    local._train_side_by_side([short, long], workers=2, threads=1, bar=Bar())
    long_ended = (run_dir_for(long.config) / "result.json").stat().st_mtime
    assert len(ticks) == 2
    assert ticks[0] < long_ended  # the short run's tick came before the long run wrote its result (measured: 12.6 s)


def test_a_run_failing_in_a_worker_stops_execute_with_its_message(tmp_path, reliability):
    # CIFAR-10 is not in the (empty) data directory: the worker's error reaches the caller intact
    runs = _runs(seeds=(0,)) + [PlannedRun("c", resolve(RunConfig(task="cifar10", scale="smoke", steps=6)))]
    with pytest.raises(Exception, match="fpt data fetch cifar10"):
        execute(runs, progress=False, workers=2)
    assert not (run_dir_for(runs[1].config) / "result.json").exists()
    reliability.fault("a run failing in a worker (its data missing)", kind="failure inside a run")


def test_worker_count_comes_from_the_environment_or_the_machine(monkeypatch, reliability):
    cpu = [PlannedRun("x", resolve(RunConfig(task="bit-xor", scale="cpu", seed=s))) for s in range(8)]
    monkeypatch.setenv(local.WORKERS_ENV, "3")
    assert local.default_workers(cpu) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(local.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match="FPT_WORKERS=.*whole number"):
            local.default_workers(cpu)
        reliability.bad_input(f"FPT_WORKERS={bad}", kind="parameter")
    monkeypatch.delenv(local.WORKERS_ENV)
    assert local.default_workers(_runs()) == 1  # smoke runs take less than starting a worker
    expected = 1 if torch.cuda.is_available() else min(local.usable_cores(), 4)
    assert local.default_workers(cpu) == expected
    assert local.default_workers(cpu[:1]) == expected  # a lone run gets the same threads as any other


def test_an_interrupt_stops_the_workers_and_leaves_their_checkpoints(tmp_path, reliability):
    # Runs far longer than the test, so the interrupt always lands mid-training. That a run continues
    # from such a checkpoint with the uninterrupted numbers is test_reliability's kill-and-resume tests.
    import os
    import signal
    import subprocess
    import sys
    import time

    from fptlib.io import FileLock
    # A background job (nohup, CI) starts with SIGINT ignored, and Python then installs no handler:
    # the script restores the one an interactive session (a terminal, a Jupyter kernel) has.
    code = ("import signal\nfrom fptlib.config import RunConfig, resolve\n"
            "from fptlib.runs import PlannedRun, execute\n"
            "if __name__ == '__main__':\n"
            "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "    execute([PlannedRun(f's{s}', resolve(RunConfig(task='bit-memory', scale='smoke', seed=s, steps=10**6, "
            "eval_every=5))) for s in (0, 1)], progress=False, workers=2)\n")
    script = tmp_path / "go.py"
    script.write_text(code)
    env = {**os.environ, "FPT_RESULTS_DIR": str(tmp_path / "res")}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    runs = tmp_path / "res" / "smoke" / "runs"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(list(runs.glob("*/checkpoint/trainer_state.json"))) < 2:
            assert proc.poll() is None, proc.communicate(timeout=SHORT_WAIT)
            time.sleep(0.2)
        assert len(list(runs.glob("*/checkpoint/trainer_state.json"))) == 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a million-step run behind
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    dirs = sorted(runs.iterdir())
    assert len(dirs) == 2 and not any((d / "result.json").exists() for d in dirs)
    for d in dirs:  # the workers are gone (a live one would hold its run's lock); the checkpoint stays
        with FileLock(d / ".lock", wait=False):
            pass
        assert (d / "checkpoint" / "trainer_state.json").is_file()
    reliability.fault("SIGINT to execute while two workers train", kind="SIGINT/SIGTERM")
