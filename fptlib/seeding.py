"""Named random streams: every random draw of a run comes from a generator keyed by a tuple
(seed, stream, index...). A stream's number is part of every result computed with it, so these
values never change; a new kind of draw gets a new number.

The tensor hash lives here too: data hashes and frozen-weight digests are how a run proves which
random (or loaded) tensors it saw.
"""
from __future__ import annotations

import hashlib
from enum import IntEnum

import numpy as np
import torch

DATA_SEED = 20210309  # the paper's v1 date; fixes val/test sets and the MNIST split, whatever the run seed


class Stream(IntEnum):
    """The second key of a generator; the first is the run seed (or DATA_SEED)."""

    TRAIN_BATCH = 1   # (seed, 1, step): a generated task's training batch at `step`
    EPOCH_ORDER = 2   # (seed, 2, epoch): the permutation of a dataset's training split in `epoch`
    TRAIN_SAMPLE = 3  # (seed, 3, 0): the fixed sample of a generated task that train accuracy is scored on
    AUGMENT = 4       # (seed, 4, step): CIFAR-10 augmentation of the batch at `step`
    HEADS = 7         # (seed, 7): torch's global seed while the new input/output layers are initialised
    TRAINING = 11     # (seed, 11): torch's global seed for a fresh run's dropout (Accelerate's set_seed)
    MASK = 12         # (seed, 12, step): the tokens self-pretraining masks at `step` (negative: its eval sets)


# Fixed evaluation sets of generated tasks are drawn from (DATA_SEED, index of the split in SPLITS).


def generator(*key: int) -> torch.Generator:
    """A torch generator seeded from a tuple of integers (well mixed, so nearby keys differ)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def stream_seed(seed: int, stream: Stream) -> int:
    """A plain integer seed for APIs that take one (torch.manual_seed, accelerate's set_seed)."""
    return int(generator(seed, stream).initial_seed())


def hash_tensors(*tensors: torch.Tensor) -> str:
    """sha256 of shapes and bytes, 16 hex digits: equal exactly when the tensors are."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
