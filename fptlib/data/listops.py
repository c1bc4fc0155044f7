"""ListOps (Nangia & Bowman 2018, as set by the Long Range Arena, Tay et al. 2020): nested list
operations over the digits 0-9; the answer is one digit (10 classes).

An expression in prefix form with explicit closing brackets, e.g. ``[MAX 2 [MIN 9 4 ] ]`` = 4:

* ``[MIN``, ``[MAX``: minimum, maximum of the arguments;
* ``[MED``: integer median: the median, truncated to an integer (LRA uses ``int(np.median(args))``,
  so an even count gives the floor of the mean of the two middle values: MED 3 4 5 6 = 4);
* ``[SM``: sum of the arguments modulo 10.

Generation follows the LRA specification, written here from that specification: a node at depth
d < max_depth (the root has depth 1) is an operator with probability 0.25, otherwise a digit; a node
at max_depth is always a digit; an operator takes uniformly 2..max_args arguments and is uniform over
the four operators. The length of an expression is its number of operator, digit and ``]`` tokens,
and LRA keeps expressions with ``min_len < length < max_len`` (500 and 2000), deduplicated, split
96k/2k/2k. Here the split is drawn in a fixed order from a generator seeded with ``data_seed``
(not the run seed): validation first, then test, then training, so the validation and test sets do
not change when only n_train does, and the same parameters always give the same dataset.

Tokenizers. The default keeps every operator token and the closing bracket ``]`` (16 ids with the
padding id 0). ``original_tokenizer=True`` reproduces the FPT code, which used LRA's TF pipeline:
TFDS's alphanumeric-only ``Tokenizer`` turns ``[MAX`` into ``MAX`` and drops ``]`` (and the
parentheses), the vocabulary is those 14 tokens plus padding (``nn.Embedding(15, .)``), and every
sequence is truncated to 512 tokens.

LRA's TSV files (``basic_{train,val,test}.tsv``, header ``Source<TAB>Target``) write each expression
as nested binary pairs in parentheses, e.g. ``( ( ( [MAX 2 ) 9 ) ] )`` for ``[MAX 2 9 ]``. The
parentheses are an artefact of that printing and carry nothing that ``]`` does not; LRA's own
pipeline (the alphanumeric tokenizer) discards them, and so does every tokenizer here.

Sequences are right-padded with id 0 to ``seq_len`` and batches carry an attention mask (1 = real
token), so the model reads the last real token and padding cannot change the answer.
"""
from __future__ import annotations

import hashlib
import io as _io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..io import write_bytes_atomic, write_text_atomic
from ..paths import data_dir
from ..seeding import DATA_SEED, hash_tensors
from .base import DROP, SPLITS, DataError, EpochOrder, Task, TaskShape
from .spec import Dataset, Remote

# ---- vocabulary ---------------------------------------------------------------------------------
PAD_ID = 0
DIGITS = tuple(str(d) for d in range(10))
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VOCAB = ("<pad>",) + DIGITS + OPERATORS + (END,)  # id = index: digits 1..10, operators 11..14, ] 15
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
FIRST_OP_ID, END_ID = TOKEN_ID["[MIN"], TOKEN_ID[END]
# The original (TFDS alphanumeric) tokenizer sees "MIN".."SM" and never "]": 14 tokens + padding.
ORIGINAL_VOCAB = ("<pad>",) + DIGITS + tuple(op[1:] for op in OPERATORS)
ORIGINAL_MAX_LEN = 512
N_CLASSES = 10
LRA_GENERATION = {"min_len": 500, "max_len": 2000, "max_depth": 10, "max_args": 10}
OPERATOR_P = 0.25  # LRA's VALUE_P: a node below max depth is an operator with this probability
LONG_POLICIES = ("error", "crop", DROP)
SOURCES = ("auto", "generate", "tsv")
_GENERATOR_VERSION = 1  # part of the cache key: bump when generation changes

