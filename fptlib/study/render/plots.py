"""Figures drawn from result files only: bar charts against the paper, learning curves."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt  # headless runs fall back to Agg by themselves
import numpy as np
import pandas as pd

from ..paper import TASK_TITLES
from ..results.tables import load_curve

PALETTE = {"FPT": "#1f77b4", "Random": "#ff7f0e", "LSTM": "#2ca02c"}


def save(fig, path: Path) -> Path:
    """Save a figure atomically as PNG (written to a temporary name, then moved)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def nothing_ran(title: str):
    """The figure of a notebook none of whose tasks has data here: says so rather than failing."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, "No run here: the data of these tasks is not on this machine (the table says how to "
            "get it).", ha="center", va="center", wrap=True, fontsize=9)
    ax.set_title(title, fontsize=10)
    return fig


def bar_chart(summary: pd.DataFrame, rows: list[str], tasks: list[str], title: str,
              metric: str = "test_accuracy"):
    """Grouped bars (ours, mean ± std over seeds) with the paper's number as a black marker."""
    s = summary[summary.metric == metric]
    rows = [r for r in rows if s[s.row == r]["mean"].notna().any()]  # a row with no number draws no bar
    if not tasks or not rows:
        return nothing_ran(title)
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 2, 3.8))
    width = 0.8 / len(rows)
    x = np.arange(len(tasks))
    for i, r in enumerate(rows):
        sub = s[s.row == r].set_index("task").reindex(tasks)
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, sub["mean"], width, yerr=sub["std"].fillna(0), capsize=3, label=f"{r} (ours)",
               color=PALETTE.get(r), alpha=0.85)
        if "paper" in sub:
            ax.scatter(pos, sub["paper"].astype(float), marker="_", s=400, color="black", zorder=3,
                       label="paper" if i == 0 else None)
    ax.set_xticks(x, [TASK_TITLES.get(t, t) for t in tasks])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def _finish_panels(fig, axes, xlabel: str, ylabel: str, title: str):
    """Shared frame of the one-panel-per-task figures: axis labels, grid, one legend, title."""
    for ax in axes[0]:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def learning_curves(runs: pd.DataFrame, rows: list[str], tasks: list[str], title: str,
                    metric: str = "val_accuracy"):
    """Validation accuracy against gradient steps; line = mean over seeds, band = min..max."""
    if not tasks:
        return nothing_ran(title)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in rows:
            sel = runs[(runs.row == r) & (runs.task == task)]
            if sel.empty:
                continue
            curves = pd.concat([load_curve(d).assign(run=d) for d in sel.run_dir])
            g = curves.groupby("step")[metric]
            m = g.mean() * 100
            ax.plot(m.index, m.values, label=r, color=PALETTE.get(r))
            ax.fill_between(m.index, g.min() * 100, g.max() * 100, alpha=0.2, color=PALETTE.get(r))
        ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
    return _finish_panels(fig, axes, "gradient steps", "validation accuracy (%)", title)


def stopping_curves(runs: pd.DataFrame, rows: list[str], tasks: list[str], title: str,
                    metric: str = "val_accuracy"):
    """Runs trained to convergence: one line per run (each seed its own, as runs stop at different steps),
    a dot where patience stopped it and a cross where it reached its step cap instead; log-scaled steps."""
    from ..results.tables import load_run
    if not tasks:
        return nothing_ran(title)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in rows:
            for i, d in enumerate(runs[(runs.row == r) & (runs.task == task)].run_dir):
                c, stopped = load_curve(d), load_run(d).get("stopped")
                c = c[c.step > 0]
                ax.plot(c.step, c[metric] * 100, color=PALETTE.get(r), alpha=0.75, lw=1,
                        label=r if i == 0 else None)
                ax.plot(c.step.iloc[-1:], c[metric].iloc[-1:] * 100, ls="none", color=PALETTE.get(r),
                        marker="o" if stopped == "converged" else "x", ms=5)
        ax.set_xscale("log")
        ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
    return _finish_panels(fig, axes, "gradient steps (log)", "validation accuracy (%)",
                          title + "\n(dot: stopped by patience; cross: step cap reached)")


