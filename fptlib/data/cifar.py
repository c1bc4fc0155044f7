"""CIFAR-10 as the paper uses it: RGB images cut into patches, and the LRA "Image" variant
(grayscale, one pixel per token).

Data: the extracted official "python version" archive (cifar-10-python.tar.gz), i.e.
``data_dir()/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch}``. Each file is a pickled
dict (written by Python 2) whose ``data`` is a uint8 array (N, 3072): the red plane, then green,
then blue, each 32x32 in row-major order; ``labels`` is a list of N ints in 0..9. The files are read
with a restricted unpickler that can build only those containers and plain uint8 numpy arrays.

Tokens: an image of C channels cut into p x p patches gives (32/p)**2 tokens of p*p*C numbers. Patches
are taken in row-major order over the image; inside a patch the pixels are in row-major order and each
pixel's channels are consecutive (channel-last: R, G, B of pixel (0,0), then of pixel (0,1), ...).
With p=4 that is 64 tokens of 48 (RGB) or, for the LRA variant with p=1, 1024 tokens of 1.

Training augmentation (the original's torchvision pipeline, written with batched tensor operations and
applied in its order): zero-pad 4 and take a random 32x32 crop, flip horizontally with probability 0.5,
rotate by an angle drawn uniformly from [-20, 20] degrees about the image centre (nearest neighbour,
zero fill, counter-clockwise for positive angles: torchvision's RandomRotation defaults), then scale to
[0, 1] and normalise per channel. Evaluation batches are only scaled and normalised. The random draws of
training batch `step` come from a generator seeded by (seed, step), so a resumed run sees the same
augmented batches as an uninterrupted one.

CIFAR-10 LRA: grayscale by luma, L = (19595 R + 38470 G + 7471 B + 2**15) >> 16, which is what PIL's
convert("L") computes (0.299 R + 0.587 G + 0.114 B, rounded) and what torchvision's Grayscale calls;
normalised with mean 0.5 and std 0.5. Augmentation is off by default here; the original code had it on
(`data_aug=True` for cifar10-gray) and whether the paper's numbers used it is unknown. Pass augment=True
to match the code. With nearest-neighbour rotation and zero fill, graying before or after the geometric
augmentation gives identical pixels, so the LRA task augments the stored gray images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf

from ..io import safe_load
from ..paths import data_dir
from ..seeding import DATA_SEED, Stream, generator, hash_tensors
from .base import SPLITS, DataError, EpochOrder, Task, TaskShape
from .spec import Dataset, Remote

IMAGE_SIZE = 32
N_CLASSES = 10
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # the official archive

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the original's Normalize for RGB CIFAR-10
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
LRA_MEAN, LRA_STD = (0.5,), (0.5,)        # the original's Normalize for cifar10-gray

CROP_PADDING = 4
MAX_ROTATION_DEGREES = 20.0

FETCH_COMMAND = "fpt data fetch cifar10"


def cifar10_root() -> Path:
    """Where the extracted batch files are expected (moved with FPT_DATA_DIR)."""
    return data_dir() / "cifar10" / BATCHES_DIR


def cifar10_available(root: Path | None = None) -> bool:
    """True when all six batch files are present (not checked for corruption)."""
    root = Path(root) if root is not None else cifar10_root()
    return all((root / f).is_file() for f in TRAIN_FILES + TEST_FILES)


def _missing_message(root: Path, missing: list[str]) -> str:
    msg = (f"CIFAR-10 is missing {', '.join(missing)} in {root}. Run `{FETCH_COMMAND}`, or download the "
           f"official python-version archive ({CIFAR10_URL}) and extract it into {root.parent} so that "
           f"{BATCHES_DIR}/ is created there; set FPT_DATA_DIR to keep the data elsewhere")
    flat = root.parent / TRAIN_FILES[0]
    if flat.exists():
        msg += f" (found {flat}: the batch files belong in the {BATCHES_DIR}/ subdirectory)"
    return msg


def _corrupt_message(path: Path, why: str) -> str:
    return (f"{path} is not a valid CIFAR-10 python-version batch file ({why}); it is truncated or corrupt: "
            f"delete {path.parent} and run `{FETCH_COMMAND}` again")


# --- reading ----------------------------------------------------------------------------------------

def _field(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8 (N, 3, 32, 32), labels int64 (N,)), checked against the format."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = safe_load(f, encoding="bytes")
    except FileNotFoundError:
        raise DataError(_missing_message(path.parent, [path.name])) from None
    except Exception as e:  # truncated, garbage, or holds something other than the expected objects
        raise DataError(_corrupt_message(path, f"unpickling failed: {type(e).__name__}: {e}")) from e
    if not isinstance(d, dict):
        raise DataError(_corrupt_message(path, f"holds a {type(d).__name__}, not a dict"))
    data, labels = _field(d, "data"), _field(d, "labels")
    if data is None or labels is None:
        raise DataError(_corrupt_message(path, "no 'data' or no 'labels' entry"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__)
        raise DataError(_corrupt_message(path, f"'data' is {desc}, expected uint8 (N, 3072)"))
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(_corrupt_message(path, f"'labels' are not integers ({e})")) from e
    if labels.shape != (len(data),):
        raise DataError(_corrupt_message(path, f"{len(data)} images but {labels.size} labels"))
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(_corrupt_message(path, f"labels outside 0..{N_CLASSES - 1}"))
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels


_CACHE: dict = {}  # one loaded copy (~180 MB), reused while the files are unchanged


def load_cifar10(root: Path | None = None) -> dict:
    """{'train': (images, labels), 'test': (images, labels)}: uint8 (N, 3, 32, 32) and int64 (N,)."""
    root = Path(root) if root is not None else cifar10_root()
    names = TRAIN_FILES + TEST_FILES
    missing = [f for f in names if not (root / f).is_file()]
    if missing:
        raise DataError(_missing_message(root, missing))
    key = (str(root.resolve()),) + tuple((st.st_size, st.st_mtime_ns) for st in ((root / f).stat() for f in names))
    if key not in _CACHE:
        _CACHE.clear()
        parts = {f: read_cifar_batch(root / f) for f in names}
        out = {}
        for split, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
            out[split] = (np.concatenate([parts[f][0] for f in files]),
                          np.concatenate([parts[f][1] for f in files]))
        _CACHE[key] = out
    return _CACHE[key]


# --- image operations (batched, torch) -------------------------------------------------------------

def to_gray(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 1, H, W) luma, rounded exactly as PIL's convert("L")."""
    x = torch.as_tensor(images)
    out = torch.empty((x.shape[0], 1) + tuple(x.shape[2:]), dtype=torch.uint8)
    for i in range(0, len(x), 4096):  # in chunks: int32 copies of 50k images would take ~600 MB
        c = x[i:i + 4096].to(torch.int32)
        out[i:i + 4096, 0] = ((c[:, 0] * 19595 + c[:, 1] * 38470 + c[:, 2] * 7471 + (1 << 15)) >> 16).to(torch.uint8)
    return out


