"""The run browser: every finished run of a scale, filtered, summarised and plotted, in JupyterLab.

`RunBrowser(scale)` reads result files only — results/<scale>/runs/*/result.json and metrics.jsonl,
through `tables.load_run` / `load_curve` — and never trains. Filter by task, backbone, init, trained
groups and seed; `table()` gives the mean ± std of the test accuracy per (task, backbone, init, trained
groups), `curves_figure()` the validation curves of the selected runs, `export()` writes the selection as
CSV under results/<scale>/. `.widget` builds the ipywidgets view (multi-selects, the table, the curves,
an "export CSV" button) on first use; ipywidgets is imported only then.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from ...groups import parse_groups
from ...io import write_text_atomic
from ...paths import results_dir
from ...training import RunDir
from ..paper import TASK_TITLES
from ..render.markdown import fmt_cell
from ..render.widgets import LazyWidget, png_bytes
from ..results.tables import load_curve, load_run

FILTERS = ("task", "backbone", "init", "groups", "seed")
GROUP_BY = ("task", "backbone", "init", "groups")
RUN_COLUMNS = ("run_id", "task", "backbone", "init", "groups", "seed", "variant", "steps", "test_accuracy",
               "test_masked_accuracy", "best_val_accuracy", "best_val_step", "stopped", "scale", "run_dir")
EXPORT_DIR = "exports"  # results/<scale>/exports/: where relative export paths go


def groups_label(groups) -> str:
    """The trained parameter groups as run ids write them: "full", or the groups joined by "+"."""
    groups = list(groups or ())
    return "full" if set(groups) >= set(parse_groups("full")) else "+".join(groups)


def variant(cfg: dict) -> str:
    """A short digest of a run's config without its seed: runs of one variant differ only by seed."""
    rest = {k: v for k, v in cfg.items() if k != "seed"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_row(run_dir: Path, result: dict) -> dict:
    """One run's line of the browser: what it is, and its numbers (`config`: the whole config)."""
    cfg = result.get("config") or {}
    groups = result.get("trained_groups") or cfg.get("train") or ()
    row = {"run_id": Path(run_dir).name, "groups": groups_label(groups), "variant": variant(cfg),
           "run_dir": str(run_dir), "config": cfg}
    for key in RUN_COLUMNS:
        if key not in row:
            row[key] = result.get(key, cfg.get(key))
    return row


def read_runs(scale: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every finished run of `scale` (a run directory with a result.json), one line each, and the run
    directories left out with the reason (unreadable result)."""
    root = results_dir(scale) / "runs"
    rows, skipped = [], {}
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        if not RunDir(d).finished:
            continue  # still running, or never finished
        try:
            rows.append(run_row(d, load_run(d)))
        except ValueError as e:
            skipped[d.name] = str(e)
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "config"]), skipped


def differing(configs) -> list[str]:
    """The config fields (seed aside) whose values are not the same in all of `configs`."""
    configs = [c if isinstance(c, dict) else {} for c in configs]
    keys = sorted({k for c in configs for k in c} - {"seed"})
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


class RunBrowser(LazyWidget):
    """The finished runs of one scale, a selection of them, and what the selection shows."""

    CONTROL_NAMES = (*FILTERS, "split", "export", "path", "grouped")  # the filters, the export button

    def __init__(self, scale: str = "cpu"):
        self.scale = scale
        self.runs, self.skipped = read_runs(scale)
        self.chosen: dict[str, list | None] = dict.fromkeys(FILTERS)  # None: every value
        self.split_variants = False  # table(): one line per config rather than per group
        self._curves: dict[str, pd.DataFrame | None] = {}
        self._widgets = None
        self._syncing = False

    def __len__(self) -> int:
        return len(self.runs)

    def options(self, name: str) -> list:
        """The values of one filter that the runs take, sorted."""
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}; filters: {', '.join(FILTERS)}")
        return sorted(self.runs[name].dropna().unique().tolist())

    # ---- selecting -------------------------------------------------------------------------------
    def filter(self, **chosen) -> RunBrowser:
        """Keep the runs whose task, backbone, init, groups and seed are among the values given (a list,
        or one value; None: any value). Filters not named stay as they were. Returns self."""
        for name, values in chosen.items():
            opts = self.options(name)
            if values is not None:
                values = [values] if isinstance(values, (str, int)) else list(values)
                unknown = [v for v in values if v not in opts]
                if unknown:
                    raise ValueError(f"{name} {unknown} matches no run of scale {self.scale!r}; there are: "
                                     f"{', '.join(map(str, opts)) or 'none'}")
            self.chosen[name] = values
        self._refresh()
        return self

    def reset(self) -> RunBrowser:
        return self.filter(**dict.fromkeys(FILTERS))

    def selection(self) -> pd.DataFrame:
        """The selected runs, one line each."""
        keep = pd.Series(True, index=self.runs.index)
        for name, values in self.chosen.items():
            if values is not None:
                keep &= self.runs[name].isin(values)
        return self.runs[keep].reset_index(drop=True)

    # ---- what the selection shows ------------------------------------------------------------------
    def table(self, split_variants: bool | None = None) -> pd.DataFrame:
        """Test accuracy (%) of the selection per (task, backbone, init, trained groups): mean and sample
        std over its runs (std empty for one run), the seeds and step budgets they cover. Runs of one group
        may differ by more than the seed (learning rate, steps, ...): `variants` counts the configs and
        `differs` names the config fields that vary; split_variants=True gives each config its own line
        (None: the browser's `split_variants`, the widget's check box)."""
        sel = self.selection()
        split_variants = self.split_variants if split_variants is None else split_variants
        by = [*GROUP_BY, "variant"] if split_variants else list(GROUP_BY)
        cols = [*by, "n_runs", "seeds", "steps", "variants", "differs", "mean", "std", "test accuracy (%)"]
        out = []
        for key, g in sel.groupby(by, sort=True):
            vals = g["test_accuracy"].dropna().astype(float) * 100
            mean = vals.mean() if len(vals) else float("nan")
            std = vals.std(ddof=1) if len(vals) > 1 else float("nan")
            out.append({**dict(zip(by, key)), "n_runs": len(g),
                        "seeds": ",".join(str(s) for s in sorted(g["seed"])),
                        "steps": ",".join(str(s) for s in sorted(set(g["steps"].dropna()))),
                        "variants": g["variant"].nunique(), "differs": ",".join(differing(g["config"])),
                        "mean": mean, "std": std, "test accuracy (%)": fmt_cell(mean, std)})
        return pd.DataFrame(out, columns=cols)

    def curve(self, run_dir: str) -> pd.DataFrame | None:
        """(step, val_accuracy) of one run from its metrics.jsonl; None when it has none."""
        if run_dir not in self._curves:
            try:
                c = load_curve(Path(run_dir))
            except (OSError, ValueError):
                c = None
            ok = c is not None and {"step", "val_accuracy"} <= set(c.columns)
            self._curves[run_dir] = c[["step", "val_accuracy"]].dropna() if ok else None
        return self._curves[run_dir]

    def curves(self) -> pd.DataFrame:
        """The validation curves of the selection, long: run_id, its group keys, step, val_accuracy."""
        parts = []
        for r in self.selection().itertuples(index=False):
            c = self.curve(r.run_dir)
            if c is not None and len(c):
                parts.append(c.assign(run_id=r.run_id, **{k: getattr(r, k) for k in (*GROUP_BY, "seed")}))
        cols = ["run_id", *GROUP_BY, "seed", "step", "val_accuracy"]
        return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)

    def curves_figure(self, max_legend: int = 20):
        """Validation accuracy against step of every selected run, one panel per task, one colour per
        (backbone, init, trained groups); a matplotlib Figure not registered with pyplot."""
        from matplotlib import colormaps
        from matplotlib.figure import Figure
        c = self.curves()
        tasks = sorted(c.task.unique()) or ["(no run selected)"]
        fig = Figure(figsize=(min(4.2 * len(tasks), 16), 3.4))
        axes = fig.subplots(1, len(tasks), squeeze=False)[0]
        keys = list(GROUP_BY[1:])
        labels = sorted({" / ".join(map(str, k)) for k in c[keys].itertuples(index=False)})
        cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
        colour = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}
        handles = {}
        for ax, task in zip(axes, tasks):
            for _, g in c[c.task == task].groupby("run_id", sort=True):
                lab = " / ".join(map(str, g.iloc[0][keys]))
                handles[lab], = ax.plot(g.step, 100 * g.val_accuracy, color=colour[lab], lw=1, alpha=0.8)
            ax.set_title(TASK_TITLES.get(task, task), fontsize=9)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("validation accuracy (%)")
        if 0 < len(handles) <= max_legend:
            fig.legend([handles[k] for k in sorted(handles)], sorted(handles), fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.0, 0.95), title="backbone / init / trained groups", title_fontsize=7)
        fig.suptitle(f"{c.run_id.nunique()} selected runs, scale {self.scale}", fontsize=9)
        fig.tight_layout()
        return fig

    def export(self, path: str | Path | None = None, grouped: bool = False) -> Path:
        """Write the selection (one line per run; grouped=True: `table()`) as CSV, atomically. A relative
        path (default runs_selection.csv / runs_table.csv) goes under results/<scale>/exports/."""
        path = Path(path or ("runs_table.csv" if grouped else "runs_selection.csv"))
        if not path.is_absolute():
            path = results_dir(self.scale) / EXPORT_DIR / path
        frame = self.table() if grouped else self.selection().drop(columns=["config"])
        write_text_atomic(path, frame.to_csv(index=False, float_format="%.6g"))
        return path

    # ---- the widget (LazyWidget: `widget`, `controls`): filters, the table, the curves, the export button ----

    def _build(self) -> dict:
        import ipywidgets as widgets
        w = {name: widgets.SelectMultiple(options=[(str(v), v) for v in self.options(name)], description=name,
                                    rows=min(8, max(2, len(self.options(name)))),
                                    layout={"width": "34em" if name == "groups" else "18em"})
             for name in FILTERS}
        for name in FILTERS:
            w[name].observe(lambda change, name=name: self._on_filter(name, change["new"]), names="value")
        w["split"] = widgets.Checkbox(value=self.split_variants, indent=False,
                                description="one line per config (runs that differ by more than the seed)")
        w["split"].observe(lambda change: self._on_split(change["new"]), names="value")
        w["path"] = widgets.Text(value="runs_selection.csv", description="file")
        w["grouped"] = widgets.Checkbox(value=False, description="grouped table, not runs", indent=False)
        w["export"] = widgets.Button(description="export CSV", icon="download")
        w["export"].on_click(lambda _: self._on_export())
        w["count"], w["table"], w["status"] = widgets.HTML(), widgets.HTML(), widgets.HTML()
        w["curves"] = widgets.Image(format="png")
        filters = widgets.HBox([w[n] for n in FILTERS], layout={"flex_flow": "row wrap"})
        w["box"] = widgets.VBox([filters, w["count"], w["split"], w["table"], w["curves"],
                                 widgets.HBox([w["path"], w["grouped"], w["export"]]), w["status"]])
        return w

    def _on_filter(self, name: str, values) -> None:
        if self._syncing:
            return
        self.filter(**{name: None if set(values) == set(self.options(name)) else list(values)})

    def _on_split(self, value: bool) -> None:
        self.split_variants = bool(value)
        self._refresh()

    def _on_export(self) -> None:
        w = self._widgets
        try:
            path = self.export(w["path"].value.strip() or None, grouped=w["grouped"].value)
            w["status"].value = f"wrote {len(self.table() if w['grouped'].value else self.selection())} lines to {path}"
        except (OSError, ValueError) as e:
            w["status"].value = f"<span style='color:#b00'>export failed: {e}</span>"

    def _refresh(self) -> None:
        """Bring the widget (if built) in line with the selection, then redraw the table and curves."""
        if self._widgets is None:
            return
        w = self._widgets
        self._syncing = True
        try:
            w["split"].value = self.split_variants
            for name in FILTERS:
                w[name].value = tuple(self.chosen[name] if self.chosen[name] is not None else self.options(name))
        finally:
            self._syncing = False
        sel = self.selection()
        skipped = f"; {len(self.skipped)} unreadable result(s) left out" if self.skipped else ""
        w["count"].value = f"<b>{len(sel)} of {len(self.runs)} runs</b> at scale <code>{self.scale}</code>{skipped}"
        w["table"].value = self.table().drop(columns=["mean", "std"]).to_html(index=False)
        w["curves"].value = png_bytes(self.curves_figure())
