"""Run results read back (`load_run`, `load_curve`) and summarised per row and task over seeds
(`summarise`), with the check that a table never mixes code, data or precision versions silently
(`provenance_issues`)."""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd

from ...io import read_json
from ...training import RunDir


def is_blank(v) -> bool:
    """None, NaN or an empty string: a cell with nothing in it (as CSV cells read back)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


class MixedResults(ValueError):
    """A table would mix results of different code or data versions."""


def load_run(run_dir: Path) -> dict:
    path = RunDir(Path(run_dir)).result_file
    try:
        return read_json(path)
    except ValueError as e:
        raise ValueError(f"{path} is unreadable ({e}); it was damaged after it was written (fpt writes it "
                         "atomically): delete it and compute the run again") from e


# The `versions` entries that must agree within one table. numerics_version is raised by hand when a
# change alters numbers (fptlib.training.result); results older than the field are version 1.
CODE_KEYS = ("fptlib", "numerics_version", "torch", "transformers")


def code_version(versions: dict, key: str):
    if key == "numerics_version":
        return versions.get(key) or 1
    return versions.get(key)


def _cell(v):
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else v


def provenance_issues(runs: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """Why the runs of one table are not of one code and data version: (table-wide, per task).

    Code: each of CODE_KEYS of the runs' `versions` must have one value over the table (runs that do
    not record a key are left out of that key's check, except numerics_version: absent means 1).
    Data: runs of one task with the same task options must have one `data_hash` (another hash means
    the data files changed between runs). Frames without these columns are not checked.
    """
    table: list[str] = []
    per_task: dict[str, list[str]] = {}
    if "versions" in runs:
        vers = [v if isinstance(v, dict) else {} for v in runs["versions"]]
        for key in CODE_KEYS:
            seen = Counter(code_version(v, key) for v in vers if code_version(v, key) is not None)
            if len(seen) > 1:
                table.append(f"mixed code versions in one table: {key} " + ", ".join(
                    f"{val} ({n} run{'s' * (n > 1)})" for val, n in sorted(seen.items())))
    if "precision" in runs:  # bf16 and fp32 runs are different computations: never one mean unlabelled
        seen = Counter(p for p in runs["precision"] if _cell(p) is not None)
        if len(seen) > 1:
            table.append("mixed precisions in one table: " + ", ".join(
                f"{val} ({n} run{'s' * (n > 1)})" for val, n in sorted(seen.items())))
    if "data_hash" in runs:
        opts = runs["task_options"] if "task_options" in runs else (
            runs["config"].map(lambda c: c.get("task_options") if isinstance(c, dict) else None)
            if "config" in runs else pd.Series([None] * len(runs), index=runs.index))
        groups: dict[tuple, Counter] = {}
        for task, o, h in zip(runs["task"], opts, runs["data_hash"]):
            if _cell(h) is None:
                continue
            key = (task, json.dumps(o, sort_keys=True, default=str))
            groups.setdefault(key, Counter())[h] += 1
        for (task, _), seen in groups.items():
            if len(seen) > 1:
                per_task.setdefault(task, []).append(
                    f"mixed data versions for {task}: data_hash " + ", ".join(
                        f"{val} ({n} run{'s' * (n > 1)})" for val, n in sorted(seen.items())))
    return table, per_task


def load_curve(run_dir: Path) -> pd.DataFrame:
    lines = RunDir(Path(run_dir)).metrics_file.read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines if line.strip()])


# One line of `summarise` per (row, task, metric); report.SUMMARY_COLUMNS are the report's summary.csv columns
SUMMARISE_COLUMNS = ("row", "task", "metric", "mean", "std", "n_seeds", "seeds", "backbone", "steps", "scale",
                     "provenance")


def summarise(runs: pd.DataFrame, metrics=("test_accuracy",), allow_mixed: bool = True) -> pd.DataFrame:
    """Mean and std over seeds per (row, task, metric), in percent. `runs` has one line per run.

    Results of different code or data versions (see `provenance_issues`) are never mixed silently:
    by default the table is built, each affected line says why in its `provenance` column, the
    Markdown table opens with a warning and a RuntimeWarning is issued; with
    allow_mixed=False a MixedResults error is raised instead. Clean tables have an empty column.
    """
    if runs.empty:  # nothing ran here (every task's data missing): no line, the table says why
        return pd.DataFrame(columns=SUMMARISE_COLUMNS)
    table_issues, task_issues = provenance_issues(runs)
    if table_issues or task_issues:
        msg = "; ".join(table_issues + [m for ms in task_issues.values() for m in ms])
        if not allow_mixed:
            raise MixedResults(f"refusing to build one table from {msg}. Recompute the stale runs "
                               "(delete their run directories) or pass allow_mixed=True to label them")
        warnings.warn(f"table built from {msg}", RuntimeWarning, stacklevel=2)
    out = []
    for (row, task), g in runs.groupby(["row", "task"], sort=False):
        for m in metrics:
            if m not in g or g[m].isna().all():
                continue
            vals = g[m].dropna() * 100
            out.append({"row": row, "task": task, "metric": m, "mean": vals.mean(),
                        "std": vals.std(ddof=1) if len(vals) > 1 else float("nan"),
                        "n_seeds": len(vals), "seeds": ",".join(str(s) for s in sorted(g["seed"])),
                        "backbone": ",".join(sorted(set(g["backbone"]))),
                        "steps": ",".join(str(s) for s in sorted(set(g["steps"]))),
                        "scale": ",".join(sorted(set(g["scale"]))),
                        "provenance": "; ".join(table_issues + task_issues.get(task, []))})
    return pd.DataFrame(out, columns=SUMMARISE_COLUMNS)
