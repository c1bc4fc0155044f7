"""Markdown: the one place pipe tables are made. `frame_markdown` renders any frame; `markdown_table`
the paper-table layout (rows x tasks, ours beside the paper's number); `save_table` writes a table's
CSV and Markdown as one pair."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import FileLock, write_text_atomic
from ..paper import TASK_TITLES


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
