"""Pfam families: an offline protein task beyond the paper. Which of eight protein families does a window
of amino acids come from?

* Families: the protein profile HMMs that HMMER 3.3.2 ships with their seed alignments (Debian package
  `hmmer-examples`): seven Pfam families (Caudal_act, LuxC, Patched, RRM_1, SMC_N, Pkinase, fn3) and the
  tutorial's globin family built from four real globins. XYPPX, the ninth, is left out: its 5-residue
  domain cannot fill a window.
* Training and validation: sequences sampled from each profile HMM by HMMER's `hmmemit` (core model,
  fixed seeds 1 and 2) when the data is fetched: a pool of POOL["train"] per family to train on, a
  disjoint sample of POOL["val"] to validate on. A training batch draws (family, sequence, offset) from
  a generator keyed by (seed, step), so the stream is a pure function of seed and step.
* Test: the real seed-alignment sequences (gaps removed), never seen in training: their non-overlapping
  windows, at most `test_per_family` per family (taken round-robin over the family's sequences). A pool
  sequence holding any test window is left out of training.
* Every example is exactly `window` residues, so length says nothing of the family (a length-only
  classifier can do no better than always guessing the largest family of the test split).
* Tokens: the amino-acid vocabulary of the homology task (embedding input, as the paper's homology).
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import sha256_file, write_text_atomic
from ..paths import data_dir
from ..seeding import DATA_SEED, Stream, generator, hash_tensors
from . import debian
from .base import DataError, Task, TaskShape
from .homology import PAD, VOCAB, encode
from .spec import Dataset, Remote

SUBDIR = "pfam"
# family -> folder of the HMMER 3.3.2 release that holds its .hmm and .sto
FAMILIES = {"Caudal_act": "testsuite", "LuxC": "testsuite", "Patched": "testsuite", "RRM_1": "testsuite",
            "SMC_N": "testsuite", "Pkinase": "tutorial", "fn3": "tutorial", "globins4": "tutorial"}
POOL = {"train": 1000, "val": 100}          # sequences hmmemit samples per family
EMIT_SEED = {"train": 1, "val": 2}          # hmmemit --seed of each pool (fixed: the data, not the run)
EXAMPLES, RELEASE = "/usr/share/doc/hmmer/examples", "hmmer-3.3.2"

def pfam_dir() -> Path:
    return data_dir() / SUBDIR


def pool_path(root: Path, family: str, split: str) -> Path:
    return root / "emitted" / f"{family}.{split}.fa"


def read_fasta(path: Path) -> list[str]:
    seqs, cur = [], []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if cur:
                seqs.append("".join(cur))
            cur = []
        elif line.strip():
            cur.append(line.strip().upper())
    if cur:
        seqs.append("".join(cur))
    return seqs


def read_stockholm(path: Path) -> dict[str, str]:
    """The sequences of a Stockholm alignment, in file order, gaps ('-', '.') removed, upper case."""
    opener = gzip.open if path.suffix == ".gz" else open
    seqs: dict[str, str] = {}
    with opener(path, "rt") as f:
        first = f.readline()
        if not first.startswith("# STOCKHOLM"):
            raise DataError(f"{path} is not a Stockholm alignment (no '# STOCKHOLM' header)")
        for line in f:
            if not line.strip() or line.startswith(("#", "//")):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{path}: cannot read the alignment line {line.strip()[:60]!r}")
            seqs[parts[0]] = seqs.get(parts[0], "") + parts[1]
    if not seqs:
        raise DataError(f"{path} holds no sequences")
    return {k: v.replace("-", "").replace(".", "").upper() for k, v in seqs.items()}


def test_windows(seqs: list[str], window: int, cap: int) -> list[str]:
    """Non-overlapping windows of the real sequences, round-robin over sequences, at most `cap`."""
    per_seq = [[s[i:i + window] for i in range(0, len(s) - window + 1, window)] for s in seqs]
    out = [w[k] for k in range(max(map(len, per_seq), default=0)) for w in per_seq if k < len(w)]
    return out[:cap]


@dataclass
class PfamFamilies(Task):
    """Classify a window of `window` residues into one of the eight families (see the module docstring)."""

    window: int = 48
    test_per_family: int = 32
    n_train_eval: int = 1000

    def __post_init__(self):
        if not isinstance(self.window, int) or not 8 <= self.window <= 63:
            raise DataError(f"pfam window must be an integer from 8 to 63 (the shortest real RRM_1 sequence), "
                            f"not {self.window!r}")
        self.name = "pfam"
        self.take_planned_shape()
        root = pfam_dir()
        if (why := unprepared(root)) or not all((root / f"{f}.sto").exists() for f in FAMILIES):
            raise DataError(f"the Pfam families are not in {root} ({why or 'seed alignments missing'}): run "
                            "`fpt data fetch pfam`")
        self.test_seqs = {f: list(read_stockholm(root / f"{f}.sto").values()) for f in FAMILIES}
        tests = [test_windows(self.test_seqs[f], self.window, self.test_per_family) for f in FAMILIES]
        self._test_set = {w for ws in tests for w in ws}
        self.pools = {s: [self._pool(root, f, s) for f in FAMILIES] for s in ("train", "val")}
        self._data = {"test": self._pack([w for ws in tests for w in ws],
                                         [k for k, ws in enumerate(tests) for _ in ws]),
                      "val": self._sample(self.pools["val"], None, generator(DATA_SEED, 1))}
        self._data["train"] = self._sample(self.pools["train"], self.n_train_eval,
                                           generator(self.seed, Stream.TRAIN_SAMPLE, 0))
        self._hash: str | None = None

    def _pool(self, root: Path, family: str, split: str) -> list[str]:
        """The sampled sequences long enough for a window, without any that holds a test window."""
        seqs = [s for s in read_fasta(pool_path(root, family, split)) if len(s) >= self.window]
        seqs = [s for s in seqs if not any(w in s for w in self._test_set)]
        if not seqs:
            raise DataError(f"no {split} sequence of {family} is {self.window} residues long; lower the window")
        return seqs

    def _pack(self, windows: list[str], labels: list[int]) -> dict:
        x = torch.from_numpy(np.stack([encode(w) for w in windows]).astype(np.int64)) if windows else \
            torch.full((0, self.window), PAD, dtype=torch.long)
        return {"x": x, "y": torch.tensor(labels, dtype=torch.long)[:, None]}

    def _sample(self, pools: list[list[str]], n: int | None, g: torch.Generator) -> dict:
        """n windows (family uniform, then sequence, then offset), or one per sequence when n is None."""
        if n is None:
            picks = [(f, i) for f, pool in enumerate(pools) for i in range(len(pool))]
        else:
            fams = torch.randint(0, len(pools), (n,), generator=g).tolist()
            u = torch.rand(n, generator=g).tolist()
            picks = [(f, int(v * len(pools[f]))) for f, v in zip(fams, u)]
        offsets = torch.rand(len(picks), generator=g).tolist()
        windows = []
        for (f, i), v in zip(picks, offsets):
            s = pools[f][i]
            start = int(v * (len(s) - self.window + 1))
            windows.append(s[start:start + self.window])
        return self._pack(windows, [f for f, _ in picks])

    @classmethod
    def planned_shape(cls, options):
        return TaskShape(cls.option(options, "window"), len(VOCAB), "tokens", 1, len(FAMILIES), len(FAMILIES))

    def split_size(self, split):
        return len(self._data[split]["y"])

    def train_batch(self, step, batch_size):
        return self._sample(self.pools["train"], batch_size, generator(self.seed, Stream.TRAIN_BATCH, step))

    def eval_batches(self, split, batch_size, limit=None):
        d = self._data[split]
        n = len(d["y"]) if limit is None else min(limit, len(d["y"]))
        for i in range(0, n, batch_size):
            yield {k: v[i:min(i + batch_size, n)] for k, v in d.items()}

    def data_hash(self):
        if self._hash is None:  # the pools are megabytes: hashed once
            pools = "\n".join("\n".join(p) for s in ("train", "val") for p in self.pools[s]).encode()
            self._hash = hash_tensors(torch.frombuffer(bytearray(pools), dtype=torch.uint8),
                                      *(self._data[s][k] for s in ("val", "test") for k in ("x", "y")))
        return self._hash

    def describe(self):
        counts = torch.bincount(self._data["test"]["y"][:, 0], minlength=len(FAMILIES)).tolist()
        return super().describe() | {
            "source": f"{len(FAMILIES)} protein families of HMMER 3.3.2 in {pfam_dir()}: train/val sampled "
                      "by hmmemit, test the real seed-alignment sequences",
            "families": list(FAMILIES), "window": self.window, "test_per_family": dict(zip(FAMILIES, counts)),
            "majority_share": max(counts) / sum(counts)}


# ---- Fetching: the family files, then the sampled pools ----------------------------------------------


def _check_family_file(path: Path) -> str:
    if path.suffix == ".sto":
        return f"{len(read_stockholm(path))} seed sequences"
    head = path.read_text()[:200]
    if not head.startswith("HMMER3"):
        raise DataError(f"{path} is not a HMMER3 profile HMM; delete it and run `fpt data fetch pfam`")
    return "HMMER3 profile"


def _remote(family: str, ext: str, sha256: str) -> Remote:
    folder = FAMILIES[family]
    return Remote(name=f"{family}.{ext}", known_hash=f"sha256:{sha256}", check=_check_family_file,
                  urls=(f"https://raw.githubusercontent.com/EddyRivasLab/hmmer/{RELEASE}/{folder}/{family}.{ext}",))


def debian_copy(staging: Path, log) -> tuple[str, dict[str, Path]] | None:
    root = debian.package_root("hmmer-examples", f"{EXAMPLES}/tutorial/fn3.hmm", log)
    if root is None:
        return None
    copies = {}
    for family, folder in FAMILIES.items():
        for ext in ("hmm", "sto"):
            src = debian.find_file(root, f"{EXAMPLES}/{folder}/{family}.{ext}")
            if src is not None:
                copies[f"{family}.{ext}"] = debian.copy_plain(src, staging / f"{family}.{ext}")
    return f"Debian package hmmer-examples ({root / EXAMPLES.lstrip('/')})", copies


def hmmemit(log=print) -> str:
    """The hmmemit program: on PATH, else from the Debian package hmmer (fptlib.data.debian)."""
    found = shutil.which("hmmemit")
    if found:
        return found
    root = debian.package_root("hmmer", "/usr/bin/hmmemit", log)
    if root is None:
        raise DataError("the Pfam task samples its training sequences with HMMER's hmmemit, which is not "
                        "here: install HMMER 3 (apt-get install hmmer, conda install -c bioconda hmmer, or "
                        "brew install hmmer) and run `fpt data fetch pfam` again")
    return str(root / "usr/bin/hmmemit")


def unprepared(root: Path) -> str | None:
    missing = [f"{f}.{s}" for f in FAMILIES for s in POOL if not pool_path(root, f, s).is_file()]
    return None if not missing else f"sampled sequences {', '.join(missing[:3])}" + (
        f" and {len(missing) - 3} more missing" if len(missing) > 3 else " missing")


def prepare(root: Path, log=print) -> dict:
    """Sample every family's pools with hmmemit; returns their manifest records."""
    program, records = hmmemit(log), {}
    version = subprocess.run([program, "-h"], capture_output=True, text=True).stdout.split("\n")[1].strip("# ")
    for family in FAMILIES:
        for split, n in POOL.items():
            out = pool_path(root, family, split)
            got = subprocess.run([program, "-N", str(n), "--seed", str(EMIT_SEED[split]), str(root / f"{family}.hmm")],
                                 capture_output=True, text=True)
            if got.returncode or not got.stdout.startswith(">"):
                raise DataError(f"hmmemit failed on {root / f'{family}.hmm'}: {got.stderr.strip()[-300:]}")
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, got.stdout)
            records[f"emitted/{out.name}"] = {"sha256": sha256_file(out), "made_by": f"{version}: hmmemit -N {n} "
                                              f"--seed {EMIT_SEED[split]} {family}.hmm"}
    log(f"sampled {sum(POOL.values())} sequences per family with {version}")
    return records


