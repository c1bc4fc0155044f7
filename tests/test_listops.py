"""ListOps: expressions evaluate as LRA defines them, generation is seeded and deduplicated, the LRA
TSV format is read as written, and padding (with the attention mask) never changes a prediction."""
import numpy as np
import pytest
import torch

from fptlib.data import DataError, listops, make_task, task_class
from fptlib.data.listops import ListOps
from fptlib.paths import data_dir

SMALL = dict(n_train=60, n_val=20, n_test=20, min_len=16, max_len=64)


def small(**kw):
    return ListOps(seed=0, **(SMALL | kw))


# ---- expressions --------------------------------------------------------------------------------
@pytest.mark.parametrize("expr,value", [
    ("[MIN 4 7 2 9 ]", 2),
    ("[MAX 4 7 2 9 ]", 9),
    ("[MED 5 1 9 ]", 5),            # odd count: the middle value
    ("[MED 3 4 5 6 ]", 4),          # even count: int(np.median) = int(4.5) = 4
    ("[MED 1 2 ]", 1),              # int(1.5)
    ("[MED 8 2 9 3 ]", 5),          # middle pair 3, 8: int(5.5)
    ("[SM 7 8 9 ]", 4),             # 24 mod 10
    ("[SM 5 5 ]", 0),
    ("[MAX 2 [MIN 9 4 ] ]", 4),
    ("[SM [MED 6 5 ] 1 1 ]", 7),    # MED = int(5.5) = 5
    ("7", 7),
])
def test_evaluation_of_each_operator(expr, value):
    assert listops.evaluate(expr) == value
    # the same expression in LRA's parenthesised TSV form
    assert listops.evaluate(listops.to_source(listops.tokenize(expr))) == value


def test_median_is_numpys_truncated_median():
    rng = np.random.default_rng(0)
    for _ in range(300):
        args = rng.integers(0, 10, rng.integers(2, 11)).tolist()
        expr = "[MED " + " ".join(map(str, args)) + " ]"
        assert listops.evaluate(expr) == int(np.median(args))


def test_malformed_expressions_are_refused(reliability):
    for bad in ("[MAX 1 2", "[MAX 1 2 ] ]", "]", "[MIN ]", "1 2"):
        with pytest.raises(ValueError):
            listops.evaluate(bad)
        reliability.bad_input(f"expression {bad!r}", kind="corrupt data")
    with pytest.raises(DataError):
        listops.tokenize("[MAX 1 12 ]")
    reliability.bad_input("token 12", kind="corrupt data")


def test_lra_printing_matches_its_pair_nesting():
    # LRA prints (op, a1) -> ((op, a1), a2) -> ... -> (..., ']') as nested parenthesised pairs
    assert listops.to_source(listops.tokenize("[MAX 2 9 ]")) == "( ( ( [MAX 2 ) 9 ) ] )"
    assert (listops.to_source(listops.tokenize("[MAX 2 [MIN 9 4 ] ]"))
            == "( ( ( [MAX 2 ) ( ( ( [MIN 9 ) 4 ) ] ) ) ] )")


# ---- tokenizers ---------------------------------------------------------------------------------
def test_tokenizer_keeps_closing_brackets_and_drops_lra_parentheses():
    src = "( ( ( [MAX 2 ) ( ( ( [MIN 9 ) 4 ) ] ) ) ] )"
    toks = listops.tokenize(src)
    assert toks == ["[MAX", "2", "[MIN", "9", "4", "]", "]"]
    ids = listops.encode(toks)
    assert ids.count(listops.END_ID) == 2 and listops.PAD_ID not in ids
    assert len(listops.VOCAB) == 16 and listops.VOCAB[listops.PAD_ID] == "<pad>"


def test_original_tokenizer_drops_brackets_like_tfds_alphanumeric():
    src = "( ( ( [MAX 2 ) ( ( ( [MIN 9 ) 4 ) ] ) ) ] )"
    toks = listops.tokenize(src, original=True)
    assert toks == ["MAX", "2", "MIN", "9", "4"]  # '[MAX' -> 'MAX', ']' and parentheses vanish
    assert len(listops.ORIGINAL_VOCAB) == 15  # 14 tokens + padding, the paper's nn.Embedding(15, .)
    assert listops.encode(toks, original=True) == [listops.TOKEN_ID["[MAX"], 3, listops.TOKEN_ID["[MIN"], 10, 5]


# ---- generation ---------------------------------------------------------------------------------
def _depth(ids):
    d = np.cumsum([1 if listops.FIRST_OP_ID <= t < listops.END_ID else -1 if t == listops.END_ID else 0 for t in ids])
    return int(d.max())


