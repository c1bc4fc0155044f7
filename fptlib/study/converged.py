"""Tables 1, 2 and 6 at convergence (notebook 01a): the rows of Tables 1-2 trained until validation accuracy
stops improving, and Table 6 (gradient steps to convergence) from those same runs.

The equal-budget notebooks (01, 01b, 03) measure how far each arm gets in a fixed number of steps, which is
Table 6's question (how fast); the paper's Tables 1-2 ask what each arm reaches. These runs answer that one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ..config import converge_fields
from ..training import RunDir
from . import paper
from .base import HeadlineArms
from .results.tables import load_run
from .studies import StepsToConverge

STOP_COLUMNS = ("row", "task", "seed", "stopped", "steps", "cap", "best_val_step")


class ToConvergence:
    """A Study mixin: every run trains until its validation accuracy has not improved for `patience`
    evaluations, under a step cap meant never to be reached (config.converge_fields); the test accuracy is
    the last step's, as in the paper, which selects no checkpoint."""

    protocol: ClassVar[str] = "converged"

    def config(self, task, seed, **fields):
        return super().config(task, seed, **{**converge_fields(self.scale, task), **fields})

    def stops(self) -> pd.DataFrame:
        """How each finished run of the study stopped: by patience ("converged") or at its cap ("budget")."""
        out = []
        for r in self.runs():
            d = RunDir.of(r.config)
            if d.finished:
                res = load_run(d.path)
                out.append({"row": r.row, "task": r.config.task, "seed": r.config.seed, "stopped": res["stopped"],
                            "steps": res["steps"], "cap": r.config.steps, "best_val_step": res["best_val_step"]})
        return pd.DataFrame(out, columns=STOP_COLUMNS)

    def stopping_rule(self) -> str:
        """The rule in words, from the configs the study runs."""
        cfgs = {r.config.task: r.config for r in self.runs()}
        if not cfgs:
            return "no run can train here (no task has its data)"
        patience = sorted({c.patience for c in cfgs.values()})
        every = ", ".join(f"{paper.TASK_TITLES.get(t, t)} {c.eval_every:,}/{c.steps:,}" for t, c in cfgs.items())
        return (f"each run stopped once its validation accuracy had not improved for "
                f"{'/'.join(map(str, patience))} evaluations (evaluation interval / step cap per task: {every}); "
                "test accuracy of the last step")

    def stopping_note(self) -> str:
        """The rule, and every run that reached its cap rather than stopping by patience."""
        stops = self.stops()
        capped = stops[stops.stopped != "converged"]
        if stops.empty:
            return self.stopping_rule() + "; no run finished yet"
        if capped.empty:
            return self.stopping_rule() + f"; all {len(stops)} runs stopped by patience"
        where = "; ".join(f"{r} on {paper.TASK_TITLES.get(t, t)} (seed {', '.join(map(str, sorted(set(g.seed))))})"
                          for (r, t), g in capped.groupby(["row", "task"], sort=False))
        return (self.stopping_rule() + f"; {len(stops) - len(capped)} of {len(stops)} runs stopped by patience, "
                f"cap reached at {int(capped.cap.max()):,} steps: {where}")


@dataclass
class Converged(ToConvergence, StepsToConverge, HeadlineArms):
    """Tables 1-2's three rows (FPT, Random, the fully trained LSTM) trained to convergence, and Table 6 from
    the same runs: steps to convergence, FPT against Random."""

    name: ClassVar[str] = "table01_02_converged"
    title: ClassVar[str] = ("Tables 1-2 at convergence (each run trained until 20 evaluations bring no better "
                            "validation accuracy): frozen pretrained vs frozen random transformer vs LSTM")
    rows: ClassVar[list] = ["FPT", "Random", "LSTM"]
    CPU_GRID: ClassVar[dict] = {"tasks": ["bit-memory", "bit-xor", "listops", "mnist"]}
    TABLE6: ClassVar[str] = "table06_converged"

    def scale_note(self) -> str:
        return super().scale_note() + "\n- stopping: " + self.stopping_note()

    def criterion(self) -> str:
        return f"{self.within()}, in runs stopped by patience; `>` = the cap was reached first, a lower bound"

    def steps_summary(self, conv: pd.DataFrame) -> pd.DataFrame:
        """Table 6 in the shape of a study table (one line per row and task, metric steps_to_converge), so
        the report and the glance read it like any other: FPT against Random beside the paper's steps."""
        out = []
        for (row, task), g in conv[conv.row.isin(["FPT", "Random"])].groupby(["row", "task"], sort=False):
            capped = g[~g.converged.astype(bool)]
            out.append({"study": self.TABLE6, "row": row, "task": task, "metric": "steps_to_converge",
                        "mean": float(g.steps_to_converge.mean()),
                        "std": float(g.steps_to_converge.std()) if len(g) > 1 else float("nan"),
                        "n_seeds": len(g), "seeds": ",".join(str(int(s)) for s in sorted(g.seed)),
                        "backbone": self.backbone or self.config(task, 0).backbone, "scale": self.scale,
                        "steps": int(g.budget.max()), "paper": paper.lookup("table6", row, task),
                        "paper_source": paper.SOURCES["table6"] + f", row '{row}'",
                        # not a `note`: a note marks a line unmeasured, and a capped run still bounds it below
                        "capped": f"cap reached at {int(capped.cap.max()):,} steps (seeds "
                                  f"{', '.join(map(str, capped.seed))}): a lower bound" if len(capped) else ""})
        return pd.DataFrame(out)

    def save_table6(self, conv: pd.DataFrame) -> dict:
        from .render.markdown import save_table
        md = self.convergence_markdown(conv) + "\nStopping: " + self.stopping_note() + ".\n"
        return save_table(self.steps_summary(conv), md, self.tables_dir, self.TABLE6)
