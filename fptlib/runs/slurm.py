"""The SLURM backend, through submitit: one job per missing run, submitted together as one job array.

A job trains its run with `train(resume=True)`, so a job that is preempted or hits its time limit is
requeued by submitit (the callable is `Checkpointable`) and continues from the run's last sealed
checkpoint; a job cancelled by hand (`scancel`) leaves that checkpoint too, and submitting the run again
continues from it. Two jobs never write into one run directory: `train` holds the directory's lock
(fcntl, which a shared filesystem must support: NFS with its lock manager, Lustre, GPFS, BeeGFS), and
a run already queued or running is not submitted twice (the ledger below, checked against `squeue`).

Everything lives under results/<scale>/logs/: one folder per job (submitit's stdout, stderr and
pickles, named <array id>_<index>) and `jobs.json`, the ledger {run id: job id, log paths, run
directory}. The cluster keeps no accounting database in general, so job states come from `squeue`
(queued, running) and from what a job left behind (a result, a checkpoint, an error in its log).
"""
from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..io import FileLock, read_json, write_json_atomic
from ..paths import results_dir
from ..training import RunDir, RunError, train
from . import PlannedRun, RunsPending

OPTIONS = ("slurm", "wait")  # of execute, beyond the runs and progress
LEDGER = "jobs.json"
POLL_SECONDS = 2.0


@dataclass
class Resources:
    """What each job asks SLURM for; unset fields take the defaults below or fpt plan's estimate."""

    partition: str | None = None
    timeout_min: int | None = None      # None: from fpt plan's calibrated seconds where known, else 240
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem_gb: float | None = None
    array_parallelism: int = 256        # jobs of the array running at once

    @classmethod
    def from_dict(cls, d: dict | None) -> "Resources":
        known = set(cls.__dataclass_fields__)
        unknown = set(d or {}) - known
        if unknown:
            raise ValueError(f"unknown SLURM resource(s) {sorted(unknown)}; choose from {sorted(known)}")
        return cls(**(d or {}))


def logs_dir(scale: str) -> Path:
    return results_dir(scale) / "logs"


class TrainJob:
    """What a job runs: one run, resumed from its last checkpoint. submitit calls `checkpoint` on
    preemption or time-out and requeues what it returns: the same run, which resumes."""

    def __call__(self, cfg: RunConfig, run_dir: str) -> str:
        import signal

        import torch

        def stop(signum, frame):  # scancel, preemption, time limit: stop now; the last checkpoint stays
            raise SystemExit(128 + signum)
        # submitit only logs SIGTERM (its requeue comes on USR2 first), so a cancelled job would train on
        # until SLURM's SIGKILL; stopping at once keeps what a cancel means
        signal.signal(signal.SIGTERM, stop)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and cpus.isdigit():  # a run's numbers depend on its thread count: the CPUs it was given
            torch.set_num_threads(int(cpus))
        train(cfg, run_dir, resume=True, progress=False, wait_for_lock=True)
        return run_dir

    def checkpoint(self, cfg: RunConfig, run_dir: str):
        import submitit
        return submitit.helpers.DelayedSubmission(TrainJob(), cfg, run_dir)


def _timeout(configs: list[RunConfig], scale: str) -> int:
    """Minutes per job: 1.5x the longest calibrated estimate of `fpt plan --calibrate`, plus 10; 240
    where the plan has none. A job that runs out is requeued and resumes, so this bounds waste only."""
    try:
        plan = pd.read_csv(results_dir(scale) / "plan" / "plan.csv", usecols=["run_id", "seconds"])
        known = plan.set_index("run_id").seconds.to_dict()
        secs = [known[c.run_id()] for c in configs if c.run_id() in known]
    except (OSError, ValueError, KeyError):
        secs = []
    return int(math.ceil(1.5 * max(secs) / 60)) + 10 if secs else 240


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM's state of each job still known to the controller (PENDING, RUNNING, ...); a job that has
    left the queue is absent."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(set(job_ids)))],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RunError(f"cannot ask SLURM for the jobs' states ({e}); is `squeue` on PATH and the "
                       "controller up? (scripts/slurm-local start runs one on this machine)") from e
    if out.returncode and "Invalid job id" not in out.stderr:
        raise RunError(f"squeue failed: {out.stderr.strip()}")
    return dict(line.split()[:2] for line in out.stdout.splitlines() if line.strip())


def read_ledger(scale: str) -> dict:
    try:
        return read_json(logs_dir(scale) / LEDGER)
    except (OSError, ValueError):
        return {}


def submit(configs: list[RunConfig], scale: str, resources: Resources) -> dict[str, dict]:
    """Submit one job per config as one array; the ledger gains an entry per run. Returns those entries."""
    import submitit
    folder = logs_dir(scale)
    folder.mkdir(parents=True, exist_ok=True)
    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")  # %j: <array>_<index>
    params = {"timeout_min": resources.timeout_min or _timeout(configs, scale), "name": f"fpt-{scale}",
              "cpus_per_task": resources.cpus_per_task, "slurm_array_parallelism": resources.array_parallelism}
    params |= {k: v for k, v in (("slurm_partition", resources.partition), ("mem_gb", resources.mem_gb),
                                 ("gpus_per_node", resources.gpus_per_node or None)) if v is not None}
    ex.update_parameters(**params)
    dirs = [str(RunDir.of(c).path) for c in configs]
    jobs = ex.map_array(TrainJob(), configs, dirs)
    entries = {c.run_id(): {"job_id": j.job_id, "run_dir": d, "stdout": str(j.paths.stdout),
                            "stderr": str(j.paths.stderr), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "resources": asdict(resources) | {"timeout_min": params["timeout_min"]}}
               for c, d, j in zip(configs, dirs, jobs)}
    with FileLock(folder / ".ledger.lock", wait=True):
        write_json_atomic(folder / LEDGER, read_ledger(scale) | entries)
    return entries