def test_generator_is_seeded_deduplicated_bounded_and_labelled():
    kw = dict(min_len=20, max_len=80, max_depth=6, max_args=5)
    a = listops.generate_examples(300, seed=1, **kw)
    assert a == listops.generate_examples(300, seed=1, **kw)
    assert a != listops.generate_examples(300, seed=2, **kw)
    assert len({e for e, _ in a}) == 300
    for ids, value in a:
        assert 20 < len(ids) < 80
        assert listops.evaluate(list(ids)) == value
        assert _depth(ids) <= 5  # the root has depth 1; nodes at max_depth are digits
    # every operator has 2..max_args arguments: count them by parsing
    for ids, _ in a[:50]:
        stack = []
        for t in ids:
            if listops.FIRST_OP_ID <= t < listops.END_ID:
                if stack:
                    stack[-1] += 1
                stack.append(0)
            elif t == listops.END_ID:
                assert 2 <= stack.pop() <= 5
            else:
                stack[-1] += 1
    labels = np.bincount([v for _, v in listops.generate_examples(500, seed=3, **kw)], minlength=10)
    assert (labels > 0).all()


def test_generator_reports_impossible_bounds(reliability):
    with pytest.raises(DataError, match="widen the length bounds"):
        listops.generate_examples(5, min_len=40, max_len=50, max_depth=2, max_args=3, max_attempts=2000)
    reliability.bad_input("lengths 40-50 at depth 2", kind="parameter")
    with pytest.raises(DataError):
        listops.generate_examples(5, min_len=50, max_len=50)
    reliability.bad_input("lengths 50-50", kind="parameter")