FETCH_HINT = ("run `fpt data fetch listops`, or put the Long Range Arena files basic_train.tsv, "
              "basic_val.tsv and basic_test.tsv (from lra_release/listops-1000/) in {dir} "
              "(FPT_DATA_DIR moves the data directory), or use source='generate'")


def listops_dir() -> Path:
    return data_dir() / "listops"


# ---- expressions --------------------------------------------------------------------------------
def _apply(op_id: int, args: list[int]) -> int:
    k = op_id - FIRST_OP_ID
    if k == 0:
        return min(args)
    if k == 1:
        return max(args)
    if k == 2:  # int(np.median(args)): floor of the mean of the middle pair when the count is even
        s = sorted(args)
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2
    return sum(args) % 10


def tokenize(source: str, original: bool = False) -> list[str]:
    """An expression string (LRA's parenthesised form or plain prefix form) -> token strings.

    The default keeps ``[MIN`` ... ``]`` and drops LRA's parentheses. ``original=True`` does what
    TFDS's alphanumeric-only tokenizer did in the FPT code: only runs of letters and digits survive,
    so ``[MAX`` becomes ``MAX`` and ``]`` vanishes (the TSV tokens are single characters or words,
    so splitting on non-word characters gives exactly that tokenizer's output here).
    """
    if original:
        return re.findall(r"[A-Za-z0-9]+", source)
    out = []
    for t in source.split():
        if t in ("(", ")"):
            continue
        if t not in TOKEN_ID or t == VOCAB[PAD_ID]:
            raise DataError(f"unknown ListOps token {t!r} in {source[:80]!r}")
        out.append(t)
    return out


def encode(tokens: Sequence[str], original: bool = False) -> list[int]:
    """Token strings -> ids (padding is 0); ``original`` uses the 15-id vocabulary without ``]``."""
    vocab = {t: i for i, t in enumerate(ORIGINAL_VOCAB)} if original else TOKEN_ID
    try:
        return [vocab[t] for t in tokens if t != VOCAB[PAD_ID]]
    except KeyError as e:
        raise DataError(f"token {e.args[0]!r} is not in the {'original' if original else 'ListOps'} "
                        "vocabulary") from None


def _eval_ids(ids: Iterable[int]) -> int:
    """Value of an expression given as ids of the full vocabulary (with ``]``)."""
    stack: list[tuple[int, list[int]]] = []
    result = None
    for t in ids:
        t = int(t)
        if result is not None:
            raise ValueError("tokens after the end of the expression")
        if 1 <= t <= 10:
            v = t - 1
        elif FIRST_OP_ID <= t < END_ID:
            stack.append((t, []))
            continue
        elif t == END_ID:
            if not stack:
                raise ValueError("']' without an open operator")
            op, args = stack.pop()
            if not args:
                raise ValueError(f"{VOCAB[op]} has no arguments")
            v = _apply(op, args)
        else:
            raise ValueError(f"id {t} is not an expression token")
        if stack:
            stack[-1][1].append(v)
        else:
            result = v
    if stack or result is None:
        raise ValueError("unbalanced or empty expression (an operator is never closed)")
    return result


def evaluate(expr: str | Sequence[str] | Sequence[int]) -> int:
    """Value of an expression: a string (parentheses allowed), token strings, or token ids."""
    if isinstance(expr, str):
        expr = tokenize(expr)
    ids = [TOKEN_ID[t] for t in expr] if expr and isinstance(expr[0], str) else expr
    return _eval_ids(ids)


def to_source(expr: Sequence[str] | Sequence[int] | bytes) -> str:
    """Print an expression as LRA's TSV does: ``[OP a b ]`` -> ``( ( ( [OP a ) b ) ] )``."""
    toks = [VOCAB[i] for i in expr] if not (expr and isinstance(expr[0], str)) else list(expr)
    pos = 0

    def node() -> str:
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t in DIGITS:
            return t
        if t not in OPERATORS:
            raise ValueError(f"unexpected token {t!r} at position {pos - 1}")
        args = []
        while toks[pos] != END:
            args.append(node())
        pos += 1
        return "( " * (len(args) + 1) + t + " " + " ) ".join(args) + " ) ] )"

    s = node()
    if pos != len(toks):
        raise ValueError("tokens after the end of the expression")
    return s


