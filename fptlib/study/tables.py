"""Reading run results back and turning them into tables (CSV + Markdown), our number beside the paper's."""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd

from ..io import FileLock, read_json, write_text_atomic
from ..training import RunDir
from .paper import TASK_TITLES


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



def fmt_cell(mean: float | None, std: float | None) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.1f}" if std is None or pd.isna(std) else f"{mean:.1f} ± {std:.1f}"


def markdown_table(summary: pd.DataFrame, *, rows: list[str], tasks: list[str], metric_titles: dict,
                   caption: str, missing: dict[str, str] | None = None,
                   row_notes: dict[str, str] | None = None) -> str:
    """Rows = models, columns = task x metric; each cell 'ours ± std (paper P)'. A task whose data is
    missing gets one column saying so (never a number that was not measured)."""
    missing = missing or {}
    cols = [(t, m) for t in tasks for m in metric_titles
            if (t in missing and m == next(iter(metric_titles)))
            or not summary.empty and not summary[(summary.task == t) & (summary.metric == m)].empty]
    header = "| | " + " | ".join(f"{TASK_TITLES.get(t, t)}{metric_titles[m]}" for t, m in cols) + " |"
    lines = [caption, ""]
    mixed = [] if "provenance" not in summary else sorted(
        {m for p in summary["provenance"] if isinstance(p, str) and p for m in p.split("; ")})
    if mixed:
        lines += ["**Warning: this table mixes results that are not comparable.** "
                  "Recompute the stale runs before reading it side by side:"]
        lines += [f"- {m}" for m in mixed] + [""]
    lines += [header, "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for t, m in cols:
            if t in missing:
                cells.append("data not available offline")
                continue
            hit = summary[(summary.row == r) & (summary.task == t) & (summary.metric == m)]
            if hit.empty:
                cells.append("not run")
                continue
            h = hit.iloc[0]
            if pd.isna(h.get("mean")) and isinstance(h.get("note"), str) and h["note"]:
                cells.append(h["note"].split(":")[0])  # e.g. "weights not available offline"
                continue
            paper = h.get("paper")
            ours = fmt_cell(h["mean"], h["std"])
            cells.append(f"{ours} (paper {paper:g})" if paper is not None and not pd.isna(paper)
                         else f"{ours} (paper: none)")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    notes = [f"- {TASK_TITLES.get(t, t)}: {why}." for t, why in missing.items()]
    notes += [f"- {r}: {why}." for r, why in (row_notes or {}).items()]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def save_table(summary: pd.DataFrame, markdown: str, out_dir: Path, name: str) -> dict[str, Path]:
    """Write NAME.csv and NAME.md. Each file is replaced atomically, and a lock makes the pair come
    from one writer when two processes save the same table at once."""
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md"}
    csv = summary.to_csv(index=False, float_format="%.4f")
    with FileLock(out_dir / f".{name}.lock", wait=True):
        write_text_atomic(paths["csv"], csv)
        write_text_atomic(paths["md"], markdown)
    return paths


def frame_markdown(df: pd.DataFrame, float_digits: int | None = None) -> str:
    """A DataFrame as a GitHub pipe table (pandas' to_markdown needs tabulate, which we do not ship);
    floats with `float_digits` decimals where given, NaN and None as empty cells."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return f"{v:.{float_digits}f}" if float_digits is not None and isinstance(v, float) else str(v)
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
