"""Data: the task interface (base), one module per dataset, each ending in its SPEC (spec), the
registry that collects them, and downloads (download: `fpt data fetch`, `fpt data status`)."""
from .base import SPLITS, DataError, EpochOrder, Task, TaskShape, fixed_training_set
from .masked import IGNORE, MaskedInputs
from .registry import (
    BEYOND_PAPER,
    CACHEABLE,
    PAPER_TASKS,
    REGISTRY,
    TASKS,
    TITLES,
    data_missing,
    make_task,
    planned_shape,
    spec,
    task_class,
    task_defaults,
)

__all__ = ["SPLITS", "IGNORE", "MaskedInputs", "DataError", "EpochOrder", "Task", "TaskShape", "fixed_training_set",
           "REGISTRY", "TASKS", "PAPER_TASKS", "BEYOND_PAPER", "TITLES", "CACHEABLE", "data_missing", "make_task",
           "planned_shape", "spec", "task_class", "task_defaults"]