def test_splits_are_disjoint_and_val_test_do_not_depend_on_n_train():
    a, b = small(cache=False), small(n_train=30, cache=False)
    ex = {s: {a._data[s].ids(i).tobytes() for i in range(a.split_size(s))} for s in ("train", "val", "test")}
    assert [len(ex[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    assert not (ex["train"] & ex["val"] or ex["train"] & ex["test"] or ex["val"] & ex["test"])
    for s in ("val", "test"):
        assert torch.equal(next(a.eval_batches(s, 100))["x"], next(b.eval_batches(s, 100))["x"])


def test_data_hash_is_fixed_by_generation_parameters_not_run_seed():
    a = small(cache=False)
    assert a.data_hash() == ListOps(seed=5, cache=False, **SMALL).data_hash()
    cached = small()  # writes the cache file
    assert cached.data_hash() == a.data_hash()
    assert list((data_dir() / "listops").glob("generated-*.npz"))
    assert small().data_hash() == a.data_hash()  # read back from the cache
    assert small(data_seed=1, cache=False).data_hash() != a.data_hash()
    assert small(max_depth=5, cache=False).data_hash() != a.data_hash()


def test_damaged_cache_is_regenerated(reliability):
    h = small().data_hash()
    cache = list((data_dir() / "listops").glob("generated-*.npz"))
    assert len(cache) == 1
    cache[0].write_bytes(b"not an npz")
    assert small().data_hash() == h
    assert cache[0].read_bytes() != b"not an npz"  # written again
    reliability.bad_input("a damaged generated-data cache", kind="corrupt data")


# ---- batches ------------------------------------------------------------------------------------
def test_batches_have_the_model_interface_and_right_padding():
    t = small()
    assert task_class("listops") is ListOps
    assert (t.input_kind, t.d_in, t.n_out_tokens, t.out_dim, t.n_classes) == ("tokens", 16, 1, 10, 10)
    assert t.seq_len == 63 >= max(t.describe()["lengths"][s]["max"] for s in ("train", "val", "test"))
    b = t.train_batch(3, 8)
    m = b["attention_mask"].bool()
    n = m.sum(1)
    width = b["x"].shape[1]  # padded to the batch's longest example, never past seq_len
    assert b["x"].dtype == torch.long and b["x"].shape == (8, int(n.max())) and width <= t.seq_len
    assert b["y"].shape == (8, 1) and b["attention_mask"].shape == (8, width)
    assert torch.equal(m, torch.arange(width)[None] < n[:, None])  # real tokens first
    assert (b["x"][~m] == listops.PAD_ID).all() and (b["x"][m] != listops.PAD_ID).all()
    for i in range(8):  # each row is a whole expression whose value is the label
        assert listops.evaluate(b["x"][i, :n[i]].tolist()) == int(b["y"][i])
    batches = list(t.eval_batches("test", 7))
    assert sum(len(x["y"]) for x in batches) == 20 and batches[-1]["x"].shape[0] == 6
    assert sum(len(x["y"]) for x in t.eval_batches("val", 7, limit=10)) == 10


def test_training_batches_are_a_function_of_seed_and_step():
    a, b, c = small(), small(), ListOps(seed=1, **SMALL)
    assert torch.equal(a.train_batch(9, 16)["x"], b.train_batch(9, 16)["x"])
    assert not torch.equal(a.train_batch(9, 16)["x"], a.train_batch(10, 16)["x"])
    assert not torch.equal(a.train_batch(9, 16)["x"], c.train_batch(9, 16)["x"])
    # one epoch of 60 examples in batches of 12: every example exactly once
    seen = {tuple(r[m.bool()].tolist()) for s in range(5)
            for r, m in zip(a.train_batch(s, 12)["x"], a.train_batch(s, 12)["attention_mask"])}
    assert len(seen) == 60
    # a batch crossing an epoch boundary (steps 3 of 16: positions 48..63)
    assert a.train_batch(3, 16)["x"].shape[0] == 16


def test_make_task_accepts_the_options():
    t = make_task("listops", seed=0, **SMALL, seq_len=70, long_policy="error")
    assert t.seq_len == 70
    with pytest.raises(ValueError, match="unknown option"):
        make_task("listops", seed=0, max_length=3)


# ---- long sequences and the original pipeline ---------------------------------------------------
def test_long_policies(reliability):
    with pytest.raises(DataError, match="seq_len=40.*long_policy='crop'"):
        small(seq_len=40)
    full = small()
    crop = small(seq_len=40, long_policy="crop")
    info = crop.describe()
    assert info["cropped"]["test"] > 0 and info["long_policy"] == "crop"
    assert crop.split_size("test") == 20 and crop.split_dropped("test") == 0
    xf, xc = next(full.eval_batches("test", 20)), next(crop.eval_batches("test", 20))
    assert torch.equal(xc["x"], xf["x"][:, :40]) and torch.equal(xc["y"], xf["y"])
    drop = small(seq_len=40, long_policy="drop")
    assert drop.split_dropped("test") == info["cropped"]["test"]
    assert drop.split_size("test") + drop.split_dropped("test") == 20
    assert int(next(drop.eval_batches("test", 20))["attention_mask"].sum(1).max()) <= 40
    with pytest.raises(DataError, match="long_policy"):
        small(long_policy="truncate")
    reliability.bad_input("long_policy='truncate'", kind="parameter")


def test_original_switch_drops_brackets_and_truncates_to_512():
    kw = dict(n_train=4, n_val=3, n_test=3, min_len=560, max_len=900, cache=False)
    new = ListOps(seed=0, **kw)
    orig = ListOps(seed=0, original_tokenizer=True, **kw)
    assert (orig.d_in, orig.seq_len, new.d_in) == (15, 512, 16)
    for split in ("val", "test"):
        bn, bo = next(new.eval_batches(split, 10)), next(orig.eval_batches(split, 10))
        assert not (bo["x"] == listops.END_ID).any()
        for i in range(len(bn["y"])):
            real = bn["x"][i][bn["attention_mask"][i].bool()]
            expected = real[real != listops.END_ID][:512]
            assert torch.equal(bo["x"][i][bo["attention_mask"][i].bool()], expected)
    assert sum(orig.describe()["cropped"].values()) > 0 and orig.describe()["long_policy"] == "crop"


def test_attention_mask_switch_reproduces_unmasked_batches():
    t = small(attention_mask=False)
    assert "attention_mask" not in t.train_batch(0, 4)


# ---- LRA TSV files ------------------------------------------------------------------------------
# Written by hand in the canonical LRA format: header, then '<parenthesised source>\t<target>'.
TSV = {
    "train": ["( ( ( [MAX 2 ) 9 ) ] )\t9",
              "( ( ( ( [MIN 4 ) ( ( ( [MED 1 ) 8 ) ] ) ) 2 ) ] )\t2",
              "( ( ( ( ( [SM 7 ) 8 ) 9 ) 3 ) ] )\t7"],
    "val": ["( ( ( [MED 3 ) ( ( ( ( [MAX 0 ) 1 ) 6 ) ] ) ) ] )\t4"],
    "test": ["( ( ( ( [MED 3 ) 4 ) 5 ) ( ( ( [SM 5 ) 1 ) ] ) ) ] )\t4",
             "( ( ( [MIN ( ( ( [SM 9 ) 9 ) ] ) ) 6 ) ] )\t6"],
}


def _write_fixture(root, tsv=TSV):
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in tsv.items():
        (root / f"basic_{split}.tsv").write_text("Source\tTarget\n" + "\n".join(lines) + "\n")


def test_reads_canonical_lra_tsv_files():
    _write_fixture(data_dir() / "listops")
    t = ListOps(seed=0, source="tsv")
    assert [t.split_size(s) for s in ("train", "val", "test")] == [3, 1, 2]
    assert t.describe()["source"].startswith("LRA TSV files")
    b = next(t.eval_batches("train", 3))
    first = b["x"][0][b["attention_mask"][0].bool()].tolist()
    assert [listops.VOCAB[i] for i in first] == ["[MAX", "2", "9", "]"]
    assert b["y"][:, 0].tolist() == [9, 2, 7]
    test = next(t.eval_batches("test", 2))
    assert test["y"][:, 0].tolist() == [4, 6]
    # "auto" reads the files when the generation options are LRA's, and generates otherwise
    assert ListOps(seed=0).data_hash() == t.data_hash()
    assert small().describe()["source"].startswith("generated")
    # the writer produces the same format
    tokens = listops.encode(listops.tokenize(TSV["train"][1].split("\t")[0]))
    listops.write_tsv(data_dir() / "copy.tsv", [(list(tokens), 2)])
    assert (data_dir() / "copy.tsv").read_text().splitlines()[1] == TSV["train"][1]


def test_original_pipeline_on_tsv():
    _write_fixture(data_dir() / "listops")
    t = ListOps(seed=0, source="tsv", original_tokenizer=True)
    b = next(t.eval_batches("train", 3))
    first = b["x"][0][b["attention_mask"][0].bool()].tolist()
    assert [listops.ORIGINAL_VOCAB[i] for i in first] == ["MAX", "2", "9"] and b["x"].shape[1] <= 512
    # without the mask (the original attended to padding) every sequence is padded to 512
    unmasked = ListOps(seed=0, source="tsv", original_tokenizer=True, attention_mask=False)
    assert next(unmasked.eval_batches("train", 3))["x"].shape == (3, 512)


def test_missing_tsv_files_say_how_to_get_them(reliability):
    with pytest.raises(DataError, match=r"fpt data fetch listops.*FPT_DATA_DIR") as e:
        ListOps(seed=0, source="tsv")
    assert "basic_train.tsv" in str(e.value) and str(data_dir() / "listops") in str(e.value)
    reliability.bad_input("no ListOps TSV files", kind="missing data")


@pytest.mark.parametrize("line,problem", [
    ("( ( ( [MAX 2 ) 9 ) ] )\t3", "differs from the expression's value 9"),
    ("( ( ( [MAX 2 ) 9 )\t9", "unbalanced"),
    ("( ( ( [MAX 2 ) 12 ) ] )\t9", "tokens other than"),
    ("( ( ( [FIRST 2 ) 9 ) ] )\t2", "tokens other than"),
    ("( ( ( [MAX 2 ) 9 ) ] )", "tab-separated fields"),
    ("( ( ( [MAX 2 ) 9 ) ] )\t10", "not a digit"),
])
def test_corrupt_tsv_lines_are_named(line, problem, reliability):
    _write_fixture(data_dir() / "listops", TSV | {"val": [line]})
    with pytest.raises(DataError, match="basic_val.tsv line 2") as e:
        ListOps(seed=0, source="tsv")
    assert problem in str(e.value) and "fpt data fetch listops" in str(e.value)
    reliability.bad_input(f"TSV line: {problem}", kind="corrupt data")


def test_tsv_without_header_is_refused(reliability):
    _write_fixture(data_dir() / "listops")
    (data_dir() / "listops" / "basic_test.tsv").write_text(TSV["test"][0] + "\n")
    with pytest.raises(DataError, match="Source<TAB>Target"):
        ListOps(seed=0, source="tsv")
    reliability.bad_input("TSV without its header", kind="corrupt data")


# ---- padding cannot change the answer -----------------------------------------------------------
@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-gpt2"])
def test_padding_with_the_attention_mask_does_not_change_the_prediction(backbone):
    from fptlib.models import FPT, BackboneSpec, build_backbone
    short = small(seq_len=64)
    model = FPT(build_backbone(BackboneSpec(name=backbone, init="random"), seed=0), input_kind="tokens",
                d_in=short.d_in, n_out_tokens=1, out_dim=10).eval()
    bs = next(short.eval_batches("test", 4))
    extra = 200 - bs["x"].shape[1]  # the same batch padded further, to 200 tokens
    bl = {"x": torch.nn.functional.pad(bs["x"], (0, extra)),
          "attention_mask": torch.nn.functional.pad(bs["attention_mask"], (0, extra))}
    assert bl["x"].shape[1] == 200 and (bl["attention_mask"].sum(1) < 64).all()
    with torch.no_grad():
        # one example alone with no padding at all, then padded to 64 and to 200 in a batch
        n0 = int(bs["attention_mask"][0].sum())
        alone = model(bs["x"][:1, :n0], bs["attention_mask"][:1, :n0])
        ls = model(bs["x"], bs["attention_mask"])
        ll = model(bl["x"], bl["attention_mask"])
    assert ls.shape == (4, 1, 10)
    assert torch.allclose(ls, ll, atol=1e-5)
    assert torch.allclose(alone[0], ls[0], atol=1e-5)
