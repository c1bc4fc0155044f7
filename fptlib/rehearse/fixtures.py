"""Small copies of every downloadable dataset in its canonical format, under its canonical file names:
MNIST's four gzipped IDX files, CIFAR-10's python-batches archive, LRA ListOps' three TSV files and
TAPE's remote-homology archive of LMDB directories. A mirror (`rehearse.mirror`) serves them so that
`fpt data fetch --mirror` exercises the real download, checksum and unpacking path.

The contents are synthetic and seeded (the same bytes every time); the sizes are what the paper scale's
settings need and no more: MNIST holds out 5,000 training images for validation there and CIFAR-10
1,000, so their training sets are just above that; the other splits are small, since every example of
a held-out split is evaluated."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import cifar, homology, listops


@dataclass(frozen=True)
class Sizes:
    mnist_train: int = 5100      # paper: n_val 5000 carved from the training images
    mnist_test: int = 100
    cifar_per_batch: int = 230   # x5 training batches: n_val 1000 + 150 to train on
    cifar_test: int = 100
    listops: tuple[int, int, int] = (64, 16, 16)   # train, val, test expressions
    listops_len: tuple[int, int] = (500, 1200)      # LRA's lower bound; some exceed 1024 and are cropped
    homology: tuple[int, ...] = (64, 16, 12, 12, 12)  # TAPE splits in homology.SPLIT_FILES order


def idx_gz(arr: np.ndarray) -> bytes:
    """An unsigned-byte IDX file (MNIST's format), gzipped without a timestamp."""
    head = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(head + arr.astype(np.uint8).tobytes(), mtime=0)


def tar_gz(entries: dict[str, bytes], extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    """A gzipped tar of {path: bytes}, its directories first, with fixed times so it is reproducible."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for d in sorted({str(Path(n).parent) for n in entries} - {"."}):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...], labels: np.ndarray) -> np.ndarray:
    """Images whose brightness says their label (so a few steps can learn something), plus noise."""
    base = (labels.reshape((-1,) + (1,) * len(shape)) * 25).astype(np.int64)
    return np.clip(base + rng.integers(0, 40, (n,) + shape), 0, 255).astype(np.uint8)


def mnist_files(sizes: Sizes = Sizes(), seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    out = {}
    for stem, n in (("train", sizes.mnist_train), ("t10k", sizes.mnist_test)):
        labels = np.arange(n) % 10
        out[f"{stem}-images-idx3-ubyte.gz"] = idx_gz(_images(rng, n, (28, 28), labels))
        out[f"{stem}-labels-idx1-ubyte.gz"] = idx_gz(labels)
    return out


def cifar_archive(sizes: Sizes = Sizes(), seed: int = 0) -> bytes:
    """cifar-10-python.tar.gz: five training batches and a test batch, pickled as the release is."""
    rng = np.random.default_rng(seed)
    entries = {}
    batches = [(f, sizes.cifar_per_batch) for f in cifar.TRAIN_FILES] + [("test_batch", sizes.cifar_test)]
    for name, n in batches:
        labels = (np.arange(n) + len(entries)) % 10
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                 b"data": _images(rng, n, (3072,), labels),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        entries[f"{cifar.BATCHES_DIR}/{name}"] = pickle.dumps(batch, protocol=2)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    entries[f"{cifar.BATCHES_DIR}/batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in names], b"num_cases_per_batch": sizes.cifar_per_batch,
         b"num_vis": 3072}, protocol=2)
    entries[f"{cifar.BATCHES_DIR}/readme.html"] = b"<html></html>"
    return tar_gz(entries)


def listops_files(sizes: Sizes = Sizes(), seed: int = 0) -> dict[str, bytes]:
    """basic_{train,val,test}.tsv, printed as LRA prints them, from the project's own generator."""
    lo, hi = sizes.listops_len
    seen: set = set()
    out = {}
    for k, (split, n) in enumerate(zip(("train", "val", "test"), sizes.listops)):
        examples = listops.generate_examples(n, min_len=lo, max_len=hi, seed=seed * 10 + k, exclude=seen)
        rows = ["Source\tTarget"] + [f"{listops.to_source(list(ids))}\t{v}" for ids, v in examples]
        out[f"basic_{split}.tsv"] = ("\n".join(rows) + "\n").encode()
    return out


def write_lmdb(path: Path, records: list[dict]) -> None:
    """An LMDB directory as TAPE writes one: b"num_examples" and b"0", b"1", ... holding pickles."""
    import lmdb
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"num_examples", pickle.dumps(len(records)))
        for i, r in enumerate(records):
            txn.put(str(i).encode(), pickle.dumps(r))
    env.close()


def homology_archive(sizes: Sizes = Sizes(), seed: int = 0) -> bytes:
    """remote_homology.tar.gz: one LMDB directory per TAPE split, records shaped as TAPE's."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp) / "remote_homology"
        top.mkdir()
        for stem, n in zip(homology.SPLIT_FILES.values(), sizes.homology):
            recs = []
            for i in range(n):
                length = int(rng.integers(20, 300))
                recs.append({"id": f"d{stem[:4]}{i}a_", "primary": "".join(rng.choice(list(homology.AMINO_ACIDS),
                                                                                        length)),
                             "protein_length": length, "fold_label": int(rng.integers(0, homology.N_FOLDS)),
                             "superfamily_label": int(rng.integers(0, 1822)),
                             "family_label": int(rng.integers(0, 3439)), "class_label": int(rng.integers(0, 7))})
            write_lmdb(top / f"remote_homology_{stem}.lmdb", recs)
        entries = {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}
    return tar_gz(entries)


def canonical_files(sizes: Sizes = Sizes(), seed: int = 0) -> dict[str, bytes]:
    """{file name as published: bytes} for every downloadable dataset."""
    return {**mnist_files(sizes, seed), "cifar-10-python.tar.gz": cifar_archive(sizes, seed),
            **listops_files(sizes, seed), "remote_homology.tar.gz": homology_archive(sizes, seed)}


def checksums(files: dict[str, bytes]) -> dict[str, str | None]:
    """The fixtures' own checksums in place of the published ones (`fpt data fetch --hashes`): sha256 of
    each file, and no published hash for archive members (the archive's own hash covers them)."""
    out: dict[str, str | None] = {name: "sha256:" + hashlib.sha256(data).hexdigest() for name, data in files.items()
                                  if not name.endswith(".tsv")}  # LRA publishes none: format-checked
    if "cifar-10-python.tar.gz" in files:
        out.update({f"{cifar.BATCHES_DIR}/{m}": None for m in cifar.TRAIN_FILES + cifar.TEST_FILES + ("batches.meta",)})
    return out


def write(directory: Path, sizes: Sizes = Sizes(), seed: int = 0) -> dict[str, str | None]:
    """Write every canonical file into `directory` and its checksums beside them (checksums.json)."""
    from ..io import write_json_atomic
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = canonical_files(sizes, seed)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    sums = checksums(files)
    write_json_atomic(directory / "checksums.json", sums)
    return sums
