"""Studies: the grid of runs behind one paper table, cached by config, and the table built from them.

Each study is a dataclass whose fields are exactly the papermill `parameters` of its notebook.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from . import paper
from .config import PRESETS, RunConfig, deviations, resolve
from .tasks import data_missing
from .paths import figures_dir, results_dir
from .results import load_run, markdown_table, save_table, summarise
from .training import run_dir_for, train  # noqa: F401 (run_dir_for re-exported)


@dataclass
class Run:
    row: str          # the table row this run belongs to (e.g. "FPT")
    config: RunConfig  # resolved




WORKERS_ENV = "FPT_WORKERS"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Torch threads of each run trained side by side: the cores shared out evenly."""
    return max(1, usable_cores() // workers)


def default_workers(todo: list[Run]) -> int:
    """How many runs to train side by side: $FPT_WORKERS if set; else one per core (at most 4) on a
    machine without a GPU. The models here are too small for torch to use two cores well, so two
    one-thread runs side by side beat two two-thread runs in a row (README: Performance).
    One at a time with a GPU (the runs would share it) and at the smoke scale (its runs take seconds,
    less than starting a worker)."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{WORKERS_ENV}={env!r}: give a whole number of runs to train at once, 1 or more")
        return int(env)
    import torch
    if torch.cuda.is_available() or all(r.config.scale == "smoke" for r in todo):
        return 1
    return max(1, min(usable_cores(), 4))


def _train_in_worker(job: tuple[RunConfig, str, int]) -> str:
    """One run in a worker process, with its share of the cores (spawned: imports fptlib afresh)."""
    cfg, run_dir, threads = job
    import torch
    torch.set_num_threads(threads)
    train(cfg, run_dir, resume=True, progress=False, wait_for_lock=True)
    return run_dir


def _train_side_by_side(todo: list[Run], workers: int, threads: int, bar) -> None:
    """Train runs in `workers` processes. Runs are independent and locked by directory (two that need
    the same Bit Memory source wait for each other). A failed run stops the others; an interrupt
    stops the workers, whose runs resume from their last checkpoint next time."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    configs = {str(run_dir_for(r.config)): r.config for r in todo}  # one job per run directory
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    others = set(multiprocessing.active_children())  # children that are not the pool's stay alone
    pool = ProcessPoolExecutor(min(workers, len(configs)), mp_context=ctx)
    try:
        pending = {pool.submit(_train_in_worker, (cfg, d, threads)) for d, cfg in configs.items()}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                bar.set_postfix_str(Path(f.result()).name[:48])  # re-raises a worker's error here
                bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        workers_alive = [p for p in multiprocessing.active_children() if p not in others]  # runs keep checkpoints
        for p in workers_alive:
            p.terminate()
        for p in workers_alive:  # gone before this returns, locks released
            p.join(timeout=30)
        raise
    pool.shutdown()


def execute(runs: list[Run], progress: bool = True, workers: int | None = None) -> pd.DataFrame:
    """Train every run that has no result yet (resuming unfinished ones); one line per run.
    workers: runs trained side by side (None: default_workers). On a CPU a run's numbers depend on
    its thread count, cores // workers (README: A run), not on the order runs finish in."""
    from tqdm.auto import tqdm
    rows = []
    todo = [r for r in runs if not (run_dir_for(r.config) / "result.json").exists()]
    workers = default_workers(todo) if workers is None else workers
    # With workers > 1 even a lone run goes to a worker: a run's thread count (cores // workers) must
    # not depend on how many runs happen to be missing, since the numbers depend on it.
    side = workers > 1 and bool(todo)
    bar = tqdm(total=len(todo), desc=f"runs to compute ({len(runs) - len(todo)} cached"
               + (f", {workers} side by side)" if side else ")"), disable=not progress or not todo)
    if side:
        threads = threads_per_worker(workers)
        if progress:
            print(f"training {len(todo)} run(s) in up to {workers} processes side by side, "
                  f"{threads} torch thread(s) each ({WORKERS_ENV} sets how many)")
        _train_side_by_side(todo, workers, threads, bar)
    for r in runs:
        d = run_dir_for(r.config)
        cached = (d / "result.json").exists()
        # Another process may be computing the same run: wait for it and reuse its result.
        res = train(r.config, d, resume=True, progress=progress, wait_for_lock=True)
        if not cached:
            bar.update(1)
        rows.append({"row": r.row, "run_dir": str(d), **{k: res.get(k) for k in (
            "task", "backbone", "init", "seed", "scale", "steps", "test_accuracy", "test_masked_accuracy",
            "train_accuracy", "val_accuracy", "trainable_params", "total_params", "frozen_unchanged",
            "wall_seconds", "config_hash", "data_hash", "versions")},
            # what the table's provenance check compares (results.provenance_issues)
            "task_options": (res.get("config") or {}).get("task_options")})
    bar.close()
    return pd.DataFrame(rows)


_TYPES = {"str": str, "int": int, "list": list, "bool": bool, "float": (int, float)}


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


@dataclass
class Study:
    """The grid of runs behind one paper table and the table built from them. A subclass names its
    rows and, per task, the config of each row (`arms`); its dataclass fields are its notebook's
    papermill parameters."""

    scale: str = "cpu"                 # smoke | cpu | paper
    seeds: list = field(default_factory=list)  # empty: the scale's grid (GRID, CPU_GRID)
    tasks: list = field(default_factory=list)  # empty: the scale's grid
    backbone: str = ""                 # empty: the scale's default (cpu: minilm, paper: gpt2)
    steps: int = 0                     # 0: the scale's per-task default
    progress: bool = True

    # The seeds and tasks a run of this study covers when left empty: the paper's grid, except that
    # the `cpu` scale may cut it (CPU_GRID) so the notebook finishes on two cores. A cut is written
    # under the table it produced (scale_note).
    GRID: ClassVar[dict] = {"seeds": [0, 1, 2], "tasks": list(paper.TASK_COLUMNS)}
    CPU_GRID: ClassVar[dict] = {}

    def __post_init__(self):
        check_parameter_types(self)
        for key, value in self.default_grid().items():
            if not getattr(self, key):
                setattr(self, key, list(value))

    def default_grid(self, scale: str | None = None) -> dict:
        """The seeds and tasks this study runs at `scale` when its parameters leave them empty."""
        return {**self.GRID, **(self.CPU_GRID if (scale or self.scale) == "cpu" else {})}

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""          # the paper result this reproduces, for captions and the report
    rows: ClassVar[list] = []
    paper_table: ClassVar[str | None] = None  # paper.TABLES key; our row names are the paper's
    paper_rows: ClassVar[dict] = {}    # exceptions: our row -> (paper table, paper row)
    metric_titles: ClassVar[dict] = {"test_accuracy": ""}

    def arms(self, task: str) -> list[tuple[str, dict]]:
        """(row, RunConfig fields) for each row of the table on `task`."""
        raise NotImplementedError

    def config(self, task: str, seed: int, **fields) -> RunConfig:
        fields.setdefault("backbone", self.backbone or None)
        return resolve(RunConfig(task=task, scale=self.scale, seed=seed, steps=self.steps or None, **fields))

    def missing_data(self) -> dict[str, str]:
        """Tasks of this study whose data is not here: they get a 'data not available' cell, no number."""
        out = {}
        for task in self.tasks:
            opts = resolve(RunConfig(task=task, scale=self.scale)).task_options
            why = data_missing(task, **opts)
            if why:
                out[task] = why
        return out

    @property
    def tasks_with_data(self) -> list[str]:
        missing = self.missing_data()
        return [t for t in self.tasks if t not in missing]

    def runs(self) -> list[Run]:
        return [Run(row, self.config(task, seed, **kw)) for task in self.tasks_with_data
                for seed in self.seeds for row, kw in self.arms(task)]

    def execute(self) -> pd.DataFrame:
        return execute(self.runs(), progress=self.progress)

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
        s = pd.concat([s, pd.DataFrame(absent)], ignore_index=True) if absent else s
        s.insert(0, "study", self.name)
        return s

    def scale_note(self) -> str:
        """What this scale changes against the paper, from the configs actually run."""
        lines = [f"Scale `{self.scale}`: {PRESETS[self.scale]['about']}."]
        full = self.default_grid("paper")
        cut = [f"{k} {getattr(self, k)} (paper scale: {full[k]})" for k in full if getattr(self, k) != full[k]]
        if cut:
            cpu_cut = self.scale == "cpu" and self.CPU_GRID and all(
                getattr(self, k) == v for k, v in self.CPU_GRID.items())
            lines.append("- grid: " + "; ".join(cut) + (" - the `cpu` scale's cut, to finish on two cores"
                                                          if cpu_cut else ""))
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
                               caption=self.caption(), missing=self.missing_data()) + "\n" + self.scale_note() + "\n")

    def save(self, summary: pd.DataFrame) -> dict[str, Path]:
        return save_table(summary, self.markdown(summary), results_dir(self.scale) / "tables", self.name)

    @property
    def figures(self) -> Path:
        return figures_dir(self.scale)