def random_crop(images: torch.Tensor, offsets: torch.Tensor, padding: int = CROP_PADDING) -> torch.Tensor:
    """Zero-pad each side by `padding`, then crop the original size at per-image offsets (B, 2) =
    (top, left) in 0..2*padding. Offsets (padding, padding) give the image back unchanged."""
    b, c, h, w = images.shape
    padded = nnf.pad(images, (padding,) * 4)
    rows = offsets[:, 0, None] + torch.arange(h)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w)  # (B, W)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def hflip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images where mask (B,) is True."""
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise (as displayed) by degrees (B,) about its centre; nearest
    neighbour, zero fill. Float images in, same dtype out."""
    theta = degrees.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # For each output pixel, where to sample the input (x right, y down, normalised to [-1, 1]).
    mat = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
    grid = nnf.affine_grid(mat.to(images.dtype), list(images.shape), align_corners=False)
    return nnf.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment_images(images: torch.Tensor, g: torch.Generator, padding: int = CROP_PADDING,
                   max_degrees: float = MAX_ROTATION_DEGREES) -> torch.Tensor:
    """The original's training augmentation on float images (B, C, H, W): crop, flip, rotation."""
    b = images.shape[0]
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=g)
    flips = torch.rand(b, generator=g) < 0.5
    degrees = (torch.rand(b, generator=g, dtype=torch.float64) * 2 - 1) * max_degrees
    return rotate(hflip(random_crop(images, offsets, padding), flips), degrees)