_HASHES = {
    "Caudal_act": ("4b982fa5bd528362b592f238cd82b1bf0635e82654a9c88c490bce7a6468366a",
                   "1e52d6e7e735e822b9feb3711cbd3cd2f515d1660e394055a4fd67afe2088bdc"),
    "LuxC": ("7c5eb56c1f30d5a3a7b258d6989e4b14b4e104e46383af078a9054f3f0b74d15",
             "e2cf20e9c15473a9ee33634415327e64b2e77b482dd6e43f759123c22f2e0edc"),
    "Patched": ("61ec7a186019d4d9a5223ac16440bc838ae9f1cb8342894b258227d9f4fabfd9",
                "5a799a2f9d816836ff8fb2104b9aa17c7c2ccf8008d09bef041fb8c937982cdb"),
    "RRM_1": ("fa4b6fa3dfe73838c82f43a61d55a1b8b55979b02b279020ab374ddfe3b0a7ff",
              "21ba28a68df20abd9b253ca251d05bae3fcef187986df04c16628575e00e81df"),
    "SMC_N": ("22e80e6795fc02e8ea9fda2c2c536e1ed34676f61315a0b3a8871a6f306f1eb5",
              "47b48fa46d00f0f2e98856fcc3e40874a271e76b09fa875ef98366004ddd7586"),
    "Pkinase": ("17754c407138f16a68dc208418fe9cacc00b9d3833dbf756e1cf0610db76bb0a",
                "0c47730946f72ba51d4e0fb82c167e4b77c70b3eab45d08bd8e068ea04000726"),
    "fn3": ("bc1513993c2dd5d98a242574196805d3adf65c4b72cd61dc94053799fa9f050b",
            "239fda955c5b6836b62288ec5c20bd6d16bea48739bd0ff8ef1574ec1da5d043"),
    "globins4": ("a64cd91d934b7b43f962dbd6da1e18afa76e6623970a41116c11cf008d5d2c49",
                 "8ebe534e622a992224c48f7c166accdf68a0aabfaed26c915932d56434656a85"),
}

SPEC = Dataset(
    "pfam", task=PfamFamilies, column=9, column_title="Pfam families", in_paper=False, title="the Pfam families",
    subdir=SUBDIR,
    remotes=tuple(_remote(f, ext, h) for f, hs in _HASHES.items() for ext, h in zip(("hmm", "sto"), hs)),
    checksum="sha256 of each HMMER 3.3.2 file (as Debian's hmmer-examples ships it, unpacked) + format check; "
             "the sampled pools' sha256 recorded in the manifest",
    note="an offline protein task beyond the paper: HMMER's example families from the Debian package "
         "hmmer-examples where apt-get can reach it, else the HMMER 3.3.2 release; hmmemit samples the training "
         "sequences",
    present=lambda o: unprepared(pfam_dir()) is None and (pfam_dir() / "globins4.sto").exists(),
    local=debian_copy, prepare=prepare, unprepared=unprepared, auto_fetch=True)