# ---- generation ---------------------------------------------------------------------------------
class _TooLong(Exception):
    pass


def _tree(random, depth: int, max_depth: int, max_args: int, out: list, limit: int) -> int:
    """Append one random (sub)expression to `out` (ids) and return its value (LRA's tree law)."""
    if depth < max_depth and random() <= OPERATOR_P:
        op = FIRST_OP_ID + int(random() * 4)
        out.append(op)
        n = 2 + int(random() * (max_args - 1))  # uniform on 2..max_args
        args = [_tree(random, depth + 1, max_depth, max_args, out, limit) for _ in range(n)]
        out.append(END_ID)
        return _apply(op, args)
    if len(out) >= limit:  # already too long: stop early (it would be rejected anyway)
        raise _TooLong
    d = int(random() * 10)
    out.append(d + 1)
    return d


def generate_examples(n: int, *, min_len: int, max_len: int, max_depth: int = 10, max_args: int = 10,
                      seed: int = DATA_SEED, exclude: set | None = None,
                      max_attempts: int | None = None) -> list[tuple[bytes, int]]:
    """n distinct expressions with min_len < length < max_len, as (ids as bytes, value), in a fixed
    order determined by the seed. Expressions in `exclude` (a set of bytes) are skipped, and every
    new one is added to it, so successive calls sharing `exclude` never repeat an expression.

    Rejection sampling from the tree law conditioned on the length; an attempt is abandoned as soon
    as it reaches max_len tokens, which leaves the kept expressions' distribution unchanged.
    """
    import random as _random
    if not 0 <= min_len < max_len - 1:
        raise DataError(f"ListOps needs 0 <= min_len < max_len - 1 (lengths are exclusive bounds), "
                        f"got min_len={min_len}, max_len={max_len}")
    if max_depth < 1 or max_args < 2:
        raise DataError(f"ListOps needs max_depth >= 1 and max_args >= 2, got {max_depth}, {max_args}")
    rng = _random.Random(int(seed))
    random = rng.random
    seen = set() if exclude is None else exclude
    out: list[tuple[bytes, int]] = []
    attempts = 0
    cap = max_attempts if max_attempts is not None else 2000 * n + 10 ** 6
    while len(out) < n:
        attempts += 1
        if attempts > cap:
            raise DataError(f"ListOps generation found only {len(out)} of {n} distinct expressions with "
                            f"{min_len} < length < {max_len} (max_depth={max_depth}, max_args={max_args}) "
                            f"in {attempts - 1} attempts; widen the length bounds or raise max_depth")
        ids: list[int] = []
        try:
            value = _tree(random, 1, max_depth, max_args, ids, max_len - 1)
        except _TooLong:
            continue
        if min_len < len(ids) < max_len:
            key = bytes(ids)
            if key not in seen:
                seen.add(key)
                out.append((key, value))
    return out


