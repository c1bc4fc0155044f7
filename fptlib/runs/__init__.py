"""Execution: the runs a study plans, trained where the chosen backend trains them, read back as one
line each. Between training (one run) and study (a table's grid of runs).

    execute(runs, executor="local", **options)   one validation of the backend's name, then its module
    EXECUTORS                                    name -> backend module; each has
                                                 execute(runs, progress=..., **its own options)
                                                 and OPTIONS, the names of those options

`local` (runs/local.py) trains in this machine's processes (workers, GPU slots); `slurm` (runs/slurm.py)
submits one SLURM job per missing run through submitit. Adding a backend is adding one module with an
`execute` and its name here. Backends are imported when used, so submitit is needed only for SLURM.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import RunConfig

if TYPE_CHECKING:  # pandas is imported by the backends, not to list them (fpt --help stays quick)
    import pandas as pd


@dataclass
class PlannedRun:
    """One run of a study's grid: the table row it belongs to (e.g. "FPT") and its resolved config.
    Its directory, once trained, is training.RunDir.of(config)."""

    row: str
    config: RunConfig


class RunsPending(RuntimeError):
    """Runs submitted without waiting are not finished yet; executing again picks them up."""


# One line per run, as `execute` returns it
RUN_COLUMNS = ("row", "run_dir", "task", "backbone", "init", "seed", "scale", "steps", "test_accuracy",
               "test_masked_accuracy", "train_accuracy", "val_accuracy", "trainable_params", "total_params",
               "frozen_unchanged", "wall_seconds", "config_hash", "data_hash", "versions", "task_options", "precision")

EXECUTORS = {"local": "local", "slurm": "slurm"}  # name -> module of this package


def check_executor(name: str) -> None:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


def backend(name: str):
    """The module of executor `name` (ValueError naming the choices for an unknown one)."""
    check_executor(name)
    return importlib.import_module(f"{__name__}.{EXECUTORS[name]}")


def options_for(executor: str, **settings) -> dict:
    """Of `settings` (a study's execution parameters, say), those backend `executor` takes."""
    return {k: v for k, v in settings.items() if k in backend(executor).OPTIONS}


def execute(runs: list[PlannedRun], executor: str = "local", progress: bool = True, **options) -> pd.DataFrame:
    """Train every run that has no result yet (resuming unfinished ones) with backend `executor`, and
    return one line per run (RUN_COLUMNS). `options` are the backend's own: local `workers`; slurm
    `slurm` (its resources) and `wait` (False: return with the runs finished so far, RunsPending if any
    is not). An option the backend does not take is a ValueError naming those it does."""
    module = backend(executor)
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise ValueError(f"executor {executor!r} takes no option {', '.join(unknown)}; its options: "
                         f"{', '.join(module.OPTIONS) or 'none'}")
    return module.execute(runs, progress=progress, **options)


__all__ = ["PlannedRun", "RunsPending", "RUN_COLUMNS", "EXECUTORS", "check_executor", "options_for", "execute"]