def train_test(summary: pd.DataFrame, rows: list[str], tasks: list[str], title: str):
    """Train accuracy (x) against test accuracy (y) per row and task; the diagonal is no gap:
    points below it overfit, points on it underfit or fit."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    markers = "osD^vP*X"
    for i, r in enumerate(rows):
        for j, t in enumerate(tasks):
            sel = summary[(summary.row == r) & (summary.task == t)].set_index("metric")["mean"]
            if {"train_accuracy", "test_accuracy"} <= set(sel.index):
                ax.scatter(sel["train_accuracy"], sel["test_accuracy"], color=PALETTE.get(r, f"C{i}"),
                           marker=markers[j % len(markers)], s=50,
                           label=f"{r}" if j == 0 else None)
                ax.annotate(TASK_TITLES.get(t, t), (sel["train_accuracy"], sel["test_accuracy"]), fontsize=7,
                            xytext=(3, -8), textcoords="offset points")
    ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("train accuracy (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(0, 102)
    ax.set_ylim(0, 102)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def by_depth(points: pd.DataFrame, title: str):
    """Test accuracy against blocks kept (log axis), one panel per task: ours solid with ± std bars, the
    paper's dashed with hollow markers; blue pretrained, orange random (studies.Depth.by_depth)."""
    tasks = list(dict.fromkeys(points.task))
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.6 * max(1, len(tasks)), 3.4), squeeze=False)
    colors = {"pretrained": PALETTE["FPT"], "random": PALETTE["Random"]}
    for ax, task in zip(axes[0], tasks):
        for (source, init), g in points[points.task == task].groupby(["source", "init"], sort=True):
            g = g.sort_values("depth")
            ours = source == "ours"
            ax.errorbar(g.depth, g["mean"], yerr=g["std"].fillna(0) if ours else None, capsize=3,
                        color=colors.get(init), ls="-" if ours else "--", marker="o",
                        mfc=colors.get(init) if ours else "white", label=f"{init} ({source})")
        depths = sorted(points[points.task == task].depth.unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_ylim(0, 100)
        ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
    return _finish_panels(fig, axes, "blocks kept", "test accuracy (%)", title)


def lr_sweep(grid: pd.DataFrame, title: str):
    """Test accuracy against learning rate (log axis), one panel per task, one line per setting."""
    tasks = list(dict.fromkeys(grid.index.get_level_values("task")))
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.2 * max(1, len(tasks)), 3.4), squeeze=False)
    styles = {"Frozen pretrained": ("#1f77b4", "-"), "Frozen random": ("#ff7f0e", "-"),
              "Unfrozen pretrained": ("#1f77b4", "--"), "Unfrozen random": ("#ff7f0e", "--")}
    for ax, task in zip(axes[0], tasks):
        sub = grid.loc[task]
        for setting, row in sub.iterrows():
            color, ls = styles.get(setting, (None, "-"))
            ax.plot(row.index.astype(float), row.values, marker="o", color=color, ls=ls, label=setting)
        ax.set_xscale("log")
        ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
    return _finish_panels(fig, axes, "learning rate", "test accuracy (%)", title)


def arms_with_seeds(runs: pd.DataFrame, rows: list[str], tasks: list[str], title: str,
                    reference: str | None = None):
    """One panel per task: each arm's mean as a bar and every seed as a dot, so the spread is seen, not
    summarised; `reference` (an arm) as a dashed line across the panel."""
    rows = [r for r in rows if (runs.row == r).any()]
    if not tasks or not rows:
        return nothing_ran(title)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 0.42 * len(rows) + 1.6), squeeze=False,
                             sharey=True)
    y = np.arange(len(rows))
    for ax, task in zip(axes[0], tasks):
        sub = runs[runs.task == task]
        means = [100 * sub[sub.row == r].test_accuracy.mean() for r in rows]
        ax.barh(y, means, color="#c6dbef", edgecolor="#6baed6")
        for i, r in enumerate(rows):
            acc = 100 * sub[sub.row == r].test_accuracy
            ax.scatter(acc, np.full(len(acc), i), s=16, color="#08306b", zorder=3)
        if reference in rows and not np.isnan(means[rows.index(reference)]):
            ax.axvline(means[rows.index(reference)], ls="--", lw=1, color="#444")
        ax.set_title(TASK_TITLES.get(task, task), fontsize=9)
        ax.set_xlim(0, 102)
        ax.set_xlabel("test accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, rows, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