# ---- compact storage ----------------------------------------------------------------------------
@dataclass
class _Split:
    flat: np.ndarray     # uint8 ids, all examples end to end
    starts: np.ndarray   # int64 start of each example in flat
    lens: np.ndarray     # int64 tokens fed per example (after cropping)
    labels: np.ndarray   # int64 answer per example
    full_lens: np.ndarray  # int64 tokens per example before cropping

    @classmethod
    def from_examples(cls, examples: list[tuple[bytes, int]]) -> "_Split":
        lens = np.fromiter((len(e) for e, _ in examples), np.int64, len(examples))
        starts = np.zeros(len(examples), np.int64)
        if len(examples):
            starts[1:] = np.cumsum(lens)[:-1]
        flat = np.frombuffer(b"".join(e for e, _ in examples), np.uint8).copy()
        labels = np.fromiter((v for _, v in examples), np.int64, len(examples))
        return cls(flat, starts, lens, labels, lens.copy())

    def __len__(self):
        return len(self.labels)

    def ids(self, i: int) -> np.ndarray:
        return self.flat[self.starts[i]:self.starts[i] + self.full_lens[i]]

    def without_end(self) -> "_Split":
        """The original tokenizer's view: every ']' removed (ids of the other tokens are unchanged)."""
        keep = self.flat != END_ID
        # Examples lie end to end in flat (as built), so per-example counts come from reduceat.
        ends = np.add.reduceat(~keep, self.starts, dtype=np.int64) if len(self.flat) else self.full_lens * 0
        ends[self.full_lens == 0] = 0
        lens = self.full_lens - ends
        starts = np.zeros_like(lens)
        starts[1:] = np.cumsum(lens)[:-1]
        return _Split(self.flat[keep], starts, lens, self.labels, lens.copy())

    def subset(self, idx: np.ndarray) -> "_Split":
        return _Split(self.flat, self.starts[idx], self.lens[idx], self.labels[idx], self.full_lens[idx])

    def padded(self, idx: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, seq_len) right-padded with 0, attention mask (B, seq_len)) for examples idx."""
        ar = np.arange(seq_len)
        mask = ar[None, :] < self.lens[idx, None]
        pos = np.where(mask, self.starts[idx, None] + ar[None, :], 0)
        x = np.where(mask, self.flat[pos] if len(self.flat) else 0, PAD_ID)
        return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))


def _pack(splits: dict[str, _Split]) -> bytes:
    arrays = {}
    for s, d in splits.items():
        arrays |= {f"{s}_flat": d.flat, f"{s}_lens": d.full_lens, f"{s}_labels": d.labels}
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _unpack(path: Path) -> dict[str, _Split]:
    out = {}
    with np.load(path) as z:
        for s in SPLITS:
            flat, lens, labels = z[f"{s}_flat"], z[f"{s}_lens"].astype(np.int64), z[f"{s}_labels"].astype(np.int64)
            if len(lens) != len(labels) or int(lens.sum()) != len(flat):
                raise ValueError(f"inconsistent {s} arrays")
            starts = np.zeros(len(lens), np.int64)
            if len(lens):
                starts[1:] = np.cumsum(lens)[:-1]
            out[s] = _Split(flat.astype(np.uint8), starts, lens.copy(), labels, lens.copy())
    return out


def generate_splits(n_train: int, n_val: int, n_test: int, *, min_len: int, max_len: int,
                    max_depth: int = 10, max_args: int = 10, seed: int = DATA_SEED,
                    cache: bool = False) -> tuple[dict[str, _Split], str]:
    """Generated val/test/train splits (disjoint, in that drawing order), and where they came from.

    With cache=True the splits are kept in data_dir()/listops/generated-<key>.npz, keyed by every
    parameter, written atomically; a damaged cache file is regenerated.
    """
    params = {"version": _GENERATOR_VERSION, "n_train": n_train, "n_val": n_val, "n_test": n_test,
              "min_len": min_len, "max_len": max_len, "max_depth": max_depth, "max_args": max_args,
              "seed": int(seed)}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = listops_dir() / f"generated-{key}.npz"
    if cache and path.exists():
        try:
            splits = _unpack(path)
            if [len(splits[s]) for s in SPLITS] == [n_train, n_val, n_test]:
                return splits, f"generated (cached in {path})"
        except Exception:  # a cache: rebuild it rather than fail
            pass
    seen: set = set()
    kw = dict(min_len=min_len, max_len=max_len, max_depth=max_depth, max_args=max_args, exclude=seen)
    # One stream per split, all drawn from the data seed, with a shared dedup set: val, then test,
    # then train, so val/test depend only on their own sizes and the generation parameters.
    val = generate_examples(n_val, seed=seed * 3 + 1, **kw)
    test = generate_examples(n_test, seed=seed * 3 + 2, **kw)
    train = generate_examples(n_train, seed=seed * 3 + 3, **kw)
    splits = {"train": _Split.from_examples(train), "val": _Split.from_examples(val),
              "test": _Split.from_examples(test)}
    if cache:
        try:
            write_bytes_atomic(path, _pack(splits))
        except OSError as e:  # a cache only: carry on without it
            return splits, f"generated (could not cache in {path}: {e})"
        return splits, f"generated (cached in {path})"
    return splits, "generated"


# ---- LRA TSV files ------------------------------------------------------------------------------
# One character per token, so a whole line is mapped with str.replace/translate and a lookup table.
_SHORT = (("[MIN", "a"), ("[MAX", "b"), ("[MED", "c"), ("[SM", "d"))
_PARENS = str.maketrans("", "", "()")
_LUT = np.full(256, 255, np.uint8)
for _i, _c in enumerate("0123456789abcd]"):
    _LUT[ord(_c)] = _i + 1


def _line_ids(src: str) -> np.ndarray | None:
    """Ids of one TSV source string, or None when it holds anything but ListOps tokens."""
    s = src
    for long, short in _SHORT:
        s = s.replace(long, short)
    try:
        raw = np.frombuffer(s.translate(_PARENS).encode("ascii"), np.uint8)
    except UnicodeEncodeError:
        return None
    real = (raw != 32) & (raw != 9)
    # Every token must stand alone between spaces (so "12" cannot pass as "1 2").
    if (real[1:] & real[:-1]).any():
        return None
    ids = _LUT[raw[real]]
    if (ids == 255).any():
        return None
    return ids


def _well_formed(ids: np.ndarray) -> bool:
    if len(ids) == 0:
        return False
    if len(ids) == 1:
        return 1 <= ids[0] <= 10
    is_op = (ids >= FIRST_OP_ID) & (ids < END_ID)
    depth = np.cumsum(is_op.astype(np.int64) - (ids == END_ID))
    return bool(ids[0] >= FIRST_OP_ID and depth[-1] == 0 and (depth[:-1] >= 1).all())


def read_tsv(path: Path | str, limit: int | None = None, check_values: int | None = 2000):
    """Read one LRA ListOps TSV file (header ``Source<TAB>Target``) as (ids as bytes, label) pairs.

    Every line is checked for known tokens and balanced brackets; the first `check_values` lines
    (all with None) also have their label checked against the expression's value. Problems raise
    DataError naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is unreadable ({e}); " + FETCH_HINT.format(dir=path.parent)) from e
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{path} is empty; " + FETCH_HINT.format(dir=path.parent))
    header = [h.strip().strip('"') for h in lines[0].split("\t")]
    if "Source" not in header or "Target" not in header:
        raise DataError(f"{path} does not start with the LRA header 'Source<TAB>Target' "
                        f"(found {lines[0][:60]!r}); " + FETCH_HINT.format(dir=path.parent))
    si, ti = header.index("Source"), header.index("Target")
    out: list[tuple[bytes, int]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if limit is not None and len(out) >= limit:
            break
        if not line.strip():
            continue
        cols = line.split("\t")
        bad = None
        if len(cols) != len(header):
            bad = f"{len(cols)} tab-separated fields, expected {len(header)}"
        else:
            src, tgt = cols[si].strip().strip('"'), cols[ti].strip().strip('"')
            ids = _line_ids(src)
            if ids is None:
                bad = "tokens other than ( ) [MIN [MAX [MED [SM ] and the digits 0-9"
            elif not _well_formed(ids):
                bad = "unbalanced brackets (truncated line?)"
            elif tgt not in DIGITS:
                bad = f"target {tgt[:20]!r} is not a digit 0-9"
            elif check_values is None or len(out) < check_values:
                try:
                    value = _eval_ids(ids)
                except ValueError as e:
                    bad = f"malformed expression ({e})"
                else:
                    if value != int(tgt):
                        bad = f"target {tgt} differs from the expression's value {value}"
        if bad:
            raise DataError(f"{path} line {lineno}: {bad}; the file is corrupt or not an LRA ListOps "
                            "file: delete it and " + FETCH_HINT.format(dir=path.parent))
        out.append((ids.tobytes(), int(tgt)))
    return out


def write_tsv(path: Path | str, examples: Iterable[tuple[Sequence[int] | bytes, int]]) -> None:
    """Write (ids, label) examples as an LRA TSV file (parenthesised sources), atomically."""
    rows = ["Source\tTarget"] + [f"{to_source(list(ids))}\t{int(label)}" for ids, label in examples]
    write_text_atomic(path, "\n".join(rows) + "\n")


def tsv_paths(root: Path | None = None) -> dict[str, Path]:
    root = root or listops_dir()
    return {s: root / f"basic_{s}.tsv" for s in SPLITS}


def tsv_available(root: Path | None = None) -> bool:
    return all(p.exists() for p in tsv_paths(root).values())


# ---- the task -----------------------------------------------------------------------------------
@dataclass
class ListOps(EpochOrder, Task):
    """ListOps with embedding input and 10 classes, read from the last real token.

    Options:
      source: "auto" (LRA TSV files in data_dir()/listops when all three exist and the generation
        options are LRA's, else generate), "generate" or "tsv".
      n_train, n_val, n_test: split sizes (generated), or caps on the lines read from each TSV file.
      min_len, max_len: exclusive bounds on expression length in tokens (LRA: 500 < len < 2000).
      max_depth, max_args: LRA's tree parameters (10, 10).
      seq_len: padded length fed to the model; None = max_len - 1 when generating, the longest
        example of the TSV files, 512 with the original tokenizer. Set it to the backbone's
        positions when examples are longer.
      long_policy: what happens to examples longer than seq_len: "error" (the default), "crop"
        (keep the first seq_len tokens; counted in describe()["cropped"]) or "drop" (leave them
        out; counted by split_dropped). None = "crop" with the original tokenizer, else "error".
      original_tokenizer: the FPT code's pipeline: brackets dropped (15 ids with padding),
        truncation to 512.
      attention_mask: pass the padding mask (True). False reproduces the FPT code, which attended
        to padding and read the last (padding) position.
      data_seed: seeds generation (not the run seed, so every run of a table sees the same data).
      cache: keep generated data in data_dir()/listops/generated-<key>.npz.
    """

    source: str = "auto"
    n_train: int = 96_000
    n_val: int = 2_000
    n_test: int = 2_000
    min_len: int = 500
    max_len: int = 2000
    max_depth: int = 10
    max_args: int = 10
    seq_len: int | None = None
    long_policy: str | None = None
    original_tokenizer: bool = False
    attention_mask: bool = True
    data_seed: int = DATA_SEED
    cache: bool = True

    def __post_init__(self):
        if self.source not in SOURCES:
            raise DataError(f"unknown ListOps source {self.source!r}; choose one of {', '.join(SOURCES)}")
        policy = self.long_policy or ("crop" if self.original_tokenizer else "error")
        if policy not in LONG_POLICIES:
            raise DataError(f"unknown ListOps long_policy {policy!r}; choose one of {', '.join(LONG_POLICIES)}")
        for opt in ("n_train", "n_val", "n_test"):
            if getattr(self, opt) < 0:
                raise DataError(f"ListOps {opt} must be >= 0, got {getattr(self, opt)}")
        if self.n_val < 1 or self.n_test < 1:
            raise DataError("ListOps needs n_val >= 1 and n_test >= 1")
        self.name = "listops"
        self._policy = policy
        self._requested_seq_len = self.seq_len
        # seq_len as requested, else the bound planned_shape takes (generated: the length bound, so it does not
        # depend on the sizes; the original tokenizer: its 512)
        self.take_planned_shape()

        raw, self.source_description = self._load()
        if self.original_tokenizer:
            raw = {s: d.without_end() for s, d in raw.items()}
        self._lengths = {s: _length_stats(d.full_lens) for s, d in raw.items()}
        if self._requested_seq_len is None and self._source == "tsv" and not self.original_tokenizer:
            # read from files: their longest example, which planned_shape can only bound
            self.seq_len = max(int(d.full_lens.max(initial=0)) for d in raw.values())
        if self.seq_len < 1:
            raise DataError(f"ListOps seq_len must be >= 1, got {self.seq_len}")

        self._cropped = {s: 0 for s in SPLITS}
        self._dropped = {s: 0 for s in SPLITS}
        self._data: dict[str, _Split] = {}
        for s, d in raw.items():
            long = d.full_lens > self.seq_len
            n_long = int(long.sum())
            if n_long and policy == "error":
                raise DataError(
                    f"{n_long} ListOps {s} example(s) have more than seq_len={self.seq_len} tokens "
                    f"(longest {int(d.full_lens.max())}); raise the task option seq_len (up to the "
                    f"backbone's positions), set long_policy='crop' (keep the first seq_len tokens) or "
                    f"'drop' (leave them out), or lower max_len")
            if policy == "crop":
                d.lens = np.minimum(d.lens, self.seq_len)
                self._cropped[s] = n_long
            elif policy == "drop":
                d = d.subset(np.flatnonzero(~long))
                self._dropped[s] = n_long
            self._data[s] = d
        for s in ("val", "test"):
            if len(self._data[s]) == 0:
                raise DataError(f"no ListOps {s} example fits seq_len={self.seq_len}; raise seq_len")

    @classmethod
    def planned_shape(cls, options):
        original = cls.option(options, "original_tokenizer")
        bound = ORIGINAL_MAX_LEN if original else cls.option(options, "max_len") - 1
        seq_len = cls.option(options, "seq_len")
        seq_len = bound if seq_len is None else seq_len
        return TaskShape(seq_len, len(ORIGINAL_VOCAB) if original else len(VOCAB), "tokens", 1, N_CLASSES, N_CLASSES)

    # ---- data ----------------------------------------------------------------------------------
    def _generation_is_lra(self) -> bool:
        return all(getattr(self, k) == v for k, v in LRA_GENERATION.items())

    def _load(self) -> tuple[dict[str, _Split], str]:
        source = self.source
        if source == "auto":
            source = "tsv" if tsv_available() and self._generation_is_lra() else "generate"
        self._source = source
        if source == "tsv":
            paths = tsv_paths()
            missing = [p.name for p in paths.values() if not p.exists()]
            if missing:
                raise DataError(f"ListOps TSV file(s) {', '.join(missing)} missing from {listops_dir()}; "
                                + FETCH_HINT.format(dir=listops_dir()))
            caps = {"train": self.n_train, "val": self.n_val, "test": self.n_test}
            splits = {s: _Split.from_examples(read_tsv(p, limit=caps[s])) for s, p in paths.items()}
            for s, d in splits.items():
                if len(d) == 0:
                    raise DataError(f"{paths[s]} holds no examples; " + FETCH_HINT.format(dir=listops_dir()))
            return splits, (f"LRA TSV files in {listops_dir()} "
                            f"({'/'.join(str(len(splits[s])) for s in SPLITS)} train/val/test)")
        splits, how = generate_splits(self.n_train, self.n_val, self.n_test, min_len=self.min_len,
                                      max_len=self.max_len, max_depth=self.max_depth,
                                      max_args=self.max_args, seed=self.data_seed, cache=self.cache)
        scale = "LRA's" if self._generation_is_lra() else "NOT LRA's (500 < len < 2000, depth 10, 10 args)"
        return splits, (f"generated from the LRA spec: {self.min_len} < length < {self.max_len} tokens, "
                        f"max_depth {self.max_depth}, max_args {self.max_args}, data seed {self.data_seed}, "
                        f"{self.n_train}/{self.n_val}/{self.n_test} train/val/test, deduplicated; "
                        f"bounds are {scale}; {how}")

    # ---- Task interface -------------------------------------------------------------------------
    def split_size(self, split):
        if split not in self._data:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return len(self._data[split])

    def split_dropped(self, split):
        return self._dropped.get(split, 0)

    def _batch(self, split: str, idx: np.ndarray) -> dict:
        d = self._data[split]
        if self.attention_mask:
            # With the mask, padding changes no answer, so pad only to the batch's longest example
            # (much less compute on CPU); seq_len stays the bound checked against the backbone.
            x, mask = d.padded(idx, int(d.lens[idx].max()))
            return {"x": x, "y": torch.from_numpy(d.labels[idx])[:, None], "attention_mask": mask}
        x, _ = d.padded(idx, self.seq_len)  # the original attended to padding: keep it fixed-length
        return {"x": x, "y": torch.from_numpy(d.labels[idx])[:, None]}

    def train_batch(self, step, batch_size):
        n = self.split_size("train")
        if n == 0:
            raise DataError("ListOps has no training examples (n_train=0, or all dropped by long_policy)")
        return self._batch("train", self.train_indices(step, batch_size).numpy())

    def eval_batches(self, split, batch_size, limit=None):
        n = self.split_size(split)
        n = n if limit is None else min(limit, n)
        for i in range(0, n, batch_size):
            yield self._batch(split, np.arange(i, min(i + batch_size, n)))

    def data_hash(self):
        tensors = []
        for s in SPLITS:
            d = self._data[s]
            tensors += [torch.from_numpy(d.flat), torch.from_numpy(d.starts), torch.from_numpy(d.lens),
                        torch.from_numpy(d.labels)]
        return hash_tensors(*tensors)

    def describe(self):
        return super().describe() | {
            "source": self.source_description,
            "tokenizer": ("original: alphanumeric only, brackets dropped, 14 tokens + padding"
                          if self.original_tokenizer else "brackets kept: 15 tokens + padding"),
            "vocab_size": self.d_in,
            "long_policy": self._policy,
            "cropped": dict(self._cropped),
            "dropped": dict(self._dropped),
            "lengths": self._lengths,
            "attention_mask": self.attention_mask,
        }


def _length_stats(lens: np.ndarray) -> dict:
    if len(lens) == 0:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(lens.min()), "mean": round(float(lens.mean()), 1), "max": int(lens.max())}


