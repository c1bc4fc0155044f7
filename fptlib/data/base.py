"""The task interface: inputs as token sequences, targets as per-token decisions.

Every training batch is a pure function of (seed, step), so a resumed run sees exactly the batches
an uninterrupted one would. Validation and test sets are fixed by a data seed that does not depend
on the run seed, so every run of a table is scored on the same examples (fptlib.seeding).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator, NamedTuple

import torch

from ..seeding import DATA_SEED, Stream, generator, hash_tensors

SPLITS = ("train", "val", "test")
# What every dataset's length policy calls leaving an over-long example out (scored both ways).
DROP = "drop"


class TaskShape(NamedTuple):
    """What a model needs to know of a task: tokens, features per token (or vocabulary), input kind,
    and the decisions read from the last n_out_tokens tokens."""

    tokens: int
    d_in: int
    input_kind: str
    n_out_tokens: int
    out_dim: int
    n_classes: int


class DataError(ValueError):
    """Data missing, corrupt or inconsistent with the task; the message says how to fix it."""


@dataclass
class Task:
    """Common interface. Subclasses state their shape once, in planned_shape (their __post_init__ takes the
    shape fields from it: take_planned_shape), and fill the batch makers."""

    seed: int = 0
    name: str = field(init=False, default="")
    input_kind: str = field(init=False, default="linear")  # "linear" (d_in floats) or "tokens"
    d_in: int = field(init=False, default=1)                 # features per token, or vocabulary size
    seq_len: int = field(init=False, default=1)
    n_out_tokens: int = field(init=False, default=1)         # read from the last n_out_tokens
    out_dim: int = field(init=False, default=2)              # logits per output token
    n_classes: int = field(init=False, default=2)            # classes per decision

    @classmethod
    def planned_shape(cls, options: dict) -> TaskShape:
        """The shape of the task with these options, without reading its data: what `fpt plan` sizes a
        run by. Where the data decides the length (a TSV's longest example), the bound the options allow."""
        raise NotImplementedError

    @classmethod
    def option(cls, options: dict, name: str):
        """An option's value: as given, else the dataclass default."""
        return options.get(name, cls.__dataclass_fields__[name].default)

    def options(self) -> dict:
        """This task's options (every init field but the seed), as planned_shape takes them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name != "seed"}

    def take_planned_shape(self) -> None:
        """Set the shape fields from planned_shape of this task's own options, so a task states its shape once
        (a task whose data decides its length sets seq_len again once the data is read)."""
        self.set_shape(self.planned_shape(self.options()))

    def set_shape(self, shape: TaskShape) -> None:
        """The one place the shape fields are written."""
        (self.seq_len, self.d_in, self.input_kind, self.n_out_tokens, self.out_dim, self.n_classes) = shape

    def shape(self) -> TaskShape:
        return TaskShape(self.seq_len, self.d_in, self.input_kind, self.n_out_tokens, self.out_dim, self.n_classes)

    def train_batch(self, step: int, batch_size: int) -> dict:
        raise NotImplementedError

    def eval_batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[dict]:
        raise NotImplementedError

    def split_size(self, split: str) -> int:
        raise NotImplementedError

    def data_hash(self) -> str:
        raise NotImplementedError

    # Further held-out splits scored at the end (e.g. homology's fold/superfamily/family test sets).
    extra_splits: tuple = field(init=False, default=())

    def split_dropped(self, split: str) -> int:
        """Examples of a split left out by a length policy (scored both ways in result.json)."""
        return 0

    def describe(self) -> dict:
        return {"name": self.name, "seq_len": self.seq_len, "d_in": self.d_in,
                "input_kind": self.input_kind, "n_out_tokens": self.n_out_tokens,
                "n_classes": self.n_classes,
                "split_sizes": {s: self.split_size(s) for s in SPLITS}}


class FixedEvalSets:
    """Synthetic tasks: val/test are fixed samples, 'train' is a fixed sample of the train stream."""

    _cache: dict

    def _fixed(self, split: str) -> dict:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if split not in self._cache:
            if split == "train":
                g = generator(self.seed, Stream.TRAIN_SAMPLE, 0)  # what training draws from, for train accuracy
            else:
                g = generator(DATA_SEED, SPLITS.index(split))
            self._cache[split] = self._make(self.split_size(split), g)
        return self._cache[split]

    def eval_batches(self, split, batch_size, limit=None):
        data = self._fixed(split)
        n = len(data["y"]) if limit is None else min(limit, len(data["y"]))
        for i in range(0, n, batch_size):
            yield {k: v[i:min(i + batch_size, n)] for k, v in data.items()}

    def train_batch(self, step, batch_size):
        return self._make(batch_size, generator(self.seed, Stream.TRAIN_BATCH, step))

    def data_hash(self):
        return hash_tensors(*(t for s in ("val", "test") for t in self._fixed(s).values()))


class EpochOrder:
    """Training order of a dataset-backed task: every epoch a fresh permutation of the train split,
    drawn from (seed, epoch), so the batch at a step is a pure function of (seed, step) and a resumed
    run sees exactly the batches an uninterrupted one would. A task with it has a fixed training set
    (fixed_training_set)."""

    def train_indices(self, step: int, batch_size: int) -> torch.Tensor:
        n = self.split_size("train")
        if n == 0:
            raise DataError(f"{self.name} has no training examples")
        pos = torch.arange(step * batch_size, (step + 1) * batch_size)
        epochs = pos // n
        idx = torch.empty(batch_size, dtype=torch.long)
        for e in epochs.unique().tolist():  # a batch can straddle two epochs
            sel = epochs == e
            idx[sel] = self._epoch_perm(e)[pos[sel] % n]
        return idx

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        cache = self.__dict__.setdefault("_perm_cache", {})
        if epoch not in cache:  # keep the previous epoch too, for straddling batches
            self._perm_cache = {k: v for k, v in cache.items() if k == epoch - 1} | {
                epoch: torch.randperm(self.split_size("train"),
                                      generator=generator(self.seed, Stream.EPOCH_ORDER, epoch))}
        return self._perm_cache[epoch]


def fixed_training_set(task) -> bool:
    """Whether a task (or task class) trains on a fixed training set, in epochs (EpochOrder), rather than on
    examples drawn fresh every step: what lets an output-only run compute its frozen features once
    (cache_features; the task is cacheable), and what gives a run epochs."""
    return hasattr(task, "train_indices")
