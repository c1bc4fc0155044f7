"""The paper's numbers (test accuracy, %), as summarised in docs/paper.md.

Most come from a secondary source that read the ar5iv v2 text; they are not checked against the PDF.
A missing entry means the paper gives no number for that cell: it is shown as absent, never filled.
"""
from __future__ import annotations

from ..data import registry

# The paper's columns in its order, and their titles: declared by each task's SPEC (fptlib.data), derived here
TASK_COLUMNS = registry.PAPER_TASKS
# Offline real-data tasks beyond the paper (fpt data fetch gets them from Debian packages): marked * in tables
EXTRA_COLUMNS = registry.BEYOND_PAPER
EXTRA_NOTE = ("* beyond the paper, offline real data (no paper number): Fashion-MNIST, 60,000 + 10,000 photos of "
              "clothing in ten classes, read as MNIST; Pfam families, 48-residue windows of eight protein families, "
              "trained on sequences HMMER's hmmemit samples from their profile HMMs, tested on their real seed "
              "sequences")
TASK_TITLES = registry.TITLES


def _row(*values):
    return {t: v for t, v in zip(TASK_COLUMNS, values) if v is not None}


# Table 1 (§3.1): FPT vs fully trained transformer vs fully trained LSTM.
# CIFAR-10 FPT 72.1 is GPT-2 large; the base model gets 68.2 (Table 2).
TABLE1 = {
    "FPT": _row(100, 100, 38.4, 98.0, 72.1, 38.6, 12.7),
    "Full transformer": _row(100, 100, 38, 99.1, 70.3, 42, 9),
    "Full LSTM": _row(60.9, 50.1, 17.1, 99.5, 73.6, 11.7, 12),
}

# Table 2 (§3.2): pretraining modality; every row is a frozen 12-layer base model.
TABLE2 = {
    "FPT": _row(100, 100, 38.4, 98.0, 68.2, 38.6, 12.7),
    "Random": _row(75.8, 100, 34.3, 91.7, 61.7, 36.1, 9.3),
    "Bit": _row(100, 100, 35.4, 97.8, 62.6, 36.7, 7.8),
    "ViT": _row(100, 100, 37.4, 97.8, 72.5, 43.0, 7.5),
}

# Table 6 (§3.4): gradient steps to convergence (criterion not stated by the paper).
TABLE6 = {"FPT": _row(1e4, 5e2, 2e3, 5e3, 4e5, 3e5, 1e5), "Random": _row(4e4, 2e4, 6e3, 2e4, 4e5, 6e5, 1e5)}

# Table 7 (§3.6): C10 LRA test and train accuracy.
TABLE7 = {"FPT": {"cifar10-lra": 38.6}, "FPT train": {"cifar10-lra": 38.5}}

# Table 8 (§3.7): CIFAR-10 by GPT-2 size, pretrained (FPT) and random, frozen.
TABLE8 = {"gpt2 FPT": {"cifar10": 68.2}, "gpt2 Random": {"cifar10": 61.7},
          "gpt2-medium FPT": {"cifar10": 69.8}, "gpt2-medium Random": {"cifar10": 64.0},
          "gpt2-large FPT": {"cifar10": 72.1}, "gpt2-large Random": {"cifar10": 65.7}}

# Table 9 (§3.8): statistics-only initialisation.
TABLE9 = {"Pretrained": TABLE2["FPT"], "Statistics only": _row(100, 100, 37.4, 97.2, 56.5, 33.1, 11.0),
          "Default random": TABLE2["Random"]}

# Table 10 (§3.9): output layer only (other tasks not confirmed).
TABLE10 = {"Output only": {"listops": 32.8, "cifar10-lra": 24.7}, "FPT": TABLE2["FPT"]}

# Tables 11-12 (§3.10): ListOps by depth; 11 trains output + layer norm, 12 the output layer only.
TABLE11 = {f"{n} layers, {init}": {"listops": v} for n, init, v in (
    (1, "pretrained", 17), (1, "random", 17), (2, "pretrained", 36), (2, "random", 16),
    (6, "pretrained", 38), (6, "random", 35))}
TABLE12_DEPTH = {f"{n} layers, {init}": {"listops": v} for n, init, v in (
    (1, "pretrained", 12), (3, "pretrained", 18), (6, "pretrained", 33), (12, "pretrained", 33),
    (12, "random", 17), (24, "random", 17))}

