"""The generated bit tasks of the paper: Bit XOR and Bit Memory."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .base import DataError, FixedEvalSets, Task, TaskShape
from .spec import Dataset


@dataclass
class BitXOR(FixedEvalSets, Task):
    """Two strings of n bits, one bit per token; predict their elementwise XOR from the last n tokens.

    With n=5 there are only 1024 inputs, so the test split is all of them (exhaustive); training
    samples fresh strings every step, as in the paper.
    """

    n_bits: int = 5
    n_val: int = 512
    n_test: int | None = None  # None: exhaustive when 2**(2n) <= 65536
    n_train_eval: int = 1024

    def __post_init__(self):
        self.name = "bit-xor"
        self.take_planned_shape()
        self._cache = {}

    @classmethod
    def planned_shape(cls, options):
        n = cls.option(options, "n_bits")
        return TaskShape(2 * n, 1, "linear", n, 2, 2)

    def split_size(self, split):
        if split == "test":
            return self.n_test or 4 ** self.n_bits
        return self.n_val if split == "val" else self.n_train_eval

    def _make(self, n, g):
        bits = torch.randint(0, 2, (n, 2, self.n_bits), generator=g)
        return self._pack(bits)

    def _pack(self, bits):
        return {"x": bits.reshape(len(bits), -1, 1).float(), "y": bits[:, 0] ^ bits[:, 1]}

    def _fixed(self, split):
        if split == "test" and self.n_test is None and split not in self._cache:
            if 4 ** self.n_bits > 65536:
                raise DataError(f"n_bits={self.n_bits} is too large for an exhaustive test set; set n_test")
            combos = torch.tensor(list(itertools.product((0, 1), repeat=2 * self.n_bits)))
            self._cache["test"] = self._pack(combos.reshape(-1, 2, self.n_bits))
        return super()._fixed(split)


@dataclass
class BitMemory(FixedEvalSets, Task):
    """n_patterns strings of n_bits (+-1), then one of them with each bit masked (0) with p_mask.

    Tokens are patch_size bits; the last n_bits/patch_size tokens each predict their patch_size bits.
    Metrics: accuracy over all query bits (the original's, floor 75 % when half are visible) and over
    the masked bits only (`masked_accuracy`, floor 50 %).
    """

    n_bits: int = 1000
    n_patterns: int = 5
    patch_size: int = 50
    p_mask: float = 0.5
    n_val: int = 256
    n_test: int = 1000
    n_train_eval: int = 1000

    def __post_init__(self):
        if self.n_bits % self.patch_size:
            raise DataError(f"bit-memory patch_size={self.patch_size} does not divide n_bits={self.n_bits}; "
                            "choose a divisor")
        self.name = "bit-memory"
        self.take_planned_shape()
        self._cache = {}

    @classmethod
    def planned_shape(cls, options):
        n_bits, patch = cls.option(options, "n_bits"), cls.option(options, "patch_size")
        return TaskShape((cls.option(options, "n_patterns") + 1) * n_bits // patch, patch, "linear", n_bits // patch,
                         2 * patch, 2)

    def split_size(self, split):
        return {"train": self.n_train_eval, "val": self.n_val, "test": self.n_test}[split]

    def _make(self, n, g):
        patterns = torch.randint(0, 2, (n, self.n_patterns, self.n_bits), generator=g) * 2 - 1
        which = torch.randint(0, self.n_patterns, (n,), generator=g)
        target = patterns[torch.arange(n), which]
        masked = torch.rand(n, self.n_bits, generator=g) < self.p_mask
        query = target.masked_fill(masked, 0)
        seq = torch.cat([patterns, query[:, None]], dim=1).reshape(n, self.seq_len, self.patch_size)
        return {"x": seq.float(), "y": (target > 0).long(), "query_mask": masked}


_GENERATED = "generated on the fly; nothing to download"
XOR_SPEC = Dataset("bit-xor", task=BitXOR, column=2, column_title="Bit XOR", kind="generated", note=_GENERATED)
MEMORY_SPEC = Dataset("bit-memory", task=BitMemory, column=1, column_title="Bit Memory", kind="generated",
                      note=_GENERATED)