@dataclass
class Table12(Study):
    """Notebook 01: paper Tables 1-2, FPT (pretrained, frozen) vs the same backbone random and frozen,
    over seeds. Table 1's fully trained LSTM is notebook 01b (studies.LSTMBaseline): one notebook of
    the three rows takes longer than the hour a `cpu` notebook may."""

    name: ClassVar[str] = "table01_02"
    title: ClassVar[str] = "Tables 1-2: frozen pretrained vs frozen random transformer"
    rows: ClassVar[list] = ["FPT", "Random"]
    ARMS: ClassVar[dict] = {"FPT": {"init": "pretrained"}, "Random": {"init": "random"},
                            "LSTM": {"backbone": "lstm", "init": "random", "train": ("full",)}}
    paper_rows: ClassVar[dict] = {"FPT": ("table2", "FPT"), "Random": ("table2", "Random"),
                                  "LSTM": ("table1", "Full LSTM")}
    metric_titles: ClassVar[dict] = {"test_accuracy": "", "test_masked_accuracy": " (masked bits only)"}

    def arms(self, task):
        return [(r, self.ARMS[r]) for r in self.rows]

    def caption(self) -> str:
        lstm = (f" (LSTM: width {PRESETS[self.scale]['lstm_width']}, 3 layers, all parameters trained)"
                if "LSTM" in self.rows else "")
        sources = "FPT, Random: Table 2" + ("; LSTM: Table 1 'Full LSTM'" if "LSTM" in self.rows else "")
        return (f"Test accuracy (%), mean ± std over seeds {self.seeds}, full held-out test split; "
                f"in brackets the paper's number ({sources}, GPT-2 base). Ours: scale `{self.scale}`, "
                f"backbone {self.backbone or PRESETS[self.scale]['backbone']}{lstm}.")


def load_runs(run_dirs: list[str], rows: list[str]) -> pd.DataFrame:
    """Result files back into the per-run frame `execute` returns (for notebooks that only read)."""
    return pd.DataFrame([{"row": r, "run_dir": d, **load_run(d)} for r, d in zip(rows, run_dirs)])