# Tables 13-14 (§3.11): training more parameters († diverged; pre-divergence value).
TABLE13 = {"FPT": TABLE2["FPT"], "+ Feedforward": _row(100, 100, 36.0, 98.3, 76.6, 38.2, 13.1),
           "+ Attention": _row(100, 100, 36.8, 89.0, 47.7, 23.0, 10.9),
           "+ Both": _row(100, 100, 35.8, 93.1, 32.9, 21.0, 10.5),
           "+ Feedforward + last attention layer": {"cifar10": 80.0}}

# Table 15 (§3.12) pretrained and Table 21 (appendix) random: successive parameter ablation.
_ABL = ("Output only", "+ Layernorm", "+ Input", "+ Positions")
TABLE15 = {r: _row(*v) for r, v in zip(_ABL, ((76, 56, 15, 23, 25, 17, 2), (94, 98, 36, 96, 54, 39, 9),
                                                (100, 98, 36, 98, 60, 39, 10), (100, 100, 38, 98, 68, 39, 13)))}
TABLE21 = {r: _row(*v) for r, v in zip(_ABL, ((None, 50, 17, 25, 20, 11, None), (None, 100, 35, 83, 46, 34, None),
                                                (None, 100, 36, 92, 56, 36, None),
                                                (None, 100, 37, 92, 62, 36, None)))}

# Table 16 (§3.13): CIFAR-10 with input + output trained, layer norm frozen or finetuned.
TABLE16 = {"Pretrained, frozen LN": {"cifar10": 61.5}, "Pretrained, finetuned LN": {"cifar10": 68.2},
           "Random, frozen LN": {"cifar10": 55.0}, "Random, finetuned LN": {"cifar10": 61.7}}

# Table 17 (§3.14): other pretrained backbones.
TABLE17 = {"GPT-2": {"cifar10": 68.2, "listops": 38.4}, "BERT": {"cifar10": 68.8, "listops": 38.3},
           "T5 (encoder)": {"cifar10": 64.7, "listops": 15.4}, "Longformer": {"cifar10": 66.8, "listops": 17.0}}

# Rothermel et al. 2021, Table 1 (mean over 3 seeds, tuned learning rates), docs/paper.md §7.
ROTHERMEL = {"Frozen random": {"listops": 38.9, "mnist": 98.0, "cifar10": 61.8, "cifar10-lra": 44.2},
             "Frozen pretrained": {"listops": 46.1, "mnist": 98.5, "cifar10": 66.3, "cifar10-lra": 54.7},
             "Unfrozen random": {"listops": 57.6, "mnist": 98.7, "cifar10": 77.8, "cifar10-lra": 62.0},
             "Unfrozen pretrained": {"listops": 56.3, "mnist": 99.0, "cifar10": 77.7, "cifar10-lra": 67.8}}

TABLES = {"table1": TABLE1, "table2": TABLE2, "table6": TABLE6, "table7": TABLE7, "table8": TABLE8,
          "table9": TABLE9, "table10": TABLE10, "table11": TABLE11, "table12": TABLE12_DEPTH,
          "table13": TABLE13, "table15": TABLE15, "table16": TABLE16, "table17": TABLE17, "table21": TABLE21,
          "rothermel": ROTHERMEL}

_V2 = "Lu et al. 2021 (arXiv 2103.05247v2)"
_SECTIONS = {"table1": "2.1", "table2": "2.2", "table6": "2.4", "table7": "2.5", "table8": "2.6", "table9": "2.7",
             "table10": "2.8", "table11": "2.9", "table12": "2.9", "table15": "2.11", "table16": "2.13",
             "table17": "2.14"}
SOURCES = {k: f"{_V2} Table {k.removeprefix('table')}, via docs/paper.md §{_SECTIONS[k]}"
           for k in _SECTIONS}
SOURCES["table13"] = f"{_V2} Tables 13-14, via docs/paper.md §2.10"
SOURCES["table21"] = f"{_V2} appendix Table 21, via docs/paper.md §2.12"
SOURCES["rothermel"] = "Rothermel et al. 2021 (arXiv 2107.12460) Table 1, via docs/paper.md §7"


def lookup(table: str, row: str, task: str) -> float | None:
    """The paper's number for (table, row, task), or None when the paper has none."""
    if table not in TABLES:
        raise KeyError(f"unknown paper table {table!r}; known: {', '.join(TABLES)}")
    return TABLES[table].get(row, {}).get(task)
