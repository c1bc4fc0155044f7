"""The attention explorer: notebook 04's maps, one choice at a time, in JupyterLab.

`AttentionExplorer` holds a choice — run (task), model (trained / untrained), layer, one head or the
mean over heads, one test example or a mean over examples — and computes what it shows from
`fptlib.study.attention` alone (`measure`, `figures`): the (T, T) matrix, the token labels and red boxes of the static
figures, and the alignment rows (`xor_alignment` / `memory_alignment`) of the current choice beside the
module's per-layer table. Nothing of that needs a browser; `.widget` builds the ipywidgets view on first
use (ipywidgets is imported only then), and under papermill it is an output nobody looks at.

Layers and heads are numbered from 1, as in the tables and figures; examples from 0 (their position
among the analysed test examples).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..render.widgets import LazyWidget, png_bytes
from . import figures, measure

MODELS = ("trained", "untrained")


CONTROLS = ("task", "run", "model", "layer", "head", "examples")  # the widget's controls


_KEEP = object()  # select(): leave this part of the choice as it is


@dataclass(frozen=True)
class Choice:
    run: str                          # a key of the explorer's runs
    model: str = "trained"
    layer: int = 1                    # 1-based
    head: int | None = None           # 1-based; None: mean over heads
    example: int | None = None        # 0-based; None: mean over examples
    pattern: int | None = None        # Bit Memory, example None: only the examples repeating this pattern


@dataclass
class _Pending:
    """A run whose Analysis is computed when it is first chosen (kept models from the cache)."""

    task: str
    load: Callable[[], measure.Analysis]


class AttentionExplorer(LazyWidget):
    """Attention maps of one or more analysed runs, one choice at a time.

    analyses: task (or any label) -> `measure.Analysis`, e.g. {"bit-xor": xor, "bit-memory": mem}, or
    a sequence of Analyses (labelled by run id). `from_cache(scale)` offers every model the attention
    study kept in results/<scale>/attention/, analysed when first chosen.
    """

    CONTROL_NAMES = CONTROLS

    def __init__(self, analyses: Mapping[str, measure.Analysis] | Iterable[measure.Analysis],
                 run: str | None = None):
        if not isinstance(analyses, Mapping):
            analyses = {an.cfg.run_id(): an for an in analyses}
        if not analyses:
            raise ValueError("nothing to explore: no analysed run (run measure.analyse, or the attention "
                             "study at this scale, first)")
        self._runs: dict[str, measure.Analysis | _Pending] = dict(analyses)
        self._widgets = None
        self._syncing = False
        self.choice = self._default_choice(run or next(iter(self._runs)))

    @classmethod
    def from_cache(cls, scale: str, n_examples: int = 256) -> AttentionExplorer:
        """Every trained model kept in results/<scale>/attention/, analysed (loaded, never retrained) on
        `n_examples` test examples when first chosen."""
        entries = measure.cached_runs(scale)
        if not entries:
            raise ValueError(f"no trained model kept in the attention cache of scale {scale!r} (run notebook 04, "
                             f"`fpt reproduce --scale {scale} --only 04`, first)")
        return cls({e["run_id"]: _Pending(e["config"]["task"],
                                          lambda e=e: measure.analyse_cached(e, n_examples=n_examples))
                    for e in entries})

    # ---- what there is to choose from ----------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return sorted({self._task_of(r) for r in self._runs})

    def runs(self, task: str | None = None) -> list[str]:
        return [r for r in self._runs if task is None or self._task_of(r) == task]

    def _task_of(self, run: str) -> str:
        v = self._runs[run]
        return v.task if isinstance(v, _Pending) else v.task_name

    def analysis(self, run: str | None = None) -> measure.Analysis:
        """The Analysis of `run` (the current one by default), computed now if it was pending."""
        run = run or self.choice.run
        if isinstance(self._runs[run], _Pending):
            self._runs[run] = self._runs[run].load()
        return self._runs[run]

    @property
    def an(self) -> measure.Analysis:
        return self.analysis()

    def _default_choice(self, run: str) -> Choice:
        if run not in self._runs:
            raise ValueError(f"unknown run {run!r}; choose one of {', '.join(self._runs)}")
        an = self.analysis(run)
        # Bit Memory opens as its static figures do: the examples repeating the first one's pattern
        pattern = int(self.patterns(an)[0]) if an.task_name == "bit-memory" else None
        return Choice(run=run, pattern=pattern)

    @staticmethod
    def patterns(an: measure.Analysis) -> np.ndarray:
        """Bit Memory: which stored pattern each analysed example's query repeats."""
        return measure.query_patterns(an.x.numpy(), an.n_patterns)

    # ---- choosing ----------------------------------------------------------------------------------
    def select(self, task: str | None = None, run: str | None = None, model: str | None = None,
               layer: int | None = None, head=_KEEP, example=_KEEP, pattern=_KEEP) -> AttentionExplorer:
        """Change part of the choice (the rest stays): `task` moves to that task's first run unless `run`
        is given; head=None is the mean over heads, example=None the mean over examples (Bit Memory:
        over those repeating `pattern`, or over all of them with pattern=None). Returns self."""
        c = self.choice
        if task is not None and run is not None and run in self._runs and self._task_of(run) != task:
            raise ValueError(f"run {run!r} is of task {self._task_of(run)!r}, not {task!r}")
        if task is not None and run is None and (task != self._task_of(c.run)):
            if not self.runs(task):
                raise ValueError(f"no run of task {task!r}; there are: {', '.join(self.tasks)}")
            run = self.runs(task)[0]
        if run is not None and run != c.run:  # keep what still applies to the other run
            new, an = self._default_choice(run), self.analysis(run)
            keep_head = c.head is not None and c.head <= an.maps["trained"].shape[2]
            c = replace(new, model=c.model, layer=min(c.layer, an.n_layers), head=c.head if keep_head else None)
        c = replace(c, **{k: v for k, v in (("model", model), ("layer", layer)) if v is not None})
        c = replace(c, **{k: v for k, v in (("head", head), ("example", example), ("pattern", pattern))
                          if v is not _KEEP})
        if example is not _KEEP and example is not None and pattern is _KEEP:
            c = replace(c, pattern=None)
        self._check(c)
        self.choice = c
        self._refresh()
        return self

    def _check(self, c: Choice) -> None:
        an = self.analysis(c.run)
        _, B, H, _, _ = an.maps["trained"].shape
        if c.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {c.model!r}")
        if not 1 <= c.layer <= an.n_layers:
            raise ValueError(f"layer {c.layer} does not exist: layers are 1..{an.n_layers}")
        if c.head is not None and not 1 <= c.head <= H:
            raise ValueError(f"head {c.head} does not exist: heads are 1..{H} (None: mean over heads)")
        if c.example is not None and not 0 <= c.example < B:
            raise ValueError(f"example {c.example} does not exist: examples are 0..{B - 1} (None: mean)")
        if c.pattern is not None:
            if an.task_name != "bit-memory":
                raise ValueError("pattern applies to Bit Memory only")
            if c.example is not None:
                raise ValueError("give an example or a pattern to average over, not both")
            if not (self.patterns(an) == c.pattern).any():
                raise ValueError(f"no analysed example repeats pattern {c.pattern}")

    # ---- what is shown -----------------------------------------------------------------------------
    def examples(self) -> np.ndarray:
        """Indices of the examples the current map is taken on (one, or those averaged)."""
        c, an = self.choice, self.an
        if c.example is not None:
            return np.array([c.example])
        if c.pattern is not None:
            return np.flatnonzero(self.patterns(an) == c.pattern)
        return np.arange(an.maps[c.model].shape[1])

    def _selected(self) -> np.ndarray:
        """(examples, heads, T, T) of the current choice (one head kept as a heads axis of one)."""
        c = self.choice
        a = self.an.maps[c.model][c.layer - 1][self.examples()]
        return a if c.head is None else a[:, [c.head - 1]]

    def current_map(self) -> np.ndarray:
        """The (T, T) matrix shown: rows the attending tokens, columns the attended ones."""
        return self._selected().mean(axis=(0, 1))

    def current_pattern(self) -> int | None:
        """Bit Memory: the stored pattern whose tokens the red boxes mark (None: no boxes)."""
        c = self.choice
        if self.an.task_name != "bit-memory":
            return None
        return int(self.patterns(self.an)[c.example]) if c.example is not None else c.pattern

    def token_labels(self) -> list[str]:
        return figures.token_labels(self.an)[0]

    def marked_cells(self) -> list[tuple[int, int]]:
        """(row, column) of the red boxes: where each output / query token should look."""
        return figures.marked_cells(self.an, self.current_pattern())

    def scores(self) -> pd.DataFrame:
        """The alignment rows of the current choice, one per output (Bit XOR) or query (Bit Memory) token:
        `measure.xor_alignment` / `memory_alignment` of the map shown, over its examples and heads
        (`best_head` 1-based, as in the tables; left out when one head is chosen)."""
        c, an = self.choice, self.an
        a = self._selected()
        causal = measure.is_causal(an.maps[c.model][c.layer - 1])  # as the per-layer table decides it
        if an.task_name == "bit-xor":
            t = measure.xor_alignment(a, a.shape[-1] // 2, causal=causal)
        else:
            t = measure.memory_alignment(a, an.x.numpy()[self.examples()], an.n_patterns, causal=causal)
        best = [col for col in t.columns if col.startswith("best_head")]
        if c.head is not None:
            return t.drop(columns=best).assign(head=c.head)
        return t.assign(best_head=t.best_head + 1)

    def layer_rows(self) -> pd.DataFrame:
        """The module's own per-layer table (`Analysis.table`) at the current layer: trained and untrained,
        over all analysed examples and heads."""
        t = self.an.table
        return t[t.layer == self.choice.layer].reset_index(drop=True)

    def title(self) -> str:
        c, an = self.choice, self.an
        heads = "mean over heads" if c.head is None else f"head {c.head}"
        if c.example is not None:
            ex = f"example {c.example}"
        elif c.pattern is not None:
            ex = f"mean over the {len(self.examples())} examples whose query repeats pattern {c.pattern}"
        else:
            ex = f"mean over {len(self.examples())} test examples"
        return f"{an.cfg.task}, {c.model}, layer {c.layer}, {heads}, {ex}"

    def figure(self):
        """The heatmap as a matplotlib Figure (not registered with pyplot: nothing shows by itself)."""
        from matplotlib.figure import Figure
        fig = Figure(figsize=(5.8, 5.2))
        ax = fig.add_subplot()
        im = figures.draw_map(ax, self.current_map(), self.an, self.title().replace(", mean", ",\nmean"),
                        pattern=self.current_pattern())
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        return fig

    def png(self) -> bytes:
        return png_bytes(self.figure())

    def legend(self) -> str:
        """What the token labels and red boxes mean, for the current task."""
        if self.an.task_name == "bit-xor":
            n = self.an.maps["trained"].shape[-1] // 2
            return (f"a0..a{n - 1}: the first string's bits; b0..b{n - 1}: the second's, which are also the "
                    f"output tokens. Output token b<i> (position {n}+i) must give a<i> XOR b<i>: the red boxes "
                    "mark those two inputs in its row. Rows below the dashed line are the output tokens.")
        return ("p<k>.<j>: token j of stored pattern k; q.<j>: token j of the query (below the dashed line). "
                "Red boxes: query token j on token j of the pattern the query repeats (for one example, or "
                "a mean over the examples repeating one pattern).")

    # ---- the widget (LazyWidget: `widget`, `controls`): the choice controls, the heatmap, the scores ---------
    def _build(self) -> dict:
        import ipywidgets as widgets
        w = {"task": widgets.Dropdown(description="task"),
             "run": widgets.Dropdown(description="run", layout={"width": "46em"}),
             "model": widgets.ToggleButtons(options=list(MODELS), description="model"),
             "layer": widgets.IntSlider(min=1, max=1, description="layer", continuous_update=False),
             "head": widgets.Dropdown(description="head"), "examples": widgets.Dropdown(description="examples",
                                                                            layout={"width": "34em"}),
             "caption": widgets.HTML(), "image": widgets.Image(format="png"), "scores": widgets.HTML(),
             "legend": widgets.HTML()}
        for name in CONTROLS:
            w[name].observe(lambda change, name=name: self._on_change(name, change["new"]), names="value")
        w["box"] = widgets.VBox([widgets.HBox([w["task"], w["run"]]), w["model"], widgets.HBox([w["layer"], w["head"]]),
                           w["examples"], w["caption"],
                           widgets.HBox([w["image"], widgets.VBox([w["scores"]], layout={"overflow": "auto"})]),
                           w["legend"]])
        return w

    def _on_change(self, name: str, value) -> None:
        if self._syncing:
            return
        if name == "examples":
            kind, i = value
            self.select(example=i if kind == "example" else None, pattern=i if kind == "pattern" else None)
        elif name == "head":
            self.select(head=value or None)
        else:
            self.select(**{name: value})

    def _example_options(self) -> list[tuple[str, tuple]]:
        an = self.an
        B = an.maps["trained"].shape[1]
        opts = [(f"mean over all {B} examples", ("all", None))]
        if an.task_name == "bit-memory":
            which = self.patterns(an)
            opts += [(f"mean over the {int((which == k).sum())} examples repeating pattern {k}", ("pattern", k))
                     for k in range(an.n_patterns) if (which == k).any()]
            return opts + [(f"example {i} (repeats pattern {which[i]})", ("example", i)) for i in range(B)]
        return opts + [(f"example {i}", ("example", i)) for i in range(B)]

    def _refresh(self) -> None:
        """Bring the widget (if built) in line with the choice, then draw."""
        if self._widgets is None:
            return
        w, c, an = self._widgets, self.choice, self.an
        H = an.maps["trained"].shape[2]
        self._syncing = True
        try:
            w["task"].options = self.tasks
            w["task"].value = an.task_name
            w["run"].options = self.runs(an.task_name)
            w["run"].value = c.run
            w["model"].value = c.model
            w["layer"].max = an.n_layers
            w["layer"].value = c.layer
            w["head"].options = [("mean over heads", 0)] + [(f"head {h}", h) for h in range(1, H + 1)]
            w["head"].value = c.head or 0
            w["examples"].options = self._example_options()
            w["examples"].value = (("example", c.example) if c.example is not None else
                                   ("pattern", c.pattern) if c.pattern is not None else ("all", None))
        finally:
            self._syncing = False
        w["caption"].value = f"<p style='max-width:80em'>{an.caption()}</p>"
        w["image"].value = self.png()
        w["scores"].value = (f"<b>per-layer table, layer {c.layer}</b> (all examples, mean over heads)"
                             f"{self.layer_rows().round(3).to_html(index=False)}"
                             f"<b>this choice, per {'output' if an.task_name == 'bit-xor' else 'query'} token</b>"
                             f"{self.scores().round(3).to_html(index=False)}")
        w["legend"].value = f"<p style='max-width:80em'>{self.legend()}</p>"
