"""Remote homology: TAPE's fold classification (Rao et al. 2019), the paper's "Homology" column.

Each example is one SCOPe protein domain, given as its amino-acid sequence; the target is its fold,
one of 1195 classes (TAPE's `fold_label`). Train on `train`, select on `valid`, and test on the three
hold-out sets, where whole folds / superfamilies / families were kept out of training:

    our split name              TAPE file (under <data>/homology/remote_homology/)
    train                       remote_homology_train.lmdb
    val                         remote_homology_valid.lmdb
    test                        remote_homology_test_fold_holdout.lmdb
    test_superfamily_holdout    remote_homology_test_superfamily_holdout.lmdb
    test_family_holdout         remote_homology_test_family_holdout.lmdb

That is the layout of TAPE's extracted `remote_homology.tar.gz` (LMDB: a key b"num_examples" holding a
pickled int, and keys b"0", b"1", ... each holding a pickled dict with 'primary' (the sequence as a
string), 'protein_length', 'fold_label', 'superfamily_label', 'family_label', 'class_label', 'id' and
per-residue features we do not use). TAPE's raw-data variant, a JSON list of the same dicts in
`remote_homology_<split>.json`, is read too. Records are unpickled with a restricted unpickler that
only builds plain Python values and numpy arrays, so a tampered file cannot run code.

Inputs and outputs, and how they differ from the original code (docs/paper.md §2, §5.4 item 7):

* Vocabulary: 0 is padding, 1..25 are the 25 letters TAPE's IUPAC vocabulary uses, the 20 standard
  amino acids plus B (Asx), O (pyrrolysine), U (selenocysteine), X (unknown) and Z (Glx), and 26 is
  for any other character (counted per split; TAPE itself would refuse such a sequence). So
  d_in = 27. The original embeds TAPE's 30-token vocabulary (the 25 letters plus <pad>, <mask>,
  <cls>, <sep>, <unk>) and wraps each sequence in <cls> ... <sep>. We add no special tokens: the
  output layer reads the last real residue (GPT-2 is causal, so it has seen the whole sequence).
* Outputs: exactly the 1195 fold classes (the original has 1200 logits, 5 of them never a target).
* Length: a sequence longer than `max_len` residues (default 1024, GPT-2's positions) is either
  dropped (long_policy="drop", the default) or cut to its first `max_len` residues ("crop"). Both
  are counted per split. The model's sequence length is `max_len`, so a backbone with fewer
  positions is refused when the run is configured; set max_len (and the policy) to fit it.
  The original skips every *batch* whose padded length (residues + 2 special tokens) exceeds 1024,
  at training and at evaluation, so its kept set depends on the batch size and the shuffling; it
  then multiplies reported accuracies by a hand-entered .9739. We drop single sequences, the same
  ones in every run, and report accuracy both ways: over the kept examples, and with the dropped
  ones counted as wrong (`accuracy_dropped_as_wrong`).
* Padding: batches are right-padded to their longest sequence, with an attention mask (the
  original passes no mask, so its padding is attended to). Evaluation batches group sequences of
  similar length (less padding, same results: padded positions are masked out).
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io import safe_loads
from ..paths import data_dir
from ..seeding import DATA_SEED, hash_tensors
from .base import DROP, DataError, EpochOrder, Task, TaskShape
from .spec import Dataset, Remote

N_FOLDS = 1195
# TAPE's file stem for each of our split names.
SPLIT_FILES = {"train": "train", "val": "valid", "test": "test_fold_holdout",
               "test_superfamily_holdout": "test_superfamily_holdout",
               "test_family_holdout": "test_family_holdout"}
EXTRA_SPLITS = ("test_superfamily_holdout", "test_family_holdout")
LONG_POLICIES = (DROP, "crop")

STANDARD_AA = "ACDEFGHIKLMNPQRSTVWY"
UNCOMMON_AA = "BOUXZ"  # Asx, pyrrolysine, selenocysteine, unknown, Glx
AMINO_ACIDS = "".join(sorted(STANDARD_AA + UNCOMMON_AA))  # the 25 letters of TAPE's IUPAC vocabulary
PAD, UNK = 0, len(AMINO_ACIDS) + 1
VOCAB = ("<pad>",) + tuple(AMINO_ACIDS) + ("<unk>",)  # token id -> symbol; 27 entries

_BYTE_TO_ID = np.full(256, UNK, dtype=np.uint8)
for _i, _aa in enumerate(AMINO_ACIDS, start=1):
    _BYTE_TO_ID[ord(_aa)] = _BYTE_TO_ID[ord(_aa.lower())] = _i

def homology_dir() -> Path:
    """Where the TAPE files are looked for: <data>/homology/remote_homology/ (FPT_DATA_DIR moves <data>)."""
    return data_dir() / "homology" / "remote_homology"


def encode(sequence: str) -> np.ndarray:
    """Amino-acid string -> token ids (uint8): letters 1..25, anything else UNK; case-insensitive."""
    raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
    return _BYTE_TO_ID[raw]


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] if 0 < int(i) < UNK else ("?" if int(i) == UNK else "") for i in ids)


def accuracy_dropped_as_wrong(accuracy: float, kept: int, dropped: int) -> float:
    """An accuracy over `kept` scored examples, re-expressed with `dropped` examples counted as wrong."""
    if kept < 0 or dropped < 0 or kept + dropped == 0:
        raise ValueError(f"need kept >= 0, dropped >= 0 and at least one example (kept={kept}, dropped={dropped})")
    return accuracy * kept / (kept + dropped)


def split_path(split: str, root: Path | None = None) -> Path | None:
    """The file (LMDB preferred, else JSON) holding one split, or None if neither exists."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_FILES)}")
    root = root or homology_dir()
    stem = f"remote_homology_{SPLIT_FILES[split]}"
    for cand in (root / f"{stem}.lmdb", root / f"{stem}.json"):
        if cand.exists():
            return cand
    return None


