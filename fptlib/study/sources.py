"""Beyond the paper (notebook 15): where FPT's gain comes from. Is it *language* pretraining, or any
pretraining of the same architecture (Amos et al. 2024: self-pretraining on the task's own training
inputs), or only the weights' statistics (Wu et al. 2022)? And which pretrained parts carry it: attention,
feed-forward layers, or no transformer at all?

Every arm is frozen as FPT is (input, output, layer norms and positions train), trained to convergence, and
trained at its own learning rate: chosen on validation at the first seed from `lrs` (Rothermel et al. 2021:
one shared rate can decide such comparisons), then the other seeds run at that rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ..config import SOURCE_INITS
from ..runs import PlannedRun, execute, options_for
from ..training import RunDir
from . import paper
from .base import Study, parameter
from .converged import ToConvergence
from .render.markdown import fmt_cell, frame_markdown
from .results.compare import level_with

# Each arm's init. The transplant arms keep the named pretrained groups and draw every other backbone
# tensor as init random does; layer norms and positions are pretrained in both (they train in every arm).
ARMS: dict[str, dict] = {
    "Language": {"init": "pretrained"},
    "Self-pretrained": {"init": "self-pretrained"},
    "Statistics": {"init": "stats"},
    "Shuffled": {"init": "shuffled"},
    "Random": {"init": "random"},
    "Attention pretrained": {"init": "pretrained", "keep": ("attention", "layernorm", "positions")},
    "Feed-forward pretrained": {"init": "pretrained", "keep": ("feedforward", "layernorm", "positions")},
    "No transformer": {"backbone": "pool", "init": "random"},
}
ABOUT = {
    "Language": "the language-pretrained backbone (FPT)",
    "Self-pretrained": "the same architecture fully trained on the task's own training inputs, masked tokens "
                       "to predict, then frozen",
    "Statistics": "random, each tensor drawn with its pretrained tensor's mean and std (Table 9)",
    "Shuffled": "the pretrained weights with each tensor's entries permuted: the same values, no structure",
    "Random": "the architecture's own random init",
    "Attention pretrained": "pretrained attention, random feed-forward layers",
    "Feed-forward pretrained": "pretrained feed-forward layers, random attention",
    "No transformer": "input layer, layer-normed tokens averaged, output layer: nothing mixes tokens",
}
# The two questions, each as (reference row, the rows held against it)
QUESTIONS: dict[str, tuple[str, list[str]]] = {
    "Is it language? Other sources of the same weights against language": (
        "Language", ["Self-pretrained", "Statistics", "Shuffled", "Random"]),
    "Which pretrained parts carry it? Parts kept against all of them": (
        "Language", ["Attention pretrained", "Feed-forward pretrained", "No transformer"]),
}
LR_COLUMNS = ("task", "row", "lr", "best_val", "chosen")


@dataclass
class PretrainingSources(ToConvergence, Study):
    """Notebook 15: the arms of ARMS on each task, frozen, trained to convergence, each at the learning rate
    its first seed chose on validation."""

    lrs: list = parameter(factory=list, doc="learning rates each arm chooses from on validation, at the first seed")
    GRID: ClassVar[dict] = {"seeds": [0, 1, 2], "tasks": ["bit-memory", "bit-xor", "listops", "mnist"],
                            "lrs": [1e-4, 3e-4, 1e-3]}
    # cpu: about a working day of two cores (`fpt plan --calibrate --only 15`: 12 hours of training steps, see
    # docs/guide.md). MNIST alone, where Tables 1-2 at convergence separate FPT from Random, and the two upper
    # rates: a run there converges in about 7,000 steps of 0.25 s, each further task of the three costs about
    # as much again, and the rate 1e-4 converges slowest.
    CPU_GRID: ClassVar[dict] = {"tasks": ["mnist"], "lrs": [3e-4, 1e-3]}
    SMOKE_GRID: ClassVar[dict] = {"tasks": ["bit-xor"]}  # its 16 runs are most of the smoke reproduction
    name: ClassVar[str] = "pretraining_sources"
    title: ClassVar[str] = ("Beyond the paper: where FPT's gain comes from - language against other pretraining, "
                            "and which pretrained parts carry it")
    rows: ClassVar[list] = list(ARMS)

    def arms(self, task):
        return list(ARMS.items())

    def paper_ref(self, row):
        return None

    # ---- the learning rate of each arm --------------------------------------------------------------
    def selection_runs(self) -> list[PlannedRun]:
        """The first seed of every arm at every learning rate of `lrs`."""
        return [PlannedRun(row, self.config(task, self.seeds[0], **kw, lr=float(lr)))
                for task in self.tasks for row, kw in self.arms(task) for lr in self.lrs]

    def lr_choice(self) -> pd.DataFrame:
        """Per task and arm, each learning rate's best validation accuracy at the first seed (finished runs
        only) and the chosen one: the highest, the first of `lrs` on a tie; none until all have finished."""
        out = []
        for task in self.tasks:
            for row, kw in self.arms(task):
                vals = {}
                for lr in self.lrs:
                    d = RunDir.of(self.config(task, self.seeds[0], **kw, lr=float(lr)))
                    vals[float(lr)] = d.read_result()["best_val_accuracy"] if d.finished else None
                done = all(v is not None for v in vals.values())
                best = max(vals, key=lambda lr: vals[lr]) if done else None
                out += [{"task": task, "row": row, "lr": lr, "best_val": v, "chosen": lr == best}
                        for lr, v in vals.items()]
        return pd.DataFrame(out, columns=LR_COLUMNS)

    def chosen_lrs(self) -> dict[tuple[str, str], float]:
        choice = self.lr_choice()
        return {(r.task, r.row): r.lr for r in choice[choice.chosen].itertuples()}

    def final_runs(self, provisional: bool = False) -> list[PlannedRun]:
        """Every seed of every arm at its chosen learning rate. An arm whose choice is not made yet is left
        out, or with provisional=True planned at the scale's default rate (what `fpt plan` counts)."""
        chosen, out = self.chosen_lrs(), []
        for task in self.tasks:
            for row, kw in self.arms(task):
                lr = chosen.get((task, row))
                if lr is None and not provisional:
                    continue
                out += [PlannedRun(row, self.config(task, seed, **kw, **({"lr": lr} if lr else {})))
                        for seed in self.seeds]
        return out

    def planned_runs(self) -> list[PlannedRun]:
        """The selection runs, then the other seeds at the chosen (or, before the choice, the default) rate."""
        first = self.selection_runs()
        ids = {r.config.run_id() for r in first}
        return first + [r for r in self.final_runs(provisional=True) if r.config.run_id() not in ids]

    def execute(self) -> pd.DataFrame:
        """Train the selection runs, choose each arm's learning rate, then train the other seeds at it; returns
        the table's runs (every seed at the chosen rate). With executor slurm and wait False, RunsPending
        until the selection has finished.

        Arms whose frozen backbone comes from a source run (self-pretrained) go first, selection and other
        seeds together: the source's weights are not committed (docs/guide.md), so the session that trains
        the source should train every run that freezes it. Only the order changes, no run."""
        options = options_for(self.executor, slurm=self.slurm, wait=self.wait)
        sourced = {row for row, kw in ARMS.items() if kw.get("init") in SOURCE_INITS}
        for rows in (sourced, set(ARMS) - sourced):
            for stage in (self.selection_runs, self.final_runs):
                execute(self.here([r for r in stage() if r.row in rows]), executor=self.executor,
                        progress=self.progress, **options)
        return execute(self.here(self.final_runs()), executor=self.executor, progress=self.progress, **options)

    # ---- the table ----------------------------------------------------------------------------------
    def summary(self, runs: pd.DataFrame, allow_mixed: bool = True) -> pd.DataFrame:
        s = super().summary(runs, allow_mixed)
        chosen = self.chosen_lrs()
        s["lr"] = [chosen.get((t, r)) for t, r in zip(s.task, s.row)]
        return s

    def markdown(self, summary: pd.DataFrame) -> str:
        s = summary[summary.metric == "test_accuracy"]
        tasks = [t for t in self.tasks if t not in self.missing_data()]
        cells = {(r.row, r.task): (f"{fmt_cell(r.mean, r.std)} (lr {r.lr:g})" if not pd.isna(r.mean) else r.note)
                 for r in s.itertuples()}
        table = pd.DataFrame([[row, ABOUT[row], *(cells.get((row, t), "not run") for t in tasks)] for row in self.rows],
                             columns=["arm", "frozen backbone", *(paper.TASK_TITLES.get(t, t) for t in tasks)])
        lines = [f"{self.title}. Test accuracy (%), mean ± std over seeds {self.seeds}, full held-out test split, "
                 f"every arm frozen as FPT is; in brackets the learning rate the arm chose from "
                 f"{', '.join(f'{lr:g}' for lr in self.lrs)} on validation at seed {self.seeds[0]}. "
                 "The paper has no number for these. Under the table, each question answered task by task: an "
                 "arm is decided above or below Language when the difference exceeds the glance's noise band "
                 "(each task's seed spread pooled over this table's arms).", "", frame_markdown(table), ""]
        for task, why in self.missing_data().items():
            lines.append(f"- {paper.TASK_TITLES.get(task, task)}: data not available offline: {why}")
        lines += [f"- **{q}**: " + level_with(summary, ref, rows)[1] for q, (ref, rows) in QUESTIONS.items()]
        return "\n".join(lines) + "\n\n" + self.lr_markdown() + "\n" + self.scale_note() + "\n"

    def lr_markdown(self) -> str:
        """Best validation accuracy of each arm's first seed at each learning rate; * marks the chosen one."""
        choice = self.lr_choice()
        if choice.empty:
            return ""
        choice["cell"] = [("–" if pd.isna(v) else f"{100 * v:.1f}") + (" *" if c else "")
                          for v, c in zip(choice.best_val, choice.chosen)]
        grid = choice.pivot_table(index=["task", "row"], columns="lr", values="cell", aggfunc="first", sort=False)
        grid = grid.reset_index().rename(columns={lr: f"lr {lr:g}" for lr in self.lrs})
        grid["task"] = [paper.TASK_TITLES.get(t, t) for t in grid.task]
        return (f"Learning-rate choice: best validation accuracy (%) of seed {self.seeds[0]} at each rate "
                "(* chosen; – not finished yet).\n\n" + frame_markdown(grid) + "\n")

    def scale_note(self) -> str:
        return (super().scale_note() + "\n- stopping: " + self.stopping_note()
                + "\n- self-pretraining: " + self.source_note())

    def source_note(self) -> str:
        """What each self-pretraining run did and cost, from its result (or its plan, before it ran)."""
        from ..training import source_config
        out = []
        for task in self.tasks_with_data:
            src = source_config(self.config(task, self.seeds[0], **ARMS["Self-pretrained"]))
            d = RunDir.of(src)
            if d.finished:
                res = d.read_result()
                took = res["wall_seconds"]
                took = f"{took / 60:.0f} min" if took >= 120 else f"{took:.0f} s"
                out.append(f"{paper.TASK_TITLES.get(task, task)} {res['steps']:,} steps, {took}, masked-prediction "
                           f"accuracy {100 * res['test_accuracy']:.1f} % and loss {res['test']['loss']:.3f} on "
                           "held-back masks")
            else:
                out.append(f"{paper.TASK_TITLES.get(task, task)} {src.steps:,} steps (not run yet)")
        return ("one run per task at seed 0, shared by every seed and rate like the language checkpoint; all "
                "parameters trained on the training split's inputs alone, 15 % of tokens masked: " + "; ".join(out))
