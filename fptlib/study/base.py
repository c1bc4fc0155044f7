"""Studies: the grid of runs behind one paper table, cached by config, and the table built from them.

Each study is a dataclass whose fields are exactly the papermill `parameters` of its notebook.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ..config import PRESETS, PRETRAINED_INITS, SOURCE_STEPS, RunConfig, resolve
from ..data import data_missing
from ..models import weights_missing
from ..paths import figures_dir, results_dir
from ..runs import PlannedRun, check_executor, execute, options_for
from ..training import deviations
from . import paper
from .render.markdown import markdown_table, save_table
from .results.tables import load_run, summarise

_TYPES = {"str": str, "int": int, "list": list, "bool": bool, "float": (int, float), "dict": dict}


def check_parameter_types(study) -> None:
    """Notebook parameters arrive from papermill as literals; a wrong type gets a clear error, not a
    confusing failure ten cells later."""
    from dataclasses import fields as dc_fields
    for f in dc_fields(study):
        want = _TYPES.get(str(f.type))
        value = getattr(study, f.name)
        ok = want is None or (isinstance(value, want) and not (want is int and isinstance(value, bool)))
        if not ok:
            raise TypeError(f"parameter {f.name!r} of {type(study).__name__} must be {f.type}, got "
                            f"{type(value).__name__} {value!r} (papermill: -p {f.name} VALUE, or -y "
                            f"'{f.name}: [...]' for lists)")
    if getattr(study, "scale", None) not in PRESETS:
        raise ValueError(f"unknown scale {study.scale!r}; choose one of {', '.join(PRESETS)}")
    check_executor(getattr(study, "executor", "local"))


def parameter(default=MISSING, *, doc: str, factory=MISSING):
    """A study field, that is a papermill parameter of its notebook, with `doc`: what the notebook's
    parameters cell says beside it (notebooks/_make.py reads it from the field's metadata)."""
    return field(default=default, default_factory=factory, metadata={"doc": doc})


@dataclass
class Study:
    """The grid of runs behind one paper table and the table built from them. A subclass names its
    rows and, per task, the config of each row (`arms`); its dataclass fields are its notebook's
    papermill parameters, each with its `doc`."""

    scale: str = parameter("cpu", doc="smoke | cpu | paper")
    seeds: list = parameter(factory=list, doc="one run per seed and row")
    tasks: list = parameter(factory=list, doc="columns of the table")
    backbone: str = parameter("", doc="empty: the scale's default (smoke/cpu: minilm, paper: gpt2)")
    steps: int = parameter(0, doc="gradient steps per run; 0: the scale's per-task default")
    progress: bool = parameter(True, doc="progress bars")
    executor: str = parameter("local", doc="local (this machine) | slurm (one SLURM job per missing run, "
                                           "through submitit)")
    slurm: dict = parameter(factory=dict, doc="SLURM resources, e.g. {'partition': 'gpu', 'gpus_per_node': 1, "
                                              "'timeout_min': 600}")
    wait: bool = parameter(True, doc="slurm: wait for the jobs (progress bar); False: return now, finished runs "
                                     "are read next time")

    # The seeds and tasks a run of this study covers when left empty: the paper's grid, except that
    # the `cpu` scale may cut it (CPU_GRID) so the notebook finishes on two cores, and the `smoke` scale
    # (SMOKE_GRID) so the tests stay short. A cut is written under the table it produced (scale_note).
    GRID: ClassVar[dict] = {"seeds": [0, 1, 2], "tasks": list(paper.TASK_COLUMNS)}
    # How its runs stop: "budget" (a fixed number of steps) or "converged" (patience on validation,
    # converged.ToConvergence). Seed noise is pooled within one protocol only (results.compare.protocol_lines).
    protocol: ClassVar[str] = "budget"
    CPU_GRID: ClassVar[dict] = {}
    SMOKE_GRID: ClassVar[dict] = {}

    def __post_init__(self):
        check_parameter_types(self)
        for key, value in self.default_grid().items():
            if not getattr(self, key):
                setattr(self, key, list(value))
        self._declare_table()

    def default_grid(self, scale: str | None = None) -> dict:
        """The seeds and tasks this study runs at `scale` when its parameters leave them empty."""
        cut = {"cpu": self.CPU_GRID, "smoke": self.SMOKE_GRID}.get(scale or self.scale, {})
        return {**self.GRID, **cut}

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""          # the paper result this reproduces, for captions and the report
    rows: ClassVar[list] = []
    paper_table: ClassVar[str | None] = None  # paper.TABLES key; our row names are the paper's
    # A study whose table depends on one of its parameters declares its variants: that parameter's name
    # and, per value, the table's name, title and paper table (Ablation by init, Depth by output_only).
    VARIANT_OF: ClassVar[str] = ""
    VARIANTS: ClassVar[dict] = {}

    def _declare_table(self) -> None:
        """This instance's table: its variant's name, title and paper table, and the rows its parameters
        give (`rows_for`); the class's own where it declares none."""
        if self.VARIANT_OF:
            value = getattr(self, self.VARIANT_OF)
            if value not in self.VARIANTS:
                raise ValueError(f"{self.VARIANT_OF} must be one of {', '.join(map(repr, self.VARIANTS))}, "
                                 f"got {value!r}")
            for attr, v in self.VARIANTS[value].items():
                setattr(self, attr, v)
        rows = self.rows_for()
        if rows is not None:
            self.rows = rows

    def rows_for(self) -> list | None:
        """The table's rows where they follow from the parameters (depths, backbones, learning rates);
        None: the class's `rows`."""
        return None
    paper_rows: ClassVar[dict] = {}    # exceptions: our row -> (paper table, paper row)
    metric_titles: ClassVar[dict] = {"test_accuracy": ""}

    def arms(self, task: str) -> list[tuple[str, dict]]:
        """(row, RunConfig fields) for each row of the table on `task`."""
        raise NotImplementedError

    def config(self, task: str, seed: int, **fields) -> RunConfig:
        fields.setdefault("backbone", self.backbone or None)
        if self.steps:  # the notebook's step cap wins over a row's own budget
            fields["steps"] = self.steps
            if fields.get("init") in SOURCE_STEPS:  # and covers the source run too
                fields.setdefault(SOURCE_STEPS[fields["init"]], self.steps)
        return resolve(RunConfig(task=task, scale=self.scale, seed=seed, **fields))

    def missing_data(self) -> dict[str, str]:
        """Tasks of this study whose data is not here: they get a 'data not available' cell, no number."""
        out = {}
        for task in self.tasks:
            opts = resolve(RunConfig(task=task, scale=self.scale)).task_options
            why = data_missing(task, **opts)
            if why:
                out[task] = why
        return out

    def missing_weights(self) -> dict[str, str]:
        """Rows whose pretrained backbone is not on this machine, at a scale that downloads nothing
        (smoke, cpu): they get a 'weights not available offline' cell, no number."""
        if not PRESETS[self.scale].get("offline"):
            return {}
        out, looked_up = {}, {}
        for task in self.tasks:
            for row, kw in self.arms(task):
                backbone = kw.get("backbone") or self.backbone or PRESETS[self.scale]["backbone"]
                if kw.get("init", "pretrained") in PRETRAINED_INITS:
                    why = looked_up.setdefault(backbone, weights_missing(backbone))
                    if why:
                        out.setdefault(row, why)
        return out

    @property
    def tasks_with_data(self) -> list[str]:
        missing = self.missing_data()
        return [t for t in self.tasks if t not in missing]

    def runs(self) -> list[PlannedRun]:
        """The runs of the grid that can run here: data present, pretrained weights on disk."""
        return self.here(self.planned_runs())

    def here(self, runs: list[PlannedRun]) -> list[PlannedRun]:
        """Of `runs`, those that can run here: their task's data present, their row's weights on disk."""
        tasks, skip = set(self.tasks_with_data), self.missing_weights()
        return [r for r in runs if r.config.task in tasks and r.row not in skip]

    def planned_runs(self) -> list[PlannedRun]:
        """Every run of the grid as if every dataset and every backbone's weights were at hand."""
        return [PlannedRun(row, self.config(task, seed, **kw)) for task in self.tasks for seed in self.seeds
                for row, kw in self.arms(task)]

    def execute(self) -> pd.DataFrame:
        """Train what results/ does not hold (locally, or as SLURM jobs) and return one line per run; with
        executor slurm and wait False, only the runs finished so far."""
        options = options_for(self.executor, slurm=self.slurm, wait=self.wait)
        return execute(self.runs(), executor=self.executor, progress=self.progress, **options)

    def paper_ref(self, row: str) -> tuple[str, str] | None:
        if row in self.paper_rows:
            return self.paper_rows[row]
        return (self.paper_table, row) if self.paper_table else None

    def summary(self, runs: pd.DataFrame, allow_mixed: bool = True) -> pd.DataFrame:
        """The table's lines. Runs of different code or data versions are labelled (the `provenance`
        column and a warning above the Markdown table), or refused with allow_mixed=False."""
        s = summarise(runs, metrics=tuple(self.metric_titles), allow_mixed=allow_mixed)
        refs = [self.paper_ref(r) for r in s.row] if not s.empty else []
        if not s.empty:
            s["paper"] = [paper.lookup(*ref, t) if ref and m == "test_accuracy" else None
                          for ref, t, m in zip(refs, s.task, s.metric)]
            s["paper_source"] = [paper.SOURCES[ref[0]] + f", row '{ref[1]}'" if ref else ""
                                 for ref in refs]
            s["note"] = ""
        absent = [{"row": r, "task": t, "metric": "test_accuracy", "note": f"data not available offline: {why}",
                   "scale": self.scale} for t, why in self.missing_data().items() for r in self.rows]
        absent += [{"row": r, "task": t, "metric": m, "note": f"weights not available offline: {why}",
                    "scale": self.scale} for r, why in self.missing_weights().items() for t in self.tasks_with_data
                   for m in self.metric_titles if m != "test_masked_accuracy" or t == "bit-memory"]
        s = pd.concat([s, pd.DataFrame(absent)], ignore_index=True) if absent else s
        s.insert(0, "study", self.name)
        return s

    def scale_note(self) -> str:
        """What this scale changes against the paper, from the configs actually run."""
        lines = [f"Scale `{self.scale}`: {PRESETS[self.scale]['about']}."]
        full = self.default_grid("paper")
        ours = {k: [t for t in getattr(self, k) if t not in paper.EXTRA_COLUMNS or t in full[k]] if k == "tasks"
                else getattr(self, k) for k in full}
        cut = [f"{k} {ours[k]} (paper scale: {full[k]})" for k in full if ours[k] != full[k]]
        if cut:
            cpu_cut = self.scale == "cpu" and self.CPU_GRID and all(
                getattr(self, k) == v for k, v in self.CPU_GRID.items())
            lines.append("- grid: " + "; ".join(cut) + (" - the `cpu` scale's cut, to finish on two cores"
                                                          if cpu_cut else ""))
        if any(t in paper.EXTRA_COLUMNS for t in self.tasks):
            lines.append("- " + paper.EXTRA_NOTE)
        seen = set()
        for r in self.runs():
            for d in deviations(r.config):
                seen.add((r.config.task, d) if r.config.backbone != "lstm" else (r.config.task, "LSTM " + d))
        by_task: dict[str, list] = {}
        for task, d in sorted(seen):
            by_task.setdefault(task, []).append(d)
        for task, ds in by_task.items():
            lines.append(f"- {task}: " + "; ".join(ds))
        return "\n".join(lines)

    def caption(self) -> str:
        refs = sorted({ref[0] for r in self.rows if (ref := self.paper_ref(r))})
        src = "; ".join(paper.SOURCES[t].split(", via")[0] for t in refs) or "the paper gives none"
        return (f"{self.title}. Test accuracy (%), mean ± std over seeds {self.seeds}, full held-out test "
                f"split; in brackets the paper's number ({src}; GPT-2 base unless the row says otherwise). "
                f"Ours: scale `{self.scale}`, backbone {self.backbone or PRESETS[self.scale]['backbone']}.")

    def markdown(self, summary: pd.DataFrame) -> str:
        return (markdown_table(summary, rows=self.rows, tasks=self.tasks, metric_titles=self.metric_titles,
                               caption=self.caption(), missing=self.missing_data(),
                               row_notes={r: f"weights not available offline: {why}"
                                          for r, why in self.missing_weights().items()})
                + "\n" + self.scale_note() + "\n")

    def save(self, summary: pd.DataFrame) -> dict[str, Path]:
        return save_table(summary, self.markdown(summary), self.tables_dir, self.name)

    @property
    def tables_dir(self) -> Path:
        return results_dir(self.scale) / "tables"

    @property
    def figures(self) -> Path:
        return figures_dir(self.scale)

    def figure_name(self, kind: str = "") -> str:
        """The file of one of its figures: <name>_<kind>.png (kind "bars", "curves", ...), or <name>.png."""
        return f"{self.name}_{kind}.png" if kind else f"{self.name}.png"

    def figure_path(self, kind: str = "") -> Path:
        return self.figures / self.figure_name(kind)


@dataclass
class HeadlineArms(Study):
    """The paper's three headline arms, whichever table they make: FPT (pretrained, frozen), the same
    backbone random and frozen, and the fully trained LSTM, each row named after its arm. Tables 1-2
    (notebook 01), Table 1's LSTM (01b), the offline tasks (01c), Tables 6-7 (03) and Tables 1, 2 and 6 at
    convergence (01a) are this with their own rows."""

    ARMS: ClassVar[dict] = {"FPT": {"init": "pretrained"}, "Random": {"init": "random"},
                            "LSTM": {"backbone": "lstm", "init": "random", "train": ("full",)}}
    paper_rows: ClassVar[dict] = {"FPT": ("table2", "FPT"), "Random": ("table2", "Random"),
                                  "LSTM": ("table1", "Full LSTM")}
    metric_titles: ClassVar[dict] = {"test_accuracy": "", "test_masked_accuracy": " (masked bits only)"}

    def arms(self, task):
        return [(r, self.ARMS[r]) for r in self.rows]

    def paper_clause(self) -> str:
        """Where the numbers in brackets come from, for the caption."""
        sources = "FPT, Random: Table 2" + ("; LSTM: Table 1 'Full LSTM'" if "LSTM" in self.rows else "")
        return f"in brackets the paper's number ({sources}, GPT-2 base)"

    def caption(self) -> str:
        width = resolve(RunConfig(task=self.tasks[0], scale=self.scale, backbone="lstm")).lstm_width
        lstm = (f" (LSTM: width {width}, 3 layers, all parameters trained)"
                if "LSTM" in self.rows else "")
        return (f"Test accuracy (%), mean ± std over seeds {self.seeds}, full held-out test split; "
                f"{self.paper_clause()}. Ours: scale `{self.scale}`, "
                f"backbone {self.backbone or PRESETS[self.scale]['backbone']}{lstm}.")


@dataclass
class Tables1And2(HeadlineArms):
    """Notebook 01: paper Tables 1-2, FPT (pretrained, frozen) vs the same backbone random and frozen,
    over seeds. Table 1's fully trained LSTM is notebook 01b (study.studies.LSTMBaseline): one notebook of
    the three rows takes longer than the hour a `cpu` notebook may."""

    name: ClassVar[str] = "table01_02"
    title: ClassVar[str] = "Tables 1-2: frozen pretrained vs frozen random transformer"
    rows: ClassVar[list] = ["FPT", "Random"]


def load_runs(run_dirs: list[str], rows: list[str]) -> pd.DataFrame:
    """Result files back into the per-run frame `execute` returns (for notebooks that only read)."""
    return pd.DataFrame([{"row": r, "run_dir": d, **load_run(d)} for r, d in zip(rows, run_dirs)])
