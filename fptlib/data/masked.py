"""Self-pretraining's objective (Amos et al. 2024): a task's own training inputs with some tokens masked, to be
predicted back. It wraps any task and reads nothing but that task's training split.

Token inputs (ListOps) predict the masked token's id; a masked token reads a new id, one past the
vocabulary. Linear inputs (bits, image patches) predict each masked token's features binarised at the
midpoint of the training inputs' range (a pixel on or off, a bit set or not); a masked token's features read
zero and one extra input feature flags it. Targets of unmasked and padding tokens are -100, which the loss and
the accuracy skip. Each example has max(1, round(MASK_RATE x its real tokens)) tokens masked, drawn from
(seed, step) in training, so a resumed run sees the batches an uninterrupted one would.

Validation and test are the first EVAL_EXAMPLES of the training split's own evaluation sample under masks of
their own: the wrapped task's validation and test inputs are never read, not even to score.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..seeding import Stream, generator, hash_tensors
from .base import SPLITS, Task, TaskShape

MASK_RATE = 0.15
EVAL_EXAMPLES = 512
IGNORE = -100  # torch's cross-entropy ignore_index: no loss, no accuracy


def masked_shape(shape: TaskShape) -> TaskShape:
    """The masked objective's shape on a task of `shape`: one more input id (the mask token) or feature (the
    masked flag), and every token read: its id among the vocabulary, or each feature on or off."""
    tokens = shape.input_kind == "tokens"
    return TaskShape(shape.tokens, shape.d_in + 1, shape.input_kind, shape.tokens,
                     shape.d_in if tokens else 2 * shape.d_in, shape.d_in if tokens else 2)


class MaskedInputs(Task):
    """`inner`'s training inputs, masked: the objective of a self-pretraining run."""

    def __init__(self, inner: Task):
        super().__init__(seed=inner.seed)
        self.inner = inner
        self.name = f"{inner.name}+masked"
        self.set_shape(masked_shape(inner.shape()))
        self._threshold = self._midpoint() if inner.input_kind != "tokens" else None

    def _midpoint(self) -> float:
        x = self.inner.train_batch(0, 64)["x"]
        return float(x.min() + x.max()) / 2

    def _mask(self, batch: dict, g: torch.Generator) -> dict:
        x = batch["x"]
        n, t = x.shape[:2]
        real = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones(n, t, dtype=torch.bool)
        k = (real.sum(1).float() * MASK_RATE).round().clamp(min=1).long()
        scores = torch.rand(n, t, generator=g).masked_fill(~real, 2.0)  # padding ranks last, never masked
        rank = scores.argsort(1).argsort(1)
        masked = rank < k[:, None]
        out = {"attention_mask": batch["attention_mask"]} if "attention_mask" in batch else {}
        if self.input_kind == "tokens":
            out["x"] = x.masked_fill(masked, self.inner.d_in)
            out["y"] = x.masked_fill(~masked, IGNORE).long()
        else:
            bits = (x > self._threshold).long().masked_fill(~masked[..., None], IGNORE)
            out["x"] = torch.cat([x.masked_fill(masked[..., None], 0.0), masked[..., None].to(x.dtype)], -1)
            out["y"] = bits.reshape(n, -1)
        return out

    def train_batch(self, step: int, batch_size: int) -> dict:
        return self._mask(self.inner.train_batch(step, batch_size), generator(self.seed, Stream.MASK, step))

    def eval_batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[dict]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        n = self.split_size(split) if limit is None else min(limit, self.split_size(split))
        # one mask stream per split, the same for every evaluation, so evaluations compare
        g = generator(self.seed, Stream.MASK, -1 - SPLITS.index(split))
        for batch in self.inner.eval_batches("train", batch_size, n):
            yield self._mask(batch, g)

    def split_size(self, split: str) -> int:
        n = self.inner.split_size("train")
        return n if split == "train" else min(n, EVAL_EXAMPLES)

    def data_hash(self) -> str:
        return hash_tensors(*(b["x"] for b in self.inner.eval_batches("train", 256, EVAL_EXAMPLES)))

    def describe(self) -> dict:
        what = ("masked-token prediction" if self.input_kind == "tokens"
                else "masked-token prediction of each masked token's binarised features (its bits or pixels)")
        return super().describe() | {
            "source": f"{self.inner.name}'s training inputs only (labels unused); {what}, {MASK_RATE:.0%} of "
                      f"each example's tokens masked; validation and test: the first {EVAL_EXAMPLES} training "
                      "inputs under masks of their own"}
