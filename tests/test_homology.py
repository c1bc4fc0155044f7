"""Remote homology reads TAPE's files in their real format and scores long sequences both ways."""
import json
import pickle
import shutil
import zlib

import numpy as np
import pytest
import torch

from fptlib.data import DataError, make_task
from fptlib.data.homology import (
    AMINO_ACIDS,
    N_FOLDS,
    SPLIT_FILES,
    UNK,
    VOCAB,
    RemoteHomology,
    accuracy_dropped_as_wrong,
    decode,
    encode,
    homology_data_available,
    homology_dir,
    read_split,
)
from fptlib.io import safe_loads
from fptlib.paths import data_dir
from fptlib.rehearse.fixtures import write_lmdb

MAX_LEN = 16
# Per TAPE split: (sequences, how many of them are longer than MAX_LEN)
SIZES = {"train": (40, 6), "valid": (12, 2), "test_fold_holdout": (10, 3),
         "test_superfamily_holdout": (9, 1), "test_family_holdout": (8, 0)}


def _records(stem: str, n: int, n_long: int) -> list[dict]:
    """TAPE-shaped records: short sequences, n_long of them longer than MAX_LEN, per-residue extras."""
    rng = np.random.default_rng(zlib.crc32(stem.encode()))
    long_idx = set(range(1, n, n // n_long)[:n_long]) if n_long else set()
    recs = []
    for i in range(n):
        length = int(rng.integers(MAX_LEN + 1, 3 * MAX_LEN) if i in long_idx else rng.integers(3, MAX_LEN + 1))
        seq = "".join(rng.choice(list(AMINO_ACIDS), size=length))
        recs.append({"primary": seq, "protein_length": length, "id": f"d{stem[:4]}{i}a_",
                     "class_label": int(rng.integers(0, 7)), "fold_label": int(rng.integers(0, N_FOLDS)),
                     "superfamily_label": int(rng.integers(0, 1000)), "family_label": int(rng.integers(0, 2000)),
                     "secondary_structure": rng.integers(0, 3, size=length),
                     "solvent_accessibility": rng.integers(0, 2, size=length),
                     "evolutionary": rng.random((length, 20), dtype=np.float32)})
    assert sum(len(r["primary"]) > MAX_LEN for r in recs) == n_long
    return recs


def _jsonable(r):
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()}


def write_fixture(fmt="lmdb", root=None):
    root = root or homology_dir()
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for stem, (n, n_long) in SIZES.items():
        recs = out[stem] = _records(stem, n, n_long)
        if fmt == "lmdb":
            write_lmdb(root / f"remote_homology_{stem}.lmdb", recs)
        else:
            (root / f"remote_homology_{stem}.json").write_text(json.dumps([_jsonable(r) for r in recs]))
    return out


def _all(task, split, bs=5):
    return list(task.eval_batches(split, bs))


def _rows(batches):
    """(sequence, label) of every example in eval batches, from x and the mask."""
    out = []
    for b in batches:
        for x, m, y in zip(b["x"], b["attention_mask"], b["y"][:, 0]):
            out.append((decode(x[m.bool()]), int(y)))
    return out


def test_vocabulary_is_the_papers_25_letters_plus_padding_and_unknown():
    assert len(AMINO_ACIDS) == 25 and set(AMINO_ACIDS) == set("ACDEFGHIKLMNPQRSTVWY") | set("BOUXZ")
    assert VOCAB[0] == "<pad>" and VOCAB[UNK] == "<unk>" and len(VOCAB) == 27
    ids = encode("ACDYbz*J")
    assert ids.tolist()[:4] == [1, 3, 4, 24] and ids[4] == VOCAB.index("B") and ids[5] == VOCAB.index("Z")
    assert ids[6] == UNK and ids[7] == UNK  # '*' and J are not in TAPE's vocabulary
    assert decode(encode("MKVLAAGX")) == "MKVLAAGX"


def test_reads_tape_lmdb_and_tokenises_every_split():
    recs = write_fixture()
    assert homology_data_available()
    raw = read_split("train")
    assert raw["format"] == "lmdb" and raw["primary"] == [r["primary"] for r in recs["train"]]
    assert raw["fold_label"].tolist() == [r["fold_label"] for r in recs["train"]]
    t = RemoteHomology(seed=0, max_len=64)  # nothing is long at 64
    assert (t.input_kind, t.d_in, t.seq_len, t.n_out_tokens, t.out_dim, t.n_classes) == \
        ("tokens", 27, 64, 1, N_FOLDS, N_FOLDS)
    assert t.extra_splits == ("test_superfamily_holdout", "test_family_holdout")
    for split, stem in SPLIT_FILES.items():
        want = sorted((r["primary"], r["fold_label"]) for r in recs[stem])
        assert sorted(_rows(_all(t, split))) == want, split
        assert t.split_size(split) == len(want) and t.split_dropped(split) == 0


def test_drop_drops_and_counts_long_sequences_per_split():
    recs = write_fixture()
    t = RemoteHomology(seed=0, max_len=MAX_LEN)  # long_policy="drop" is the default
    for split, stem in SPLIT_FILES.items():
        n, n_long = SIZES[stem]
        assert (t.split_size(split), t.split_dropped(split)) == (n - n_long, n_long), split
        kept = sorted((r["primary"], r["fold_label"]) for r in recs[stem] if len(r["primary"]) <= MAX_LEN)
        assert sorted(_rows(_all(t, split))) == kept
    d = t.describe()
    assert d["dropped"]["test"] == 3 and d["cropped"]["test"] == 0 and d["long_policy"] == "drop"
    assert d["extra_split_sizes"] == {"test_superfamily_holdout": 8, "test_family_holdout": 8}
    assert d["split_sizes"] == {"train": 34, "val": 10, "test": 7}


def test_crop_keeps_the_first_max_len_residues_and_counts_them():
    recs = write_fixture()
    t = RemoteHomology(seed=0, max_len=MAX_LEN, long_policy="crop")
    for split, stem in SPLIT_FILES.items():
        n, n_long = SIZES[stem]
        assert (t.split_size(split), t.split_dropped(split)) == (n, 0)
        assert t.describe()["cropped"][split] == n_long
        want = sorted((r["primary"][:MAX_LEN], r["fold_label"]) for r in recs[stem])
        assert sorted(_rows(_all(t, split))) == want
    assert max(b["x"].shape[1] for b in _all(t, "train")) == MAX_LEN


def test_batches_are_right_padded_to_the_longest_with_a_mask():
    write_fixture()
    t = RemoteHomology(seed=0, max_len=MAX_LEN)
    b = t.train_batch(0, 8)
    assert set(b) == {"x", "y", "attention_mask"}
    assert b["x"].dtype == torch.long and b["y"].shape == (8, 1) and b["attention_mask"].shape == b["x"].shape
    lengths = b["attention_mask"].sum(1)
    assert b["x"].shape[1] == int(lengths.max()) <= MAX_LEN
    m = b["attention_mask"].bool()
    assert torch.all(b["x"][~m] == 0) and torch.all(b["x"][m] > 0)
    # right padding: every mask row is ones then zeros
    assert torch.equal(b["attention_mask"], (torch.arange(b["x"].shape[1])[None] < lengths[:, None]).long())
    # eval batches cover a split exactly once; limit takes the first examples
    assert sum(len(b["y"]) for b in _all(t, "val", 3)) == t.split_size("val")
    assert sum(len(b["y"]) for b in t.eval_batches("train", 4, limit=10)) == 10


def test_extra_splits_and_unknown_split(reliability):
    write_fixture()
    t = make_task("homology", seed=0, max_len=MAX_LEN)
    for s in t.extra_splits:
        assert t.split_size(s) == sum(len(b["y"]) for b in t.eval_batches(s, 4))
    assert t.split_dropped("test_superfamily_holdout") == 1
    with pytest.raises(ValueError, match="unknown split"):
        t.split_size("holdout")
    reliability.bad_input("split 'holdout'", kind="parameter")
    with pytest.raises(ValueError, match="unknown option"):
        make_task("homology", extra_splits=())
    reliability.bad_input("option extra_splits", kind="parameter")


def test_training_order_is_a_function_of_seed_and_step():
    write_fixture()
    a, b, c = (RemoteHomology(seed=s, max_len=MAX_LEN) for s in (0, 0, 1))
    assert torch.equal(a.train_batch(5, 8)["x"], b.train_batch(5, 8)["x"])
    # a fresh task asked for step 5 directly (a resumed run) sees the same batch
    assert torch.equal(RemoteHomology(seed=0, max_len=MAX_LEN).train_batch(5, 8)["y"], a.train_batch(5, 8)["y"])
    assert not torch.equal(a.train_batch(5, 8)["y"], a.train_batch(6, 8)["y"])
    assert not torch.equal(a.train_batch(0, 34)["y"], c.train_batch(0, 34)["y"])
    # one epoch (34 kept training sequences) visits each exactly once
    seen = sorted(_rows([{**a.train_batch(s, 2)} for s in range(17)]))
    assert seen == sorted(_rows(_all(a, "train")))
    assert a.data_hash() == b.data_hash() == c.data_hash()
    assert a.data_hash() != RemoteHomology(seed=0, max_len=MAX_LEN, long_policy="crop").data_hash()


def test_json_variant_gives_the_same_data():
    write_fixture("json")
    t = RemoteHomology(seed=0, max_len=MAX_LEN)
    assert t.describe()["splits"]["train"]["format"] == "json"
    h = t.data_hash()
    shutil.rmtree(homology_dir())
    write_fixture("lmdb")
    assert RemoteHomology(seed=0, max_len=MAX_LEN).data_hash() == h


def test_caps_take_a_fixed_subset_before_the_length_policy():
    write_fixture()
    t = RemoteHomology(seed=0, max_len=MAX_LEN, max_train=20, max_val=5, max_test=4)
    info = t.describe()["splits"]
    assert info["train"]["considered"] == 20 == t.split_size("train") + t.split_dropped("train")
    assert info["val"]["considered"] == 5 and info["test_family_holdout"]["considered"] == 4
    assert RemoteHomology(seed=3, max_len=MAX_LEN, max_train=20).data_hash() != t.data_hash()
    assert RemoteHomology(seed=3, max_len=MAX_LEN, max_train=20, max_val=5, max_test=4).data_hash() == t.data_hash()


def test_bad_options_are_refused(reliability):
    write_fixture()
    for options, message in (({"long_policy": "truncate"}, "long_policy"), ({"max_len": 0}, "max_len"),
                             ({"max_len": 2}, "no sequence of at most max_len=2")):
        with pytest.raises(DataError, match=message):
            RemoteHomology(**options)
        reliability.bad_input(f"homology {options}", kind="parameter")


def test_missing_data_says_how_to_fetch(reliability):
    with pytest.raises(DataError, match=r"fpt data fetch homology") as e:
        RemoteHomology()
    assert str(data_dir()) in str(e.value) and "FPT_DATA_DIR" in str(e.value)
    assert not homology_data_available()
    reliability.bad_input("no homology data", kind="missing data")
    write_fixture()
    shutil.rmtree(homology_dir() / "remote_homology_test_family_holdout.lmdb")
    with pytest.raises(DataError, match="test_family_holdout.*fpt data fetch homology"):
        RemoteHomology(max_len=MAX_LEN)
    reliability.bad_input("one homology split missing", kind="missing data")


def _corrupt(kind):
    root = homology_dir()
    path = root / "remote_homology_valid.lmdb"
    if kind == "garbage":
        (path / "data.mdb").write_bytes(b"not an lmdb file" * 100)
    elif kind == "no-count":
        shutil.rmtree(path)
        import lmdb
        env = lmdb.open(str(path), map_size=1 << 20)
        with env.begin(write=True) as txn:
            txn.put(b"0", pickle.dumps({"primary": "ACD", "fold_label": 1}))
        env.close()
    elif kind == "short":
        shutil.rmtree(path)
        write_lmdb(path, [{"primary": "ACD", "fold_label": 1}])
        import lmdb
        env = lmdb.open(str(path), map_size=1 << 20)
        with env.begin(write=True) as txn:
            txn.put(b"num_examples", pickle.dumps(3))
        env.close()
    elif kind == "label":
        shutil.rmtree(path)
        write_lmdb(path, [{"primary": "ACD", "fold_label": 1200}])
    elif kind == "code":  # a pickle that would call a function when loaded
        shutil.rmtree(path)
        import lmdb
        env = lmdb.open(str(path), map_size=1 << 20)
        with env.begin(write=True) as txn:
            txn.put(b"num_examples", pickle.dumps(1))
            txn.put(b"0", b"cos\nsystem\n(S'echo pwned'\ntR.")
        env.close()
    elif kind == "json":
        shutil.rmtree(path)
        (root / "remote_homology_valid.json").write_bytes(b"\x00\x01binary, not json")


def test_pickles_written_by_numpy_1_still_load():
    """TAPE's LMDBs date from 2019: their arrays name numpy.core.multiarray, renamed in numpy 2."""
    rec = {"primary": "ACD", "fold_label": np.int64(3), "evolutionary": np.ones((3, 20), np.float32)}
    raw = pickle.dumps(rec, protocol=3)  # text GLOBAL opcodes, so module names can be swapped
    old = raw.replace(b"numpy._core.", b"numpy.core.")
    out = safe_loads(old)
    assert out["fold_label"] == 3 and out["evolutionary"].shape == (3, 20)


def test_a_pickle_that_would_run_code_is_refused(reliability):
    write_fixture()
    _corrupt("code")
    with pytest.raises(DataError, match="refusing to load os.system"):
        RemoteHomology(max_len=MAX_LEN)
    reliability.bad_input("an LMDB record pickled to run os.system", kind="corrupt data")


@pytest.mark.parametrize("kind", ["garbage", "no-count", "short", "code", "json"])
def test_corrupt_files_say_delete_and_fetch_again(kind, reliability):
    write_fixture()
    _corrupt(kind)
    expected = r"remote_homology_valid.*delete it and fetch it again.*fpt data fetch homology"
    with pytest.raises(DataError, match=expected):
        RemoteHomology(max_len=MAX_LEN)
    reliability.bad_input(f"homology split damaged: {kind}", kind="corrupt data")


def test_label_outside_the_1195_folds_is_refused(reliability):
    write_fixture()
    _corrupt("label")
    with pytest.raises(DataError, match="fold_label=1200, outside 0..1194"):
        RemoteHomology(max_len=MAX_LEN)
    reliability.bad_input("fold_label=1200", kind="corrupt data")


def test_accuracy_both_ways():
    assert accuracy_dropped_as_wrong(0.5, 90, 10) == pytest.approx(0.45)
    assert accuracy_dropped_as_wrong(0.2, 10, 0) == 0.2
    # the original's hand-applied factor is exactly this with its docstring's counts
    assert accuracy_dropped_as_wrong(1.0, 236224, 242560 - 236224) == pytest.approx(0.9739, abs=5e-5)
    with pytest.raises(ValueError):
        accuracy_dropped_as_wrong(0.5, 0, 0)
    write_fixture()
    t = RemoteHomology(seed=0, max_len=MAX_LEN)
    assert t.accuracy_dropped_as_wrong("test", 0.7) == pytest.approx(0.7 * 7 / 10)
    assert t.accuracy_dropped_as_wrong("test_family_holdout", 0.7) == pytest.approx(0.7)


def test_model_reads_batches_and_a_too_long_task_is_refused_at_configuration(reliability):
    from fptlib.config import RunConfig
    from fptlib.models import FPT, BackboneSpec, build_backbone
    from fptlib.training import RunError, build, evaluate
    write_fixture()
    t = RemoteHomology(seed=0, max_len=MAX_LEN)
    model = FPT(build_backbone(BackboneSpec("tiny-gpt2", init="random"), 0), input_kind=t.input_kind,
                d_in=t.d_in, n_out_tokens=t.n_out_tokens, out_dim=t.out_dim)
    b = t.train_batch(0, 4)
    assert model(b["x"], b["attention_mask"]).shape == (4, 1, N_FOLDS)
    for split in ("val", "test", *t.extra_splits):
        r = evaluate(model, t, split, 4, "cpu")
        assert r["decisions"] == t.split_size(split) and 0 <= r["accuracy"] <= 1
    # tiny-gpt2 has 256 positions; GPT-2's 1024 do not fit and the run is refused before training
    cfg = RunConfig("homology", backbone="tiny-gpt2", init="random", task_options={"max_len": 1024})
    with pytest.raises(RunError, match="1024 tokens but backbone tiny-gpt2 has 256 positions"):
        build(cfg)
    reliability.bad_input("1024 tokens for 256 positions", kind="parameter")
