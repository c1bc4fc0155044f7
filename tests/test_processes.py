"""Every process fptlib starts ends with its parent: a SIGTERM to `fpt reproduce` or to a notebook's kernel
ends the side-by-side workers within seconds (their runs keep their last checkpoint); on a GPU machine
each worker sees its own GPU."""
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
from conftest import SHORT_WAIT

from fptlib.runs import local


def _visible(_):
    time.sleep(0.5)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_slots_and_runs_per_gpu(monkeypatch):
    assert local.gpu_slots(2, 2) == ["0", "0", "1", "1"] and local.gpu_slots(1, 1) == ["0"]
    monkeypatch.setenv(local.RUNS_PER_GPU_ENV, "3")
    assert local.runs_per_gpu() == 3
    monkeypatch.setenv(local.RUNS_PER_GPU_ENV, "0")
    with pytest.raises(ValueError, match="FPT_RUNS_PER_GPU='0'"):
        local.runs_per_gpu()


def test_each_worker_sees_only_its_gpu_slot():
    with local.worker_pool(2, ["0", "1"]) as pool:
        seen = dict(pool.map(_visible, range(6)))
    assert len(seen) == 2 and sorted(seen.values()) == ["0", "1"]


LONG = ("from fptlib.config import RunConfig, resolve\nfrom fptlib.runs import PlannedRun, execute\n"
        "execute([PlannedRun(f's{s}', resolve(RunConfig(task='bit-memory', scale='smoke', seed=s, steps=10**6, "
        "eval_every=5))) for s in (0, 1)], progress=False, workers=2)\n")


def _start(tmp_path):
    """`fpt reproduce` of one notebook whose two runs train side by side far longer than the test."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}})
    params = nbformat.v4.new_code_cell("scale = 'smoke'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(LONG)]
    nbformat.write(nb, nbs / "01_long.ipynb")
    env = os.environ | {"FPT_NOTEBOOKS_DIR": str(nbs), "FPT_RESULTS_DIR": str(tmp_path / "res")}
    proc = subprocess.Popen([sys.executable, "-m", "fptlib.cli", "reproduce", "--scale", "smoke"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    runs = tmp_path / "res" / "smoke" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(runs.glob("*/checkpoint/trainer_state.json"))) < 2:
        assert proc.poll() is None, proc.communicate(timeout=SHORT_WAIT)[0].decode()[-3000:]
        time.sleep(0.2)
    assert len(list(runs.glob("*/checkpoint/trainer_state.json"))) == 2
    family = psutil.Process(proc.pid).children(recursive=True)
    workers = [p for p in family if "spawn_main" in " ".join(p.cmdline())]
    kernel = [p for p in family if "ipykernel" in " ".join(p.cmdline())]
    assert len(workers) >= 2 and len(kernel) == 1
    return proc, family, workers, kernel[0], runs


def _all_gone(procs, timeout: float) -> list:
    gone, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("target", ["fpt reproduce", "the kernel"])
def test_sigterm_ends_every_process_started(tmp_path, target, reliability):
    proc, family, workers, kernel, runs = _start(tmp_path)
    try:
        t = time.time()
        (proc if target == "fpt reproduce" else kernel).send_signal(signal.SIGTERM)
        alive = _all_gone(family, timeout=30)
        took = time.time() - t
        assert not alive, f"still running {took:.0f} s after SIGTERM to {target}: {[p.cmdline() for p in alive]}"
        assert took < 30
        proc.wait(timeout=60)
    finally:
        for p in family + [psutil.Process(proc.pid)] if proc.poll() is None else family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
    if target == "fpt reproduce":  # it unwound (SystemExit), so papermill shut the kernel down itself
        assert proc.returncode == 128 + signal.SIGTERM, proc.returncode
    else:  # the kernel gone, its notebook failed
        assert proc.returncode == 1, proc.returncode
    for d in runs.iterdir():  # a run stopped so keeps its last sealed checkpoint, and no result
        assert (d / "checkpoint" / "trainer_state.json").is_file() and not (d / "result.json").exists()
        json.loads((d / "checkpoint" / "trainer_state.json").read_text())
    reliability.fault(f"SIGTERM to {target} while two workers train", kind="SIGINT/SIGTERM")
