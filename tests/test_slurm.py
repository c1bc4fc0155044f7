"""The SLURM executor against a real one-node SLURM (scripts/slurm-local; .ci/run starts it, and these
tests start it themselves where it is not up): the same numbers as local execution, a cancelled job
resumed from its checkpoint, a failing job that names its error and log while the others finish."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import LONG_WAIT, curve

from fptlib.config import RunConfig, resolve
from fptlib.runs import slurm
from fptlib.training import RunError, run_dir_for, train

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # a cluster started, reproductions through it


def _up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=20).stdout.strip() in ("idle", "mixed", "allocated")
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """The one-node cluster, started here (and stopped afterwards) if it is not up already."""
    started = False
    if not _up():
        r = subprocess.run([str(ROOT / "scripts" / "slurm-local"), "start"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        started = True
    yield
    if started:
        subprocess.run([str(ROOT / "scripts" / "slurm-local"), "stop"], capture_output=True, timeout=300)


def _numbers(res: dict) -> dict:
    from fptlib.training import result_without_timing
    return result_without_timing(res)


def _wait_until(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_reproduce_through_slurm_writes_the_numbers_of_local_execution(tmp_path, fpt_cmd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPT_")} | {"FPT_DATA_DIR": str(tmp_path / "d")}
    out = {}
    # one torch thread per run both ways: two local workers on two cores, one CPU per SLURM job
    for name, extra in (("local", ["--workers", "2"]), ("slurm", ["--executor", "slurm", "--cpus-per-task", "1"])):
        r = subprocess.run(fpt_cmd + ["reproduce", "--scale", "smoke", "--only", "01", "--results-dir",
                                      str(tmp_path / name), "--figures-dir", str(tmp_path / f"{name}-fig")] + extra,
                           capture_output=True, text=True, timeout=LONG_WAIT, env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out[name] = {p.parent.name: json.loads(p.read_text())
                     for p in (tmp_path / name / "smoke" / "runs").glob("*/result.json")}
    assert len(out["local"]) >= 8 and sorted(out["local"]) == sorted(out["slurm"])
    for run_id, res in out["local"].items():
        assert _numbers(out["slurm"][run_id]) == _numbers(res), run_id
        assert out["slurm"][run_id]["torch_threads"] == res["torch_threads"] == 1
    ledger = json.loads((tmp_path / "slurm" / "smoke" / "logs" / "jobs.json").read_text())
    assert set(ledger) == set(out["slurm"]) and all(Path(e["stdout"]).is_file() for e in ledger.values())


def test_a_cancelled_job_resubmitted_resumes_from_its_checkpoint(tmp_path, reliability):
    cfg = resolve(RunConfig(task="bit-memory", scale="smoke", steps=400, eval_every=10))
    d = run_dir_for(cfg)
    slurm.submit_and_follow([cfg], "smoke", slurm.Resources(), wait=False, progress=False)
    job = slurm.read_ledger("smoke")[cfg.run_id()]["job_id"]
    try:
        _wait_until(lambda: (d / "checkpoint" / "trainer_state.json").is_file(), 300, "a first checkpoint")
        subprocess.run(["scancel", job], check=True, timeout=60)  # SIGTERM: the job stops at once
        _wait_until(lambda: job not in slurm.squeue_states([job]), 20, "the cancelled job to leave the queue")
    finally:
        subprocess.run(["scancel", job], timeout=60)
    assert not (d / "result.json").exists()
    state = slurm.states([cfg], "smoke")
    assert state.state[0] == "stopped" and "resumes from its checkpoint" in state.detail[0]
    step_at_cancel = json.loads((d / "checkpoint" / "trainer_state.json").read_text())["step"]
    assert 0 < step_at_cancel < cfg.steps
    slurm.submit_and_follow([cfg], "smoke", slurm.Resources(), wait=True, progress=False)  # submitted again: resumes
    resumed = json.loads((d / "result.json").read_text())
    import torch
    torch.set_num_threads(1)  # as the job: one CPU
    reference = train(cfg, tmp_path / "uninterrupted", progress=False)
    assert _numbers(resumed) == _numbers(reference)
    assert curve(d) == curve(tmp_path / "uninterrupted")
    assert len(slurm.read_ledger("smoke")) == 1  # the one run, its entry now the second job's
    assert slurm.read_ledger("smoke")[cfg.run_id()]["job_id"] != job
    reliability.fault(f"scancel at step {step_at_cancel}", kind="SLURM cancel")


def test_a_failing_job_names_its_error_and_log_and_the_others_finish(tmp_path, reliability):
    good = resolve(RunConfig(task="bit-xor", scale="smoke", steps=4))
    bad = resolve(RunConfig(task="bit-memory", scale="smoke", steps=4, task_options={"patch_size": 7}))
    with pytest.raises(RunError) as e:
        slurm.submit_and_follow([good, bad], "smoke", slurm.Resources(), wait=True, progress=False)
    msg = str(e.value)
    log = slurm.read_ledger("smoke")[bad.run_id()]["stderr"]
    assert f"run {bad.run_id()}: failed" in msg and "patch_size=7" in msg and log in msg, msg
    assert Path(log).is_file() and "patch_size=7" in Path(log).read_text()
    assert good.run_id() not in msg and (run_dir_for(good) / "result.json").is_file()
    assert not (run_dir_for(bad) / "result.json").exists()
    reliability.fault("a SLURM job failing (patch_size=7)", kind="failure inside a run")


def test_status_lists_each_run_state(tmp_path, fpt_cmd):
    r = subprocess.run(fpt_cmd + ["status", "--scale", "smoke", "--only", "01"], capture_output=True, text=True,
                       timeout=300, env=os.environ | {"FPT_RESULTS_DIR": str(tmp_path / "r")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("scale smoke:") and "missing" in r.stdout


@pytest.mark.parametrize("bad", [{"partitoin": "x"}])
def test_unknown_resources_are_refused(bad, reliability):
    with pytest.raises(ValueError, match="unknown SLURM resource.*partitoin"):
        slurm.Resources.from_dict(bad)
    reliability.bad_input(f"SLURM resources {bad}", kind="parameter")


def test_without_waiting_a_notebook_returns_and_picks_the_runs_up_next_time():
    from fptlib.runs import RunsPending
    from fptlib.study.base import Tables1And2
    study = Tables1And2(scale="smoke", tasks=["bit-xor"], seeds=[0], steps=4, executor="slurm", wait=False,
                        progress=False)
    with pytest.raises(RunsPending, match="2 of 2 runs are queued or running on SLURM"):
        study.execute()
    jobs = {k: v["job_id"] for k, v in slurm.read_ledger("smoke").items()}
    configs = [r.config for r in study.runs()]
    _wait_until(lambda: (slurm.states(configs, "smoke").state == "done").all(), 300, "both jobs to finish")
    runs = study.execute()  # reads them, submits nothing
    assert sorted(runs.row) == ["FPT", "Random"] and runs.test_accuracy.notna().all()
    assert {k: v["job_id"] for k, v in slurm.read_ledger("smoke").items()} == jobs