def run_state(cfg: RunConfig, entry: dict | None, queue: dict[str, str]) -> tuple[str, str]:
    """(state, detail) of one run: done | queued | running | failed | stopped | unfinished | missing."""
    d = RunDir.of(cfg)
    if d.finished:
        return "done", str(d.path)
    if entry and entry["job_id"] in queue:
        s = queue[entry["job_id"]]
        return ("queued" if s in ("PENDING", "CONFIGURING", "REQUEUED") else "running"), f"job {entry['job_id']} ({s})"
    has_ckpt = d.has_checkpoint
    if entry:
        error = _error_in(entry["stderr"])
        if error:
            return "failed", f"job {entry['job_id']}: {error} (log: {entry['stderr']})"
        return ("stopped" if has_ckpt else "failed"), (f"job {entry['job_id']} ended without a result "
                                                        f"(cancelled, preempted or killed); log: {entry['stderr']}"
                                                        + ("; submitting it again resumes from its checkpoint"
                                                           if has_ckpt else ""))
    return ("unfinished", f"checkpoint in {d.path}") if has_ckpt else ("missing", "")


def _error_in(stderr: str) -> str:
    """The last exception line a job's log holds, or ''."""
    try:
        lines = Path(stderr).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln.strip() for ln in lines if ln.strip() and not ln.startswith((" ", "\t", "Traceback"))
              and ("Error" in ln.split(":")[0] or "Exception" in ln.split(":")[0])]
    return errors[-1][:500] if errors else ""


def states(configs: list[RunConfig], scale: str) -> pd.DataFrame:
    ledger = read_ledger(scale)
    queue = squeue_states([ledger[c.run_id()]["job_id"] for c in configs if c.run_id() in ledger])
    rows = []
    for c in configs:
        state, detail = run_state(c, ledger.get(c.run_id()), queue)
        rows.append({"run_id": c.run_id(), "task": c.task, "backbone": c.backbone, "init": c.init,
                     "seed": c.seed, "state": state, "detail": detail})
    return pd.DataFrame(rows)


def submit_and_follow(configs: list[RunConfig], scale: str, resources: Resources, wait: bool = True,
                      progress: bool = True) -> None:
    """Submit every run without a result that is not queued or running already; with wait, follow them
    until none is left in the queue (a progress bar), then raise RunError naming each run that failed,
    with its log, once all the others have finished."""
    from tqdm.auto import tqdm
    now = states(configs, scale)
    todo = [c for c, s in zip(configs, now.state) if s in ("missing", "failed", "stopped", "unfinished")]
    if todo:
        entries = submit(todo, scale, resources)
        array = next(iter(entries.values()))["job_id"].split("_")[0]
        print(f"submitted {len(todo)} run(s) to SLURM as job array {array}; logs in {logs_dir(scale)}")
    if not wait:
        return
    waiting = [c for c, s in zip(configs, now.state) if s != "done"]
    bar = tqdm(total=len(waiting), desc="SLURM runs", disable=not progress or not waiting)
    pending = list(waiting)
    while pending:
        s = states(pending, scale)
        left = [c for c, st in zip(pending, s.state) if st in ("queued", "running")]
        bar.update(len(pending) - len(left))
        bar.set_postfix_str(f"{(s.state == 'running').sum()} running, {(s.state == 'queued').sum()} queued")
        pending = left
        if pending:
            time.sleep(POLL_SECONDS)
    bar.close()
    final = states(waiting, scale)
    bad = final[final.state != "done"]
    if len(bad):
        raise RunError(f"{len(bad)} of {len(waiting)} SLURM run(s) did not finish:\n"
                       + "\n".join(f"  run {r.run_id}: {r.state}: {r.detail}" for r in bad.itertuples()))


def execute(runs: list[PlannedRun], progress: bool = True, slurm: dict | None = None,
            wait: bool = True) -> pd.DataFrame:
    """The backend: one SLURM job per missing run (`slurm` holds its resources, Resources' fields), then
    one line per run read back by the local backend (nothing is left to train there). With wait False
    it raises RunsPending while any run is queued or running."""
    from . import local
    configs = list({r.config.run_id(): r.config for r in runs}.values())
    scale = configs[0].scale if configs else "cpu"
    submit_and_follow(configs, scale, Resources.from_dict(slurm), wait, progress)
    left = sum(not RunDir.of(r.config).finished for r in runs)
    if left:  # only without wait: a failure after waiting has raised already
        raise RunsPending(f"{left} of {len(runs)} runs are queued or running on SLURM "
                          f"(logs in {logs_dir(scale)}; `fpt status --scale {scale}` lists them); execute "
                          "this again once they are done: finished runs are read, nothing is submitted twice")
    return local.execute(runs, progress=progress, workers=1)
