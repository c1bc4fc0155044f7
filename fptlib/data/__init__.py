"""Data: the task interface (base), one module per dataset, each ending in its SPEC (spec), the
registry that collects them, and downloads (download: `fpt data fetch`, `fpt data status`)."""
from .base import SPLITS, DataError, EpochOrder, Task, TaskShape
from .registry import (
    BEYOND_PAPER,
    PAPER_TASKS,
    REGISTRY,
    TASKS,
    TITLES,
    data_missing,
    make_task,
    spec,
    task_class,
    task_defaults,
)

__all__ = ["SPLITS", "DataError", "EpochOrder", "Task", "TaskShape", "REGISTRY", "TASKS", "PAPER_TASKS", "BEYOND_PAPER",
           "TITLES", "data_missing", "make_task", "spec", "task_class", "task_defaults"]