def homology_data_available(root: Path | None = None) -> bool:
    """True when all five split files are present (the cpu scale runs homology only then)."""
    return all(split_path(s, root) is not None for s in SPLIT_FILES)


def _missing_error(split: str, root: Path) -> DataError:
    stem = f"remote_homology_{SPLIT_FILES[split]}"
    return DataError(
        f"remote-homology split {split!r} not found: expected {root / stem}.lmdb (or .json). "
        f"Run `fpt data fetch homology`, or extract TAPE's remote_homology.tar.gz into {root.parent} so that "
        f"{root / 'remote_homology_train.lmdb'} exists. FPT_DATA_DIR moves the data directory "
        f"(now {data_dir()}).")


def _corrupt_error(path: Path, why: str) -> DataError:
    return DataError(f"{path} is unreadable or corrupt ({why}); delete it and fetch it again "
                     f"({SPEC.hint}).")


def _read_lmdb(path: Path) -> list[dict]:
    import lmdb
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                        max_readers=1, subdir=path.is_dir())
    except lmdb.Error as e:
        raise _corrupt_error(path, f"not an LMDB database: {e}") from e
    try:
        with env.begin(write=False) as txn:
            raw = txn.get(b"num_examples")
            if raw is None:
                raise _corrupt_error(path, "no 'num_examples' key")
            n = int(safe_loads(raw))
            records = []
            for i in range(n):
                raw = txn.get(str(i).encode())
                if raw is None:
                    raise _corrupt_error(path, f"record {i} of {n} is missing")
                records.append(safe_loads(raw))
    except DataError:
        raise
    except (lmdb.Error, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise _corrupt_error(path, f"{type(e).__name__}: {e}") from e
    finally:
        env.close()
    return records


def _read_json(path: Path) -> list[dict]:
    try:
        records = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt_error(path, f"not valid JSON: {e}") from e
    if not isinstance(records, list):
        raise _corrupt_error(path, f"expected a JSON list of records, found {type(records).__name__}")
    return records


def _primary(rec, path: Path, i: int) -> str:
    if not isinstance(rec, dict) or "primary" not in rec or "fold_label" not in rec:
        raise _corrupt_error(path, f"record {i} is not a dict with 'primary' and 'fold_label'")
    seq = rec["primary"]
    if isinstance(seq, bytes):
        seq = seq.decode("ascii", errors="replace")
    elif isinstance(seq, (list, tuple)) and all(isinstance(c, str) and len(c) == 1 for c in seq):
        seq = "".join(seq)
    if not isinstance(seq, str):
        raise DataError(f"{path}: record {i} stores 'primary' as {type(seq).__name__}, not an amino-acid "
                        "string; this reader expects TAPE's PyTorch-era files (LMDB or JSON with string "
                        f"sequences): delete the file and fetch again ({SPEC.hint})")
    if not seq:
        raise _corrupt_error(path, f"record {i} has an empty sequence")
    return seq


def _label(rec: dict, key: str, path: Path, i: int, n_classes: int | None = None) -> int:
    v = rec.get(key, -1)
    try:
        v = int(np.asarray(v).reshape(-1)[0]) if not isinstance(v, int) else v
    except (TypeError, ValueError, IndexError) as e:
        raise _corrupt_error(path, f"record {i} has a non-integer {key} {v!r}") from e
    if n_classes is not None and not 0 <= v < n_classes:
        raise DataError(f"{path}: record {i} has {key}={v}, outside 0..{n_classes - 1}; this is not TAPE's "
                        f"1195-fold remote-homology data: delete it and fetch again ({SPEC.hint})")
    return v


_CACHE: dict[tuple, dict] = {}


def _signature(path: Path) -> tuple:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return (str(path.resolve()),) + tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def read_split(split: str, root: Path | None = None) -> dict:
    """One split as {'primary': [str], 'fold_label', 'superfamily_label', 'family_label': int64 arrays,
    'id': [str], 'path': Path, 'format': 'lmdb' | 'json'}. Cached per file (re-read if it changes)."""
    root = root or homology_dir()
    path = split_path(split, root)
    if path is None:
        raise _missing_error(split, root)
    key = _signature(path)
    if key in _CACHE:
        return _CACHE[key]
    fmt = "lmdb" if path.suffix == ".lmdb" else "json"
    records = _read_lmdb(path) if fmt == "lmdb" else _read_json(path)
    if not records:
        raise _corrupt_error(path, "it holds no examples")
    out = {"primary": [_primary(r, path, i) for i, r in enumerate(records)],
           "fold_label": np.array([_label(r, "fold_label", path, i, N_FOLDS) for i, r in enumerate(records)],
                                  dtype=np.int64),
           "superfamily_label": np.array([_label(r, "superfamily_label", path, i) for i, r in enumerate(records)],
                                         dtype=np.int64),
           "family_label": np.array([_label(r, "family_label", path, i) for i, r in enumerate(records)],
                                    dtype=np.int64),
           "id": [str(r.get("id", i)) if not isinstance(r.get("id"), bytes) else r["id"].decode(errors="replace")
                  for i, r in enumerate(records)],
           "path": path, "format": fmt}
    if len(_CACHE) >= 16:  # sequences and labels only; a few MB for all five TAPE splits
        _CACHE.clear()
    _CACHE[key] = out
    return out


def _cap_indices(n: int, cap: int | None, key: int) -> np.ndarray:
    """All of 0..n-1, or a fixed random subset of `cap` of them (kept in file order)."""
    if cap is None or cap >= n:
        return np.arange(n)
    rng = np.random.default_rng([DATA_SEED, key])
    return np.sort(rng.choice(n, size=cap, replace=False))


@dataclass
class RemoteHomology(EpochOrder, Task):
    """TAPE remote homology (fold classification, 1195 classes) from the TAPE LMDB or JSON files.

    Options:
      max_len      residues per sequence the model sees (= seq_len; 1024 fits GPT-2's positions)
      long_policy  "drop": drop longer sequences (counted by split_dropped); "crop": keep the first
                   max_len residues (counted in describe()["cropped"])
      max_train    use a fixed random subset of this many training sequences (None: all)
      max_val      same for the validation set
      max_test     same for each of the three hold-out test sets
    Caps are applied before the length policy, so kept + dropped = the capped count.
    """

    max_len: int = 1024
    long_policy: str = DROP
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    extra_splits: tuple = field(init=False, default=EXTRA_SPLITS)

    def __post_init__(self):
        if not isinstance(self.max_len, int) or self.max_len < 1:
            raise DataError(f"homology max_len must be a positive integer, not {self.max_len!r}")
        if self.long_policy not in LONG_POLICIES:
            raise DataError(f"homology long_policy must be one of {LONG_POLICIES}, not {self.long_policy!r}")
        for k in ("max_train", "max_val", "max_test"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise DataError(f"homology {k} must be a positive integer or None, not {v!r}")
        self.name = "homology"
        self.take_planned_shape()
        self._data: dict[str, dict] = {}
        self._info: dict[str, dict] = {}
        caps = {"train": self.max_train, "val": self.max_val}
        for k, split in enumerate(SPLIT_FILES):
            self._load(split, caps.get(split, self.max_test), k)
        self._hash: str | None = None

    def _load(self, split: str, cap: int | None, key: int) -> None:
        raw = read_split(split)
        idx = _cap_indices(len(raw["primary"]), cap, key)
        tokens, labels, lengths = [], [], []
        dropped = cropped = unknown = longest = 0
        for i in idx:
            ids = encode(raw["primary"][i])
            unknown += int((ids == UNK).sum())
            longest = max(longest, len(ids))
            if len(ids) > self.max_len:
                if self.long_policy == DROP:
                    dropped += 1
                    continue
                ids, cropped = ids[:self.max_len], cropped + 1
            tokens.append(ids)
            labels.append(raw["fold_label"][i])
            lengths.append(len(ids))
        if not tokens:
            raise DataError(f"homology split {split!r} has no sequence of at most max_len={self.max_len} "
                            f"residues ({dropped} dropped); raise max_len or use long_policy='crop'")
        lengths_t = torch.tensor(lengths, dtype=torch.long)
        self._data[split] = {"tokens": torch.from_numpy(np.concatenate(tokens)),
                             "offsets": torch.cumsum(lengths_t, 0) - lengths_t,
                             "lengths": lengths_t,
                             "y": torch.tensor(np.asarray(labels, dtype=np.int64))}
        self._info[split] = {"file": str(raw["path"]), "format": raw["format"], "in_file": len(raw["primary"]),
                             "considered": len(idx), "kept": len(tokens), "dropped": dropped,
                             "cropped": cropped, "unknown_residues": unknown, "longest_residues": longest}

    # ---- Task interface ------------------------------------------------------------------------
    def _check(self, split: str) -> dict:
        if split not in self._data:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_FILES)}")
        return self._data[split]

    @classmethod
    def planned_shape(cls, options):
        return TaskShape(cls.option(options, "max_len"), len(VOCAB), "tokens", 1, N_FOLDS, N_FOLDS)

    def split_size(self, split):
        return len(self._check(split)["y"])

    def split_dropped(self, split):
        self._check(split)
        return self._info[split]["dropped"]

    def _batch(self, split: str, idx: torch.Tensor) -> dict:
        d = self._data[split]
        lens = d["lengths"][idx]
        x = torch.full((len(idx), int(lens.max())), PAD, dtype=torch.long)
        for row, (i, n) in enumerate(zip(idx.tolist(), lens.tolist())):
            start = int(d["offsets"][i])
            x[row, :n] = d["tokens"][start:start + n]
        mask = (torch.arange(x.shape[1])[None] < lens[:, None]).long()
        return {"x": x, "y": d["y"][idx][:, None], "attention_mask": mask}

    def train_batch(self, step, batch_size):
        return self._batch("train", self.train_indices(step, batch_size))

    def eval_batches(self, split, batch_size, limit=None):
        n = self.split_size(split)
        n = n if limit is None else min(limit, n)
        # The first n examples, batched in order of length (stable) to keep padding small.
        order = torch.argsort(self._data[split]["lengths"][:n], stable=True)
        for i in range(0, n, batch_size):
            yield self._batch(split, order[i:i + batch_size])

    def data_hash(self):
        if self._hash is None:
            self._hash = hash_tensors(*(self._data[s][k] for s in SPLIT_FILES for k in ("tokens", "lengths", "y")))
        return self._hash

    def accuracy_dropped_as_wrong(self, split: str, accuracy: float) -> float:
        """`accuracy` over the kept examples of `split`, with its dropped examples counted as wrong."""
        return accuracy_dropped_as_wrong(accuracy, self.split_size(split), self.split_dropped(split))

    def describe(self):
        info = {s: dict(v) for s, v in self._info.items()}
        return super().describe() | {
            "source": f"TAPE remote homology ({info['train']['format']}) in {Path(info['train']['file']).parent}",
            "vocabulary": "".join(VOCAB[1:UNK]) + " (+ <pad>=0, <unk>=26)",
            "max_len": self.max_len, "long_policy": self.long_policy,
            "extra_split_sizes": {s: self.split_size(s) for s in self.extra_splits},
            "dropped": {s: v["dropped"] for s, v in info.items()},
            "cropped": {s: v["cropped"] for s, v in info.items()},
            "splits": info,
        }


def _check_homology_lmdbs(top: Path) -> str:
    """remote_homology/: every split, read and checked by the homology reader itself."""
    return ", ".join(f"{name} {len(read_split(split, root=top)['primary']):,}"
                     for split, name in SPLIT_FILES.items())


SPEC = Dataset(
    "homology", task=RemoteHomology, column=7, column_title="Homology", title="TAPE remote homology",
    subdir="homology", remotes=(
        Remote(name="remote_homology.tar.gz",
               urls=("http://s3.amazonaws.com/songlabdata/proteindata/data_pytorch/remote_homology.tar.gz",
                     "http://s3.amazonaws.com/proteindata/data_pytorch/remote_homology.tar.gz"),
               known_hash="md5:1d687bdeb9e3866f77504d6079eed00a", check=_check_homology_lmdbs,
               extract="remote_homology"),),
    checksum="md5 published by TorchDrug for TAPE's archive (TAPE publishes none) + LMDB check "
             "(each split opens read-only and has num_examples)",
    present=lambda o: homology_data_available())
