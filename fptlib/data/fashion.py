"""Fashion-MNIST: 70,000 real 28x28 grayscale photos of clothing in ten classes (Zalando), in MNIST's IDX
format: an offline real-image task beyond the paper, read as MNIST is (4x4 patches, 49 tokens of 16).

`fpt data fetch fashion-mnist` takes the files from the Debian package `dataset-fashion-mnist` where the
machine has it or apt-get can download it (no root needed; fptlib.data.debian), else from the canonical
release on the network. Debian recompressed the .gz files, so a Debian copy is checked by the sha256 of its
unpacked IDX content (pinned below) and kept unpacked; a download is checked by the md5 Zalando publishes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..paths import data_dir
from . import debian
from .mnist import MNIST, MNIST_IDX, check_idx, find_idx, load_idx_splits
from .spec import Dataset, Remote

SUBDIR = "fashion-mnist"
PACKAGE, PACKAGE_DIR = "dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def fashion_dir() -> Path:
    return data_dir() / SUBDIR


def fashion_available(root: Path | None = None) -> bool:
    root = root or fashion_dir()
    return all(find_idx(root, s) for s in MNIST_IDX.values())


@dataclass
class FashionMNIST(MNIST):
    """Fashion-MNIST's 60,000 training images (n_val of them carved out, stratified, for validation) and its
    10,000 test images, always scored in full. Options as MNIST's; the source is always the IDX files."""

    TASK: ClassVar[str] = "fashion-mnist"
    source: str = "idx"
    n_val: int = 5000

    def _load(self):
        return load_idx_splits(fashion_dir(), "Fashion-MNIST",
                               "Fashion-MNIST needs {missing} (.gz or not) in {root}: run `fpt data fetch "
                               "fashion-mnist` (from the Debian package dataset-fashion-mnist, or the network)")


def debian_copy(staging: Path, log) -> tuple[str, dict[str, Path]] | None:
    """The package's four files, unpacked into staging under their IDX names (verified by the caller)."""
    root = debian.package_root(PACKAGE, f"{PACKAGE_DIR}/{MNIST_IDX['train_images']}.gz", log)
    if root is None:
        return None
    copies = {}
    for stem in MNIST_IDX.values():
        src = debian.find_file(root, f"{PACKAGE_DIR}/{stem}")
        if src is not None:
            copies[stem] = debian.copy_plain(src, staging / stem)
    return f"Debian package {PACKAGE} ({root / PACKAGE_DIR.lstrip('/')})", copies


def _remote(stem: str, md5: str, content_sha256: str) -> Remote:
    return Remote(name=f"{stem}.gz",
                  urls=(f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{stem}.gz",
                        f"https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/{stem}.gz"),
                  known_hash=f"md5:{md5}", check=check_idx, alt_names=(stem,), content_hash=content_sha256)


SPEC = Dataset(
    "fashion-mnist", task=FashionMNIST, column=8, column_title="Fashion-MNIST", in_paper=False,
    title="Fashion-MNIST", subdir=SUBDIR, remotes=(
        _remote("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        _remote("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        _remote("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        _remote("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
    checksum="md5 published by Zalando (downloads); sha256 of the unpacked IDX content (Debian's copy) + IDX "
             "header/size check",
    note="an offline real-image task beyond the paper: from the Debian package dataset-fashion-mnist where "
         "apt-get can reach it, else the canonical release",
    present=lambda o: fashion_available(), local=debian_copy, auto_fetch=True)