def _check_listops_tsv(path: Path) -> str:
    """Long Range Arena's ListOps TSV: header `Source<TAB>Target`, then `expression<TAB>digit` rows."""
    rows = 0
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n")
            if header != "Source\tTarget":
                raise DataError(f"{path} does not start with the header 'Source<TAB>Target' "
                                f"(found {header[:40]!r}); it is not a ListOps TSV or it is damaged")
            for lineno, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != 2 or not parts[0].strip():
                    raise DataError(f"{path} line {lineno} does not hold two tab-separated fields; "
                                    "the file is truncated or corrupt")
                if len(parts[1].strip()) != 1 or not parts[1].strip().isdigit():
                    raise DataError(f"{path} line {lineno}: target {parts[1][:20]!r} is not a digit 0-9; "
                                    "the file is truncated or corrupt")
                rows += 1
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); the file is corrupt") from e
    except OSError as e:
        raise DataError(f"{path} is unreadable ({e})") from e
    if rows == 0:
        raise DataError(f"{path} has a header but no examples; the file is truncated")
    return f"{rows:,} examples"


_LRA = "https://storage.googleapis.com/long-range-arena/lra_release/listops-1000"
SPEC = Dataset(
    "listops", task=ListOps, column=3, column_title="ListOps", title="LRA ListOps files", subdir="listops",
    remotes=tuple(
        Remote(name=f"basic_{split}.tsv", urls=(f"{_LRA}/basic_{split}.tsv",), known_hash=None,
               check=_check_listops_tsv) for split in ("train", "val", "test")),
    checksum="no published checksum: format check (header, two tab-separated fields, digit target); "
             "the sha256 of what was downloaded is recorded in .fetch-manifest.json",
    note="Long Range Arena's listops-1000 release (also inside "
         "https://storage.googleapis.com/long-range-arena/lra_release.gz, lra_release/listops-1000/)",
    # generated ListOps needs nothing; the TSV source needs the three files
    present=lambda o: o.get("source", "auto") != "tsv" or tsv_available())
