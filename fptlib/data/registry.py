"""The task registry: every dataset's SPEC (fptlib.data.spec), the task lists derived from them (a task is
declared once, in its SPEC), and the functions that find a task class, say whether its data is here and
construct it."""
from __future__ import annotations

import dataclasses

from . import bits, cifar, fashion, homology, listops, mnist, pfam
from .base import DataError, Task, TaskShape
from .masked import masked_shape
from .spec import Dataset

REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    mnist.SPEC, cifar.SPEC, cifar.LRA_SPEC, listops.SPEC, homology.SPEC, bits.XOR_SPEC, bits.MEMORY_SPEC,
    fashion.SPEC, pfam.SPEC)}


def column_order(registry: dict[str, Dataset]) -> tuple[str, ...]:
    """The task names in the order of their columns (each SPEC's `column`), checked: one place per task, and the
    paper's tasks before those beyond it."""
    order = tuple(sorted(registry, key=lambda name: registry[name].column))
    places = [registry[name].column for name in order]
    if min(places) < 1 or len(set(places)) != len(places):
        raise ValueError(f"every task needs a column place of its own (1, 2, ...): {dict(zip(order, places))}")
    in_paper = [registry[name].in_paper for name in order]
    if in_paper != sorted(in_paper, reverse=True):
        raise ValueError(f"the paper's tasks come before those beyond it: {dict(zip(order, in_paper))}")
    return order


# Every task in the order of the tables' columns: the paper's column order, then the offline tasks beyond the paper
TASKS = column_order(REGISTRY)
PAPER_TASKS = tuple(t for t in TASKS if REGISTRY[t].in_paper)
BEYOND_PAPER = tuple(t for t in TASKS if not REGISTRY[t].in_paper)
# Column titles; a task beyond the paper is marked * (explained under every table that has one)
TITLES = {t: REGISTRY[t].column_title + ("" if REGISTRY[t].in_paper else "*") for t in TASKS}
# The tasks with a fixed training set, whose output-only runs may cache their frozen features (cache_features)
CACHEABLE = tuple(t for t in TASKS if REGISTRY[t].cacheable)


def spec(name: str) -> Dataset:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return REGISTRY[name]


def task_class(name: str) -> type[Task]:
    return spec(name).task


def planned_shape(name: str, options: dict, objective: str | None = None) -> TaskShape:
    """The shape a run of task `name` with these options trains on, without reading its data: the task's own,
    or under objective "masked" self-pretraining's (masked.masked_shape)."""
    shape = task_class(name).planned_shape(options)
    return masked_shape(shape) if objective == "masked" else shape


def data_missing(name: str, **options) -> str | None:
    """None when a task's data is at hand (generated, bundled or fetched), else what is missing and
    the command that gets it. Cheap: looks for files, does not load them."""
    return spec(name).missing(options)


def make_task(name: str, seed: int = 0, **options) -> Task:
    """The task, constructed with its options; a missing or corrupt dataset's error names the command
    that fetches it."""
    cls = task_class(name)
    valid = set(task_defaults(name))
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for task {name!r}; valid: {sorted(valid)}")
    try:
        return cls(seed=seed, **options)
    except DataError as e:
        ds = spec(name)
        if "fpt data fetch" in str(e) or ds.kind == "generated":
            raise
        raise DataError(f"{e} (`fpt data fetch {name}` downloads and verifies it; "
                        "`fpt data status` lists what is present)") from e


def task_defaults(name: str) -> dict:
    """Every option of a task with its default (what a config that leaves it unset gets). dataclasses.fields,
    not __dataclass_fields__, which also lists class constants (a task's ClassVar TASK)."""
    return {f.name: f.default for f in dataclasses.fields(task_class(name)) if f.init and f.name != "seed"}
