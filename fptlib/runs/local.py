"""The local backend: every run without a result is trained on this machine (resuming unfinished ones),
side by side in spawned worker processes (one per core without a GPU; GPU slots with one), and each
run's result is read back."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..training import RunDir, RunError, train
from . import RUN_COLUMNS, PlannedRun, sizing

OPTIONS = ("workers",)  # of execute, beyond the runs and progress
WORKERS_ENV = "FPT_WORKERS"
RUNS_PER_GPU_ENV = "FPT_RUNS_PER_GPU"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Torch threads of each run trained side by side: the cores shared out evenly."""
    return max(1, usable_cores() // workers)


def default_workers(todo: list[PlannedRun]) -> int:
    """How many runs to train side by side: $FPT_WORKERS if set; else one per core (at most 4) on a
    machine without a GPU. The models here are too small for torch to use two cores well, so two
    one-thread runs side by side beat two two-thread runs in a row (README: Performance).
    One at a time with a GPU (the runs would share it) and at the smoke scale (its runs take seconds,
    less than starting a worker)."""
    if os.environ.get(WORKERS_ENV, "").strip():
        return _count_from_env(WORKERS_ENV, "runs to train at once")
    import torch
    if torch.cuda.is_available():  # one worker per GPU, or several where runs are small enough to share one
        return torch.cuda.device_count() * runs_per_gpu(todo, say=True)
    if all(r.config.scale == "smoke" for r in todo):
        return 1
    return max(1, min(usable_cores(), 4))


def runs_per_gpu(todo: list[PlannedRun] | None = None, say: bool = False) -> int:
    """$FPT_RUNS_PER_GPU (`fpt reproduce --runs-per-gpu`): runs sharing one GPU. Unset, on a GPU in the
    catalogue (fptlib.models.cost.GPUS): as many as its memory holds of the largest run of `todo`, by
    the memory estimate (sizing.default_runs_per_gpu); 1 on any other GPU, or with nothing to size."""
    device = sizing.detected_gpu()
    if os.environ.get(RUNS_PER_GPU_ENV, "").strip() or not todo or device is None:
        return _count_from_env(RUNS_PER_GPU_ENV, "runs per GPU", default="1")
    n, why = sizing.default_runs_per_gpu([r.config for r in todo], device)
    if say:
        print(f"[fpt] {why} ({RUNS_PER_GPU_ENV} sets it)", flush=True)
    return n


def _count_from_env(name: str, what: str, default: str = "") -> int:
    """A whole number of at least 1 from environment variable `name`, or a ValueError saying so."""
    env = os.environ.get(name, default).strip()
    if not env.isdigit() or int(env) < 1:
        raise ValueError(f"{name}={env!r}: give a whole number of {what}, 1 or more")
    return int(env)


def gpu_slots(n_gpus: int, per_gpu: int) -> list[str]:
    """The GPU each worker sees (its CUDA_VISIBLE_DEVICES), GPU by GPU: 2 GPUs x 2 runs -> 0, 0, 1, 1."""
    return [str(g) for g in range(n_gpus) for _ in range(per_gpu)]


def _init_worker(parent: int, slots) -> None:
    end_with_parent(parent)
    if slots is not None:  # before torch first touches CUDA in this fresh (spawned) process
        os.environ["CUDA_VISIBLE_DEVICES"] = slots.get(timeout=60)


def worker_pool(workers: int, slots: list[str] | None = None):
    """A pool of spawned worker processes that end with this one; with `slots`, worker i sees only GPU
    slots[i] (one device each, so every run uses cuda:0 of its own view)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    queue = None
    if slots:
        queue = ctx.Queue()
        for s in slots[:workers]:
            queue.put(s)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), queue))


def _train_named(cfg: RunConfig, run_dir: str, progress: bool) -> dict:
    """train(), with a failure's message naming the run (its directory) whatever raised it."""
    try:
        return train(cfg, run_dir, resume=True, progress=progress, wait_for_lock=True)
    except Exception as e:
        raise RunError(f"run {run_dir} ({cfg.task}, {cfg.backbone}, init {cfg.init}, seed {cfg.seed}) failed: "
                       f"{type(e).__name__}: {e}") from e


def end_with_parent(parent: int) -> None:
    """Have the kernel end this process (SIGTERM) when its parent dies, however the parent died: a
    notebook kernel restarted by JupyterLab, `fpt reproduce` killed by SLURM, a SIGKILL. A run killed so
    keeps its last sealed checkpoint. Linux only (prctl); elsewhere the pool's own shutdown applies."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _train_in_worker(job: tuple[RunConfig, str, int]) -> str:
    """One run in a worker process, with its share of the cores (spawned: imports fptlib afresh)."""
    cfg, run_dir, threads = job
    import torch
    torch.set_num_threads(threads)
    _train_named(cfg, run_dir, progress=False)
    return run_dir


def _train_side_by_side(todo: list[PlannedRun], workers: int, threads: int, bar) -> None:
    """Train runs in `workers` processes. Runs are independent and locked by directory (two that need
    the same Bit Memory source wait for each other). A failed run stops the others; an interrupt
    stops the workers, whose runs resume from their last checkpoint next time."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    import torch
    configs = {str(RunDir.of(r.config).path): r.config for r in todo}  # one job per run directory
    others = set(multiprocessing.active_children())  # children that are not the pool's stay alone
    n = min(workers, len(configs))
    slots = gpu_slots(torch.cuda.device_count(), runs_per_gpu(todo)) if torch.cuda.is_available() else None
    pool = worker_pool(n, slots)
    try:
        jobs = {pool.submit(_train_in_worker, (cfg, d, threads)): d for d, cfg in configs.items()}
        pending = set(jobs)
        while pending:
            # each run as it ends: the bar moves with every finished run, and a failure stops the rest at once
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                if isinstance(f.exception(), BrokenProcessPool):  # which run's worker died is not known
                    raise RunError(f"a worker process died (killed, or out of memory) while runs trained, among "
                                   f"them {jobs[f]}; rerun to resume them from their checkpoints") from f.exception()
                bar.set_postfix_str(Path(f.result()).name[:48])  # re-raises a worker's error here
                bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        workers_alive = [p for p in multiprocessing.active_children() if p not in others]  # runs keep checkpoints
        for p in workers_alive:
            p.terminate()
        for p in workers_alive:  # gone before this returns, locks released
            p.join(timeout=30)
        raise
    pool.shutdown()


def execute(runs: list[PlannedRun], progress: bool = True, workers: int | None = None) -> pd.DataFrame:
    """Train every run without a result here (resuming unfinished ones); one line per run (RUN_COLUMNS).
    workers: runs trained side by side (None: default_workers). On a CPU a run's numbers depend on its
    thread count, cores // workers (README: A run), not on the order runs finish in."""
    from tqdm.auto import tqdm
    rows = []
    todo = [r for r in runs if not RunDir.of(r.config).finished]
    workers = default_workers(todo) if workers is None else workers
    # With workers > 1 even a lone run goes to a worker: a run's thread count (cores // workers) must
    # not depend on how many runs happen to be missing, since the numbers depend on it.
    side = workers > 1 and bool(todo)
    bar = tqdm(total=len(todo), desc=f"runs to compute ({len(runs) - len(todo)} cached"
               + (f", {workers} side by side)" if side else ")"), disable=not progress or not todo)
    if side:
        threads = threads_per_worker(workers)
        if progress:
            print(f"training {len(todo)} run(s) in up to {workers} processes side by side, "
                  f"{threads} torch thread(s) each ({WORKERS_ENV} sets how many)")
        _train_side_by_side(todo, workers, threads, bar)
    for r in runs:
        d = RunDir.of(r.config)
        cached = d.finished
        # Another process may be computing the same run: wait for it and reuse its result.
        res = _train_named(r.config, str(d.path), progress)
        if not cached:
            bar.update(1)
        cfg = res.get("config") or {}
        rows.append({"row": r.row, "run_dir": str(d.path), **{k: res.get(k) for k in RUN_COLUMNS[2:-2]},
                     # what the table's provenance check compares (tables.provenance_issues)
                     "task_options": cfg.get("task_options"), "precision": cfg.get("precision") or "fp32"})
    bar.close()
    return pd.DataFrame(rows, columns=RUN_COLUMNS)  # the columns even when nothing runs here