def to_patches(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)*(W/p), p*p*C): patches row-major, pixels row-major, channels last."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


# --- tasks -----------------------------------------------------------------------------------------

@dataclass
class CIFAR10(EpochOrder, Task):
    """CIFAR-10, RGB, patch_size x patch_size patches (4 -> 64 tokens of 48), one label per image.

    A stratified validation split of n_val images is carved from the 50,000 training images (fixed by
    DATA_SEED, so CIFAR-10 and CIFAR-10 LRA with the same n_val hold out the same images); the test
    split is the official 10,000-image test batch. max_train/max_test keep only the first images of
    the (shuffled) train split / official test order, for short runs.
    """

    patch_size: int = 4
    augment: bool = True           # the original's crop/flip/rotate, training batches only
    n_val: int = 1000
    max_train: int | None = None
    max_test: int | None = None

    grayscale = False              # class constants, not options
    mean = CIFAR10_MEAN
    std = CIFAR10_STD
    task_name = "cifar10"

    def __post_init__(self):
        if self.patch_size < 1 or IMAGE_SIZE % self.patch_size:
            raise DataError(f"{self.task_name} patch_size={self.patch_size} does not divide the 32x32 image; "
                            "choose 1, 2, 4, 8, 16 or 32")
        for opt in ("max_train", "max_test"):
            if getattr(self, opt) is not None and getattr(self, opt) < 1:
                raise ValueError(f"{opt} must be at least 1 (or None for all), got {getattr(self, opt)}")
        self.name = self.task_name
        self.take_planned_shape()

        splits = load_cifar10()
        Xtr, ytr = splits["train"]
        if not N_CLASSES <= self.n_val <= len(ytr) - N_CLASSES:
            raise ValueError(f"n_val={self.n_val} must be between {N_CLASSES} and {len(ytr) - N_CLASSES} "
                             f"(the training set has {len(ytr)} images)")
        from sklearn.model_selection import train_test_split
        idx_tr, idx_va = train_test_split(np.arange(len(ytr)), test_size=self.n_val, stratify=ytr,
                                          random_state=DATA_SEED % 2**31)
        Xte, yte = splits["test"]
        self._n_source = {"train": len(ytr), "test": len(yte)}
        self._data = {}
        for split, X, y, cap in (("train", Xtr[idx_tr], ytr[idx_tr], self.max_train),
                                 ("val", Xtr[idx_va], ytr[idx_va], None),
                                 ("test", Xte, yte, self.max_test)):
            X = torch.from_numpy(np.ascontiguousarray(X[:cap]))
            if self.grayscale:
                X = to_gray(X)
            self._data[split] = (X, torch.from_numpy(np.asarray(y[:cap], np.int64)))
        self._mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        self._hash: str | None = None

    @classmethod
    def planned_shape(cls, options):
        p = cls.option(options, "patch_size")
        return TaskShape((IMAGE_SIZE // p) ** 2, p * p * (1 if cls.grayscale else 3), "linear", 1, N_CLASSES, N_CLASSES)

    def tokens(self, images: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """uint8 images (B, C, 32, 32) -> normalised tokens; augmented when a generator is given."""
        x = images.to(torch.float32)
        if g is not None:
            x = augment_images(x, g)  # pixel copies only (nearest), so scaling after it changes nothing
        x = (x / 255.0 - self._mean) / self._std
        return to_patches(x, self.patch_size)

    def split_size(self, split):
        return len(self._data[split][1])

    def train_batch(self, step, batch_size):
        idx = self.train_indices(step, batch_size)
        X, y = self._data["train"]
        g = generator(self.seed, Stream.AUGMENT, step) if self.augment else None
        return {"x": self.tokens(X[idx], g), "y": y[idx][:, None]}

    def eval_batches(self, split, batch_size, limit=None):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        X, y = self._data[split]
        n = len(y) if limit is None else min(limit, len(y))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield {"x": self.tokens(X[i:j]), "y": y[i:j, None]}

    def data_hash(self):
        if self._hash is None:
            self._hash = hash_tensors(*(t for s in SPLITS for t in self._data[s]))
        return self._hash

    def describe(self):
        return super().describe() | {
            "source": f"CIFAR-10 python-version batch files in {cifar10_root()}: {self._n_source['train']} "
                      f"train images ({self.n_val} held out as a stratified val split), "
                      f"{self._n_source['test']} test images",
            "channels": "gray (PIL luma)" if self.grayscale else "RGB",
            "token_layout": "patches row-major; pixels row-major within a patch; channels last per pixel",
            "normalise": {"mean": list(self.mean), "std": list(self.std)},
            "augment": ("train only: pad 4 + random crop 32, hflip p=0.5, rotation U[-20,20] deg "
                        "(nearest, zero fill)") if self.augment else "none"}


@dataclass
class CIFAR10LRA(CIFAR10):
    """The LRA "Image" task as the original code builds it: grayscale CIFAR-10, one pixel per token
    (1024 tokens of 1), normalised with mean 0.5 / std 0.5. Augmentation is off by default, unlike the
    original code (on by default there); pass augment=True to match the code."""

    patch_size: int = 1
    augment: bool = False

    grayscale = True
    mean = LRA_MEAN
    std = LRA_STD
    task_name = "cifar10-lra"


def _check_cifar_batches(top: Path) -> str:
    """cifar-10-batches-py/: the six batches, read and checked by the CIFAR reader itself."""
    n = {f: len(read_cifar_batch(top / f)[1]) for f in TRAIN_FILES + TEST_FILES}
    if not (top / "batches.meta").is_file():
        raise DataError(f"{top / 'batches.meta'} is missing; the archive was not unpacked whole")
    return f"{sum(n[f] for f in TRAIN_FILES):,} train / {sum(n[f] for f in TEST_FILES):,} test images"


SPEC = Dataset(
    "cifar10", task=CIFAR10, column=5, column_title="CIFAR-10", title="CIFAR-10", subdir="cifar10", remotes=(
        Remote(name="cifar-10-python.tar.gz", urls=(CIFAR10_URL,),
               known_hash="md5:c58f30108f718f92721af3b95e74349a", check=_check_cifar_batches,
               extract=BATCHES_DIR,
               member_hashes=(("data_batch_1", "md5:c99cafc152244af753f735de768cd75f"),
                              ("data_batch_2", "md5:d4bba439e000b95fd0a9bffe97cbabec"),
                              ("data_batch_3", "md5:54ebc095f3ab1f0389bbae665268c751"),
                              ("data_batch_4", "md5:634d18415352ddfa80567beed471001a"),
                              ("data_batch_5", "md5:482c414d41f54cd18b22e5b47cb7c3cb"),
                              ("test_batch", "md5:40351d587109b95175f43aff81a1287e"),
                              ("batches.meta", "md5:5ff9c542aee3614f3951f8cda6e48888"))),),
    checksum="published md5 of the archive and of each batch (torchvision's CIFAR10 lists) + "
             "pickle structure check",
    present=lambda o: cifar10_available())
LRA_SPEC = Dataset("cifar10-lra", task=CIFAR10LRA, column=6, column_title="CIFAR-10 LRA", title="CIFAR-10",
                   kind="alias", alias_of="cifar10",
                   note="Long Range Arena's grayscale pixel-sequence variant, built from them",
                   present=lambda o: cifar10_available())
