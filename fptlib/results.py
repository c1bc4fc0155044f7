"""Reading run results back and turning them into tables (CSV + Markdown), our number beside the paper's."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .io import read_json, write_text_atomic
from .paper import TASK_TITLES


def load_run(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / "result.json")


def load_curve(run_dir: Path) -> pd.DataFrame:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines if line.strip()])


def summarise(runs: pd.DataFrame, metrics=("test_accuracy",)) -> pd.DataFrame:
    """Mean and std over seeds per (row, task, metric), in percent. `runs` has one line per run."""
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
                        "scale": ",".join(sorted(set(g["scale"])))})
    return pd.DataFrame(out)


def fmt_cell(mean: float | None, std: float | None) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.1f}" if std is None or pd.isna(std) else f"{mean:.1f} ± {std:.1f}"


def markdown_table(summary: pd.DataFrame, *, rows: list[str], tasks: list[str], metric_titles: dict,
                   caption: str, missing: dict[str, str] | None = None) -> str:
    """Rows = models, columns = task x metric; each cell 'ours ± std (paper P)'. A task whose data is
    missing gets one column saying so (never a number that was not measured)."""
    missing = missing or {}
    cols = [(t, m) for t in tasks for m in metric_titles
            if (t in missing and m == next(iter(metric_titles)))
            or not summary.empty and not summary[(summary.task == t) & (summary.metric == m)].empty]
    header = "| | " + " | ".join(f"{TASK_TITLES.get(t, t)}{metric_titles[m]}" for t, m in cols) + " |"
    lines = [caption, "", header, "|---" * (len(cols) + 1) + "|"]
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
            paper = h.get("paper")
            ours = fmt_cell(h["mean"], h["std"])
            cells.append(f"{ours} (paper {paper:g})" if paper is not None and not pd.isna(paper)
                         else f"{ours} (paper: none)")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    notes = [f"- {TASK_TITLES.get(t, t)}: {why}." for t, why in missing.items()]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def save_table(summary: pd.DataFrame, markdown: str, out_dir: Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md"}
    write_text_atomic(paths["csv"], summary.to_csv(index=False, float_format="%.4f"))
    write_text_atomic(paths["md"], markdown)
    return paths
