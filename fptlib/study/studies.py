"""One Study per paper result beyond Tables 1-2 (study.base.Tables1And2, whose arms study.base.HeadlineArms
holds): each names its rows and the config of every row; study.base.Study turns that into runs, tables and
captions.

Runs are cached by config, so a row that is the same computation as another notebook's (FPT,
Random, ...) is computed once and shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ..config import PRESETS, RunConfig, resolve
from ..data import CACHEABLE, task_defaults
from ..groups import FPT_GROUPS
from ..models import family_of, hf_config
from ..training import RunDir
from . import paper
from .base import HeadlineArms, Study, parameter
from .render.markdown import fmt_cell, frame_markdown
from .results.tables import load_curve, load_run

FPT_ROW = {"init": "pretrained"}
RANDOM_ROW = {"init": "random"}


def cached_output_only(task: str) -> dict:
    """Config fields of an output-only run, on cached features where the task has a fixed training set
    (CACHEABLE): a cache holds fixed images, so a task that augments its training images by default (CIFAR-10)
    trains without (the table's scale note says so)."""
    if task not in CACHEABLE:
        return {"cache_features": False}
    return {"cache_features": True} | ({"task_options": {"augment": False}} if task_defaults(task).get("augment")
                                       else {})
# The cpu grid of the ablation notebooks (10-12): Bit Memory (1,500 steps a run) and ListOps (the
# slowest step per example here) are left out so each notebook stays within the hour on two cores;
# ListOps is still studied in 09, 13 and 14. Tasks without offline data cost nothing and say so.
CPU_ABLATION_TASKS = ["bit-xor", "mnist", "fashion-mnist", "cifar10", "cifar10-lra", "homology"]
# Tables 13-14's cpu grid leaves Fashion-MNIST out: its five runs that train feed-forward or attention weights are
# the grid's slowest, more than the notebook's hour allows beside the rest (results/cpu/tables/compute_time.md)
MORE_PARAMS_CPU_TASKS = [t for t in CPU_ABLATION_TASKS if t != "fashion-mnist"]
# The one-seed studies that run every task: at cpu, Fashion-MNIST beside MNIST (offline real images beyond the paper)
CPU_ALL_TASKS = list(paper.TASK_COLUMNS) + ["fashion-mnist"]
# The paper-scale grid of the studies run with one seed (the paper reports one number per cell)
ONE_SEED_ALL_TASKS = {"seeds": [0], "tasks": list(paper.TASK_COLUMNS)}


def keep_blocks(scale: str, backbone: str, n: int) -> int | None:
    """`n_layers` for a backbone cut to its first n blocks: None when n keeps every block the run would
    have anyway, so "6 of MiniLM's 6 blocks" is the same config (one cached run) as the plain FPT row."""
    default = PRESETS[scale]["backbone"]
    name = backbone or default
    if name == default and "n_layers" in PRESETS[scale]["backbone_defaults"]:
        full = PRESETS[scale]["backbone_defaults"]["n_layers"]
    elif name == "lstm":
        return n
    else:
        cfg = hf_config(name, family_of(name), "sdpa")
        full = getattr(cfg, "n_layer", None) or cfg.num_hidden_layers
    return None if n == full else n


@dataclass
class BitInit(Study):
    """Table 2 complete: FPT and Random beside the Bit-pretrained initialisation (the same
    architecture fully trained on Bit Memory, then frozen and given the usual FPT training) and an
    image-pretrained ViT-B/16 (frozen, its blocks and final norm; runs where its weights are on disk)."""

    name: ClassVar[str] = "table02_bit"
    title: ClassVar[str] = "Table 2: importance of the pretraining modality (language, random, Bit Memory)"
    rows: ClassVar[list] = ["FPT", "Random", "Bit", "ViT"]
    paper_table: ClassVar[str] = "table2"
    # Fashion-MNIST left out at cpu: a new Bit row needs the Bit Memory source's weights, which are not committed
    # (backbone.safetensors, 90 MB), so it would retrain the source first
    CPU_GRID: ClassVar[dict] = {"seeds": [0]}
    metric_titles: ClassVar[dict] = {"test_accuracy": "", "test_masked_accuracy": " (masked bits only)"}

    def arms(self, task):
        return [("FPT", FPT_ROW), ("Random", RANDOM_ROW), ("Bit", {"init": "bit"}),
                ("ViT", {"backbone": "vit-base", "init": "pretrained"})]


@dataclass
class StatsInit(Study):
    """Table 9: is it only the initialisation statistics? Every pretrained tensor redrawn from a
    Gaussian with its own mean and standard deviation, then frozen."""

    name: ClassVar[str] = "table09_stats_init"
    title: ClassVar[str] = "Table 9: pretrained vs statistics-only vs default random initialisation"
    rows: ClassVar[list] = ["Pretrained", "Statistics only", "Default random"]
    paper_table: ClassVar[str] = "table9"
    CPU_GRID: ClassVar[dict] = {"seeds": [0], "tasks": CPU_ALL_TASKS}

    def arms(self, task):
        return [("Pretrained", FPT_ROW), ("Statistics only", {"init": "stats"}), ("Default random", RANDOM_ROW)]


@dataclass
class OutputOnly(Study):
    """Table 10: only the output layer trains (input layer random, orthogonal, frozen). Where the task
    has a fixed training set the frozen features are computed once and cached."""

    GRID: ClassVar[dict] = ONE_SEED_ALL_TASKS
    CPU_GRID: ClassVar[dict] = {"tasks": CPU_ALL_TASKS}
    name: ClassVar[str] = "table10_output_only"
    title: ClassVar[str] = "Table 10: training only the output layer"
    rows: ClassVar[list] = ["Output only", "FPT"]
    paper_table: ClassVar[str] = "table10"

    def arms(self, task):
        return [("Output only", {"init": "pretrained", "train": ("output",), **cached_output_only(task)}),
                ("FPT", FPT_ROW)]

    @staticmethod
    def speedups(runs: pd.DataFrame) -> pd.DataFrame:
        """Per cached run: the first epoch (computing the features of every split, then training) against
        each later epoch (training the output layer on the cache)."""
        out = []
        for d in runs.run_dir[runs.row == "Output only"]:
            r = load_run(d)
            fc, ep, n = r.get("feature_cache"), r.get("epoch_step_seconds") or [], r.get("epoch_steps") or []
            if not fc or len(ep) < 2 or len(n) != len(ep):
                continue
            per_step = sum(ep[1:]) / sum(n[1:])  # later epochs, the last one possibly partial
            first = fc["build_seconds"] + ep[0]
            out.append({"task": r["task"], "seed": r["seed"], "first_epoch_s": first,
                        "later_epoch_s": per_step * n[0], "speedup": first / (per_step * n[0])})
        return pd.DataFrame(out)


@dataclass
class Ablation(Study):
    """Tables 15 (pretrained) and 21 (random): add trained groups one at a time, from the output layer
    alone to the full FPT set."""

    init: str = parameter("pretrained", doc="pretrained (Table 15) | random (Table 21)")
    GRID: ClassVar[dict] = ONE_SEED_ALL_TASKS
    CPU_GRID: ClassVar[dict] = {"tasks": CPU_ABLATION_TASKS}
    rows: ClassVar[list] = ["Output only", "+ Layernorm", "+ Input", "+ Positions"]
    steps_groups: ClassVar[dict] = {"Output only": ("output",), "+ Layernorm": ("output", "layernorm"),
                                    "+ Input": ("output", "layernorm", "input"), "+ Positions": FPT_GROUPS}

    VARIANT_OF: ClassVar[str] = "init"
    VARIANTS: ClassVar[dict] = {
        init: {"name": name, "paper_table": table,
               "title": f"Table {table[5:]}: successive parameter ablation, {init} frozen transformer"}
        for init, name, table in (("pretrained", "table15_ablation_pretrained", "table15"),
                                  ("random", "table21_ablation_random", "table21"))}

    def arms(self, task):
        return [(r, {"init": self.init, "train": g}) for r, g in self.steps_groups.items()]


@dataclass
class MoreParams(Study):
    """Tables 13-14: train more of the backbone as well (feed-forward, attention, both; and the
    feed-forward layers plus the last block's attention)."""

    GRID: ClassVar[dict] = ONE_SEED_ALL_TASKS
    CPU_GRID: ClassVar[dict] = {"tasks": MORE_PARAMS_CPU_TASKS}
    name: ClassVar[str] = "table13_14_more_params"
    title: ClassVar[str] = "Tables 13-14: training more parameters (learning rate 1e-3 throughout)"
    rows: ClassVar[list] = ["FPT", "+ Feedforward", "+ Attention", "+ Both", "+ Feedforward + last attention layer",
                            "+ Feedforward, lr 1e-4"]
    paper_table: ClassVar[str] = "table13"

    def arms(self, task):
        # The last row is not the paper's: the same as "+ Feedforward" at a tenth of the learning rate, which
        # tells a learning rate too high for the unfrozen weights from a broken feed-forward group.
        return [("FPT", FPT_ROW), ("+ Feedforward", {"train": FPT_GROUPS + ("feedforward",)}),
                ("+ Attention", {"train": FPT_GROUPS + ("attention",)}),
                ("+ Both", {"train": FPT_GROUPS + ("feedforward", "attention")}),
                ("+ Feedforward + last attention layer", {"train": FPT_GROUPS + ("feedforward", "attention_last")}),
                ("+ Feedforward, lr 1e-4", {"train": FPT_GROUPS + ("feedforward",), "lr": 1e-4})]


@dataclass
class FrozenLN(Study):
    """Table 16: is finetuning layer norm necessary? Input, output and positions train; layer norm
    frozen or trained, pretrained and random backbones. (Whether the paper trained positions in the
    frozen-LN runs is not known; we do, so the rows differ only in layer norm.)"""

    GRID: ClassVar[dict] = ONE_SEED_ALL_TASKS
    CPU_GRID: ClassVar[dict] = {"tasks": CPU_ABLATION_TASKS}
    name: ClassVar[str] = "table16_frozen_ln"
    title: ClassVar[str] = "Table 16: frozen vs finetuned layer norm"
    rows: ClassVar[list] = ["Pretrained, frozen LN", "Pretrained, finetuned LN", "Random, frozen LN",
                            "Random, finetuned LN"]
    paper_table: ClassVar[str] = "table16"

    def arms(self, task):
        frozen = ("input", "output", "positions")
        return [("Pretrained, frozen LN", {"init": "pretrained", "train": frozen}),
                ("Pretrained, finetuned LN", FPT_ROW),
                ("Random, frozen LN", {"init": "random", "train": frozen}),
                ("Random, finetuned LN", RANDOM_ROW)]


@dataclass
class Depth(Study):
    """Tables 11-12: ListOps with the backbone cut to its first n blocks, pretrained and random;
    Table 11 trains output + layer norm, Table 12 only the output layer."""

    GRID: ClassVar[dict] = {"seeds": [0], "tasks": ["listops"]}
    depths: list = parameter(factory=lambda: [1, 2, 3, 6], doc="blocks kept from the bottom of the backbone")
    output_only: bool = parameter(False, doc="False: Table 11 (output + layer norm), True: Table 12 (output only)")
    VARIANT_OF: ClassVar[str] = "output_only"
    VARIANTS: ClassVar[dict] = {
        False: {"name": "table11_depth", "title": "Table 11: depth, output layer and layer norm trained",
                "paper_table": "table11"},
        True: {"name": "table12_depth_output_only", "title": "Table 12: depth, output layer only",
               "paper_table": "table12"}}

    def rows_for(self):
        return [f"{n} layers, {init}" for n in self.depths for init in ("pretrained", "random")]

    def by_depth(self, summary: pd.DataFrame) -> pd.DataFrame:
        """Long table for plots.by_depth: one line per (source, init, task, depth) with mean and std;
        the paper's lines include its depths (12, 24 blocks of GPT-2) that this backbone may not have."""
        def parse(row):
            n, init = row.split(" layers, ")
            return int(n), init
        s = summary[(summary.metric == "test_accuracy") & summary.row.isin(self.rows)]
        ours = [{"source": "ours", "init": parse(r.row)[1], "task": r.task, "depth": parse(r.row)[0],
                 "mean": r["mean"], "std": r["std"]} for _, r in s.iterrows()]
        table = paper.TABLES[self.paper_table]
        theirs = [{"source": "paper", "init": parse(row)[1], "task": t, "depth": parse(row)[0], "mean": v,
                   "std": float("nan")} for row, cells in table.items() for t, v in cells.items()
                  if t in self.tasks_with_data]
        return pd.DataFrame(ours + theirs, columns=["source", "init", "task", "depth", "mean", "std"])

    def arms(self, task):
        train = ("output",) if self.output_only else ("output", "layernorm")
        return [(f"{n} layers, {init}", {"init": init, "n_layers": keep_blocks(self.scale, self.backbone, n),
                                          "train": train,
                                          **(cached_output_only(task) if self.output_only else {})})
                for n in self.depths for init in ("pretrained", "random")]


@dataclass
class Backbones(Study):
    """Table 17: other language-pretrained transformers as the frozen backbone."""

    GRID: ClassVar[dict] = {"seeds": [0], "tasks": ["cifar10", "listops"]}
    backbones: list = parameter(factory=list, doc="empty: every pretrained backbone this scale can load")

    OFFLINE: ClassVar[list] = ["minilm"]
    PAPER_SCALE: ClassVar[list] = ["gpt2", "bert-base-uncased", "t5-base", "allenai/longformer-base-4096"]
    LABELS: ClassVar[dict] = {"gpt2": "GPT-2", "bert-base-uncased": "BERT", "t5-base": "T5 (encoder)",
                              "allenai/longformer-base-4096": "Longformer", "minilm": "MiniLM-L6 (BERT family)"}
    name: ClassVar[str] = "table17_backbones"
    title: ClassVar[str] = "Table 17: other pretrained transformers as the frozen backbone"
    paper_table: ClassVar[str] = "table17"

    @property
    def chosen(self) -> list:
        return self.backbones or (self.PAPER_SCALE if self.scale == "paper" else self.OFFLINE)

    def rows_for(self):
        return [self.LABELS.get(b, b) for b in self.chosen]

    def paper_ref(self, row):
        return ("table17", row) if row in paper.TABLE17 else None

    # Backbones with fewer positions than the scale's ListOps sequences read them cropped to fit (the
    # original cropped ListOps to 512 for every backbone); the table's scale note lists the change.
    POSITIONS: ClassVar[dict] = {"bert-base-uncased": 512}

    def arms(self, task):
        return [(self.LABELS.get(b, b), {"backbone": b, "init": "pretrained", **self._fit(task, b)})
                for b in self.chosen]

    def _fit(self, task: str, backbone: str) -> dict:
        limit = self.POSITIONS.get(backbone)
        seq_len = resolve(RunConfig(task=task, scale=self.scale)).task_options.get("seq_len")
        if task != "listops" or not limit or not seq_len or seq_len <= limit:
            return {}
        return {"task_options": {"seq_len": limit, "long_policy": "crop"}}

    def markdown(self, summary):
        rest = [r for r in paper.TABLE17 if r not in self.rows]
        extra = ["", "The paper's rows not run here (their weights need the network): " + "; ".join(
            f"{r}: " + ", ".join(f"{paper.TASK_TITLES[t]} {v:g}" for t, v in paper.TABLE17[r].items())
            for r in rest)] if rest else []
        return super().markdown(summary) + "\n".join(extra) + ("\n" if extra else "")


@dataclass
class ModelSize(Study):
    """Table 8: size of the frozen backbone, pretrained and random. At the paper scale GPT-2 small,
    medium and large; offline, the sizes that run here: MiniLM-L6 cut to 2, 4 and 6 blocks (no
    pretrained GPT-2 weights exist offline)."""

    GRID: ClassVar[dict] = {"seeds": [0], "tasks": ["cifar10", "mnist"]}
    CPU_GRID: ClassVar[dict] = {"tasks": ["cifar10", "mnist", "fashion-mnist"]}
    name: ClassVar[str] = "table08_model_size"
    title: ClassVar[str] = "Table 8: model size (frozen backbone, pretrained and random)"
    paper_table: ClassVar[str] = "table8"

    def sizes(self) -> list[tuple[str, str, int | None, tuple]]:
        """(label, backbone, n_layers, inits)."""
        if self.scale == "paper":
            return [(b, b, None, ("pretrained", "random")) for b in ("gpt2", "gpt2-medium", "gpt2-large")]
        if self.scale == "smoke":
            return [("minilm 1 block", "minilm", 1, ("pretrained", "random")),
                    ("minilm 2 blocks", "minilm", 2, ("pretrained", "random"))]
        # cpu: MiniLM's own depths; a random gpt2-small shape (12 x 768) would cost more than the six MiniLM rows
        # together (its step time: `fpt bench`, docs/performance.md)
        return [(f"minilm {n} blocks", "minilm", n, ("pretrained", "random")) for n in (2, 4, 6)]

    def rows_for(self):
        return [f"{label} {'FPT' if i == 'pretrained' else 'Random'}" for label, _, _, inits in self.sizes()
                for i in inits]

    def paper_ref(self, row):
        return ("table8", row) if row in paper.TABLE8 else None

    def markdown(self, summary):
        extra = "" if self.scale == "paper" else (
            "\nThe paper's Table 8 (CIFAR-10, GPT-2 sizes, needs the network): " + "; ".join(
                f"{r} {v['cifar10']:g}" for r, v in paper.TABLE8.items()) + ".\n")
        return super().markdown(summary) + extra

    def arms(self, task):
        return [(f"{label} {'FPT' if i == 'pretrained' else 'Random'}",
                 {"backbone": bb, "n_layers": n if n is None else keep_blocks(self.scale, bb, n), "init": i})
                for label, bb, n, inits in self.sizes() for i in inits]


@dataclass
class LSTMVariants(Study):
    """Tables 3-5: is it the transformer architecture? A frozen random transformer against a frozen
    random LSTM (input, output and layer norm trained), and LSTM variants: residual connections,
    12 layers (residual), learned positional embeddings. The paper's numbers for these tables are
    not available (docs/paper.md §2.3), so no paper column is filled."""

    GRID: ClassVar[dict] = {"seeds": [0], "tasks": ["bit-memory", "bit-xor", "listops", "mnist"]}
    CPU_GRID: ClassVar[dict] = {"tasks": ["bit-xor", "mnist"]}
    name: ClassVar[str] = "table03_05_lstm"
    title: ClassVar[str] = "Tables 3-5: frozen random transformer vs frozen random LSTM and its variants"
    rows: ClassVar[list] = ["Frozen random transformer", "Frozen random LSTM", "+ residual",
                            "+ residual, 12 layers", "+ positions"]

    def arms(self, task):
        lstm = {"backbone": "lstm", "init": "random", "train": ("input", "output", "layernorm")}
        return [("Frozen random transformer", RANDOM_ROW), ("Frozen random LSTM", lstm),
                ("+ residual", lstm | {"lstm_residual": True}),
                ("+ residual, 12 layers", lstm | {"lstm_residual": True, "lstm_layers": 12}),
                ("+ positions", lstm | {"lstm_positions": 1024, "train": lstm["train"] + ("positions",)})]


@dataclass
class LRSweep(Study):
    """Beyond the paper: learning-rate sensitivity (Rothermel et al. 2021, docs/paper.md §7). Frozen and
    unfrozen, pretrained and random, over a sweep of learning rates; the question is whether the
    ordering FPT > random survives every learning rate, and what full finetuning gives when its
    learning rate is tuned."""

    lrs: list = parameter(factory=list, doc="learning rates of the sweep")
    GRID: ClassVar[dict] = {"seeds": [0], "tasks": ["listops", "mnist"], "lrs": [1e-4, 3e-4, 1e-3, 3e-3]}
    # cpu: ListOps at 1e-4 (where full finetuning is usually run) and the paper's 1e-3; six unfrozen runs
    # on four rates would take the notebook past the hour on two cores
    CPU_GRID: ClassVar[dict] = {"tasks": ["listops"], "lrs": [1e-4, 1e-3]}
    name: ClassVar[str] = "lr_sensitivity"
    title: ClassVar[str] = "Learning-rate sensitivity: frozen vs unfrozen, pretrained vs random"
    SETTINGS: ClassVar[dict] = {"Frozen pretrained": {"init": "pretrained"}, "Frozen random": {"init": "random"},
                                "Unfrozen pretrained": {"init": "pretrained", "train": ("full",)},
                                "Unfrozen random": {"init": "random", "train": ("full",)}}

    def rows_for(self):
        return [f"{s}, lr {lr:g}" for s in self.SETTINGS for lr in self.lrs]

    def paper_ref(self, row):
        return None

    def arms(self, task):
        return [(f"{s}, lr {lr:g}", kw | {"lr": float(lr)}) for s, kw in self.SETTINGS.items() for lr in self.lrs]

    def grid(self, summary: pd.DataFrame) -> pd.DataFrame:
        """settings x learning rates per task: mean test accuracy (%)."""
        s = summary[(summary.metric == "test_accuracy") & summary["mean"].notna()].copy()
        s["setting"] = s.row.str.split(", lr ").str[0]
        s["lr"] = s.row.str.split(", lr ").str[1].astype(float)
        return s.pivot_table(index=["task", "setting"], columns="lr", values="mean")

    def markdown(self, summary):
        lines = [f"{self.title}. Test accuracy (%), mean ± std over seeds {self.seeds}, full held-out test split. "
                 f"Ours: scale `{self.scale}`, backbone {self.backbone or PRESETS[self.scale]['backbone']}. "
                 "Beside each setting, Rothermel et al.'s number at their tuned learning rate (GPT-2, "
                 "long budgets), where they report one.", ""]
        s = summary[summary.metric == "test_accuracy"]
        for task in self.tasks:
            lines += [f"**{paper.TASK_TITLES.get(task, task)}**", ""]
            if task in self.missing_data():
                lines += [f"data not available offline: {self.missing_data()[task]}", ""]
                continue
            table = []
            for setting in self.SETTINGS:
                cells, best = [], None
                for lr in self.lrs:
                    hit = s[(s.row == f"{setting}, lr {lr:g}") & (s.task == task)]
                    if hit.empty:
                        cells.append("not run")
                        continue
                    m, sd = hit.iloc[0]["mean"], hit.iloc[0]["std"]
                    cells.append(fmt_cell(m, sd))
                    best = m if best is None or m > best else best
                ref = paper.ROTHERMEL.get(setting, {}).get(task)
                table.append([setting, *cells, fmt_cell(best, None), f"{ref:g}" if ref is not None else "none"])
            columns = ["setting", *(f"lr {lr:g}" for lr in self.lrs), "best", "Rothermel et al."]
            lines += [frame_markdown(pd.DataFrame(table, columns=columns)), ""]
        return "\n".join(lines) + "\n" + self.scale_note() + "\n"


@dataclass
class LSTMBaseline(HeadlineArms):
    """Notebook 01b: paper Table 1's fully trained LSTM (width of the transformer, 3 layers, every
    parameter trained) beside FPT, over seeds; FPT's runs are notebook 01's."""

    name: ClassVar[str] = "table01_lstm"
    title: ClassVar[str] = "Table 1: frozen pretrained transformer vs fully trained LSTM"
    rows: ClassVar[list] = ["FPT", "LSTM"]


@dataclass
class OfflineTasks(HeadlineArms):
    """Notebook 01c: Tables 1-2's three rows (FPT, Random, the fully trained LSTM) on the offline real-data
    tasks beyond the paper, Fashion-MNIST and the Pfam families, over seeds. A notebook of its own, because
    notebook 01 alone takes 45 of the hour a `cpu` notebook may."""

    GRID: ClassVar[dict] = {"seeds": [0, 1, 2], "tasks": list(paper.EXTRA_COLUMNS)}
    name: ClassVar[str] = "table01_02_offline"
    title: ClassVar[str] = "Tables 1-2 on offline real data beyond the paper: Fashion-MNIST and Pfam families"
    rows: ClassVar[list] = ["FPT", "Random", "LSTM"]

    def paper_clause(self) -> str:
        return "the paper has no number for these tasks"


@dataclass
class StepsToConverge:
    """Table 6 from a study's runs: gradient steps to convergence of each run, FPT against Random.

    Criterion (the paper states none): the first evaluation step at which a run's validation accuracy comes
    within `tolerance` points of the best validation accuracy it reaches. A run trained with patience has
    converged when patience stopped it (else its cap was reached); a run without patience, when its best is not
    still rising at its last evaluation (the last gain above the tolerance). A run that has not converged
    gives a lower bound."""

    tolerance: float = parameter(1.0, doc="convergence: within this many points of the run's best validation "
                                          "accuracy")

    def convergence(self, runs: pd.DataFrame) -> pd.DataFrame:
        out, with_patience = [], False
        for _, r in runs.iterrows():
            c = load_curve(r.run_dir)
            res = load_run(r.run_dir) if RunDir(Path(r.run_dir)).finished else {}
            acc = c.val_accuracy * 100
            best = acc.max()
            first = int(c.step[acc >= best - self.tolerance].iloc[0])
            line = {"row": r.row, "task": r.task, "seed": r.seed, "steps_to_converge": first}
            if (res.get("config") or {}).get("patience"):
                with_patience = True
                line |= {"converged": res.get("stopped") == "converged", "best_val": best,
                         "budget": int(c.step.max()), "stopped": res.get("stopped"), "cap": res.get("max_steps")}
            else:
                rising = len(acc) > 1 and acc.iloc[-1] == best and best - acc.iloc[:-1].max() > self.tolerance
                line |= {"converged": not rising, "best_val": best, "budget": int(c.step.max())}
            out.append(line)
        df = pd.DataFrame(out)
        return df if with_patience else df.drop(columns=["stopped", "cap"], errors="ignore")

    def within(self) -> str:
        """The criterion's opening words, shared by every Table 6."""
        points = f"{self.tolerance:g} point{'' if self.tolerance == 1 else 's'}"
        return f"first evaluation within {points} of the run's best validation accuracy"

    def criterion(self) -> str:
        return f"{self.within()}; `>` = still improving at the end of the budget, a lower bound"

    def convergence_markdown(self, conv: pd.DataFrame) -> str:
        lines = [f"Table 6 at scale `{self.scale}`: gradient steps to convergence (mean over seeds; "
                 f"{self.criterion()}). In brackets the paper's (GPT-2 base, its own unstated criterion).", ""]
        means, table = {}, []
        for row in ("FPT", "Random"):
            cells = []
            for t in self.tasks_with_data:
                g = conv[(conv.row == row) & (conv.task == t)] if not conv.empty else conv
                if g.empty:
                    cells.append("not run")
                    continue
                m = g.steps_to_converge.mean()
                means[(row, t)] = m
                ref = paper.lookup("table6", row, t)
                paper_steps = f"{ref:.0e}".replace("e+0", "e") if ref else None
                cells.append(f"{'>' if not g.converged.all() else ''}{m:.0f}"
                             + (f" (paper {paper_steps})" if paper_steps else ""))
                if not g.converged.all():
                    means[(row, t, "open")] = True
            table.append([row, *cells])
        sp = []
        for t in self.tasks_with_data:
            a, b = means.get(("FPT", t)), means.get(("Random", t))
            ref = paper.TABLE6["Random"].get(t, 0) / paper.TABLE6["FPT"][t] if t in paper.TABLE6["FPT"] else None
            # FPT must have converged, after at least one evaluation; a still-rising Random gives a lower bound
            if not a or b is None or means.get(("FPT", t, "open")):
                cell = "–"
            else:
                cell = (">" if means.get(("Random", t, "open")) else "") + f"{b / a:.1f}×"
            sp.append(cell + (f" (paper {ref:.0f}×)" if ref else ""))
        table.append(["Speed-up", *sp])
        columns = ["", *(paper.TASK_TITLES.get(t, t) for t in self.tasks_with_data)]
        return "\n".join(lines + [frame_markdown(pd.DataFrame(table, columns=columns))]) + "\n"


@dataclass
class Convergence(StepsToConverge, HeadlineArms):
    """Tables 6-7 from the runs of Tables 1-2 (nothing new is trained): gradient steps to convergence,
    FPT vs Random (StepsToConverge), and train vs test accuracy for every row."""

    rows: ClassVar[list] = ["FPT", "Random", "LSTM"]
    name: ClassVar[str] = "table06_07_convergence_fit"
    title: ClassVar[str] = "Tables 6-7: compute efficiency and fit"
    metric_titles: ClassVar[dict] = {"test_accuracy": " test", "train_accuracy": " train"}

    def fit_paper(self, row: str, task: str, metric: str):
        if task == "cifar10-lra" and row == "FPT":
            return paper.TABLE7["FPT" if metric == "test_accuracy" else "FPT train"]["cifar10-lra"]
        return None

    def summary(self, runs, allow_mixed=True):
        s = super().summary(runs, allow_mixed)
        if "paper" in s:  # Table 7 has the paper's test and train numbers for C10 LRA only
            s["paper"] = [self.fit_paper(r, t, m) for r, t, m in zip(s.row, s.task, s.metric)]
            s["paper_source"] = [paper.SOURCES["table7"] if p is not None else "" for p in s["paper"]]
        return s

    def caption(self):
        return (f"Table 7 at scale `{self.scale}`: test and train accuracy (%) of the Tables 1-2 runs, mean ± "
                f"std over seeds {self.seeds} (train: the first "
                f"{PRESETS[self.scale]['train_eval_examples']} training examples). The paper reports "
                "C10 LRA only (FPT 38.6 test, 38.5 train).")
