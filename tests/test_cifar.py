"""CIFAR-10 and CIFAR-10 LRA on tiny fixture files written in the official python-version format."""
import math
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from fptlib.data import DataError, cifar, make_task
from fptlib.data.cifar import (
    CIFAR10,
    CIFAR10LRA,
    augment_images,
    hflip,
    load_cifar10,
    random_crop,
    read_cifar_batch,
    rotate,
    to_gray,
    to_patches,
)
from fptlib.paths import data_dir

N_PER_BATCH = 20


# --- fixture writer: the byte stream Python 2's cPickle (protocol 2) produced for the official files ---

def _py2_pickle(d: dict) -> bytes:
    """Pickle a dict of str -> (uint8 2-D array | list of int | list of str | str) as Python 2 did:
    str as (SHORT_)BINSTRING, arrays through numpy.core.multiarray._reconstruct."""
    out = bytearray(b"\x80\x02}(")  # PROTO 2, EMPTY_DICT, MARK

    def string(b: bytes):
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b)

    def integer(v: int):
        out.extend(b"J" + struct.pack("<i", v))

    for key, val in d.items():
        string(key.encode())
        if isinstance(val, np.ndarray):
            assert val.dtype == np.uint8 and val.ndim == 2
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85")
            string(b"b")
            out.extend(b"\x87R(K\x01(")          # TUPLE3 REDUCE, state = (1, shape, dtype, False, raw)
            for n in val.shape:
                integer(n)
            out.extend(b"tcnumpy\ndtype\n")
            string(b"u1")
            out.extend(b"K\x00K\x01\x87R(K\x03")  # dtype('u1', 0, 1), state (3, '|', None x3, -1, -1, 0)
            string(b"|")
            out.extend(b"NNN")
            integer(-1), integer(-1), integer(0)
            out.extend(b"tb\x89")
            string(val.tobytes())
            out.extend(b"tb")
        elif isinstance(val, str):
            string(val.encode())
        else:
            out.extend(b"](")
            for x in val:
                string(x.encode()) if isinstance(x, str) else integer(int(x))
            out.extend(b"e")
    out.extend(b"u.")
    return bytes(out)


def _images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _write_batch(path, images, labels, label="training batch"):
    path.write_bytes(_py2_pickle({"batch_label": label, "labels": list(labels),
                                  "data": images.reshape(len(images), 3072),
                                  "filenames": [f"img_{i}.png" for i in range(len(images))]}))


def write_fixture(root=None):
    """5 train batches + 1 test batch of 20 images, 2 of each class per batch; returns the arrays."""
    root = root or data_dir() / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    labels = [i % 10 for i in range(N_PER_BATCH)]
    train = []
    for b in range(5):
        imgs = _images(b, N_PER_BATCH)
        _write_batch(root / f"data_batch_{b + 1}", imgs, labels, f"training batch {b + 1} of 5")
        train.append(imgs)
    test = _images(99, N_PER_BATCH)
    test_labels = [(3 * i + 1) % 10 for i in range(N_PER_BATCH)]
    _write_batch(root / "test_batch", test, test_labels, "testing batch 1 of 1")
    return {"train": (np.concatenate(train), np.array(labels * 5)), "test": (test, np.array(test_labels))}


@pytest.fixture
def fixture_data():
    return write_fixture()


def _unpatch(tokens, p, c):
    """Inverse of the documented token layout, written independently: (B, L, p*p*c) -> (B, c, 32, 32)."""
    b, n = tokens.shape[:2]
    g = int(math.isqrt(n))
    out = torch.empty(b, c, g * p, g * p)
    for t in range(n):
        pr, pc = divmod(t, g)
        for k in range(p * p):
            r, col = divmod(k, p)
            out[:, :, pr * p + r, pc * p + col] = tokens[:, t, k * c:(k + 1) * c]
    return out


def _normalised(images, mean, std):
    x = torch.as_tensor(images, dtype=torch.float32) / 255.0
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


# --- reader ---------------------------------------------------------------------------------------

def test_reader_reads_the_channel_planar_layout(fixture_data):
    path = data_dir() / "cifar10" / "cifar-10-batches-py" / "data_batch_2"
    X, y = read_cifar_batch(path)
    assert X.shape == (20, 3, 32, 32) and X.dtype == np.uint8 and y.dtype == np.int64
    flat = fixture_data["train"][0][20:40].reshape(20, 3072)
    k, c, r, col = 7, 2, 5, 30  # blue plane starts at 2048, rows of 32
    assert X[k, c, r, col] == flat[k, 2048 + r * 32 + col]
    assert np.array_equal(X, fixture_data["train"][0][20:40])
    assert y.tolist() == [i % 10 for i in range(20)]
    splits = load_cifar10()
    assert splits["train"][0].shape == (100, 3, 32, 32) and splits["test"][0].shape == (20, 3, 32, 32)
    assert np.array_equal(splits["train"][1], fixture_data["train"][1])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reader_accepts_batches_repickled_by_python3(tmp_path, protocol):
    imgs = _images(1, 3)
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": imgs.reshape(3, 3072), b"labels": [1, 2, 3]}, protocol=protocol))
    X, y = read_cifar_batch(path)
    assert np.array_equal(X, imgs) and y.tolist() == [1, 2, 3]


# --- tasks: shapes, layout, labels, splits ---------------------------------------------------------

def test_shapes_and_registry(fixture_data):
    t = make_task("cifar10", seed=0, n_val=20)
    assert (t.seq_len, t.d_in, t.n_out_tokens, t.n_classes, t.input_kind) == (64, 48, 1, 10, "linear")
    b = t.train_batch(0, 16)
    assert b["x"].shape == (16, 64, 48) and b["x"].dtype == torch.float32 and b["y"].shape == (16, 1)
    assert {s: t.split_size(s) for s in ("train", "val", "test")} == {"train": 80, "val": 20, "test": 20}
    lra = make_task("cifar10-lra", seed=0, n_val=20)
    assert (lra.seq_len, lra.d_in) == (1024, 1)
    assert lra.train_batch(0, 16)["x"].shape == (16, 1024, 1)
    assert next(lra.eval_batches("test", 8))["x"].shape == (8, 1024, 1)
    d = t.describe()
    assert d["name"] == "cifar10" and "channels last" in d["token_layout"]
    assert lra.describe()["name"] == "cifar10-lra" and lra.describe()["augment"] == "none"


def test_patches_reassemble_into_the_normalised_image(fixture_data):
    X, y = fixture_data["test"]
    t = CIFAR10(n_val=20)
    batches = list(t.eval_batches("test", 7))
    assert [len(b["y"]) for b in batches] == [7, 7, 6]
    x = torch.cat([b["x"] for b in batches])
    want = _normalised(X, cifar.CIFAR10_MEAN, cifar.CIFAR10_STD)
    assert torch.allclose(_unpatch(x, 4, 3), want, atol=1e-6)
    # Spelled out: token 0 starts with pixel (0,0)'s R, G, B, then pixel (0,1); token 1 is columns 4..7.
    assert torch.allclose(x[0, 0, :6], want[0, :, 0, :2].T.reshape(-1))
    assert torch.allclose(x[0, 1, :3], want[0, :, 0, 4])
    assert torch.allclose(x[0, 8, :3], want[0, :, 4, 0])
    assert torch.cat([b["y"] for b in batches]).squeeze(1).tolist() == y.tolist()
    lra = CIFAR10LRA(n_val=20)
    xl = torch.cat([b["x"] for b in lra.eval_batches("test", 64)])
    gray = to_gray(torch.from_numpy(X))
    assert torch.allclose(xl.reshape(20, 1, 32, 32), (gray.float() / 255 - 0.5) / 0.5)
    assert torch.equal(to_patches(torch.arange(16.).reshape(1, 1, 4, 4), 2)[0, 1], torch.tensor([2., 3., 6., 7.]))


def _row_keys(X):
    return sorted(bytes(r) for r in X.reshape(len(X), -1).numpy())


def test_stratified_validation_split_is_fixed_and_disjoint(fixture_data):
    a, b = CIFAR10(seed=0, n_val=20), CIFAR10(seed=5, n_val=20)
    yv = a._data["val"][1]
    assert torch.bincount(yv, minlength=10).tolist() == [2] * 10
    assert torch.equal(a._data["val"][0], b._data["val"][0]) and a.data_hash() == b.data_hash()
    Xall = torch.from_numpy(fixture_data["train"][0])
    assert _row_keys(torch.cat([a._data["train"][0], a._data["val"][0]])) == _row_keys(Xall)
    # Each train image keeps its label.
    lookup = {bytes(r): int(label) for r, label in zip(Xall.reshape(100, -1).numpy(), fixture_data["train"][1])}
    for X, y in (a._data["train"], a._data["val"]):
        assert [lookup[bytes(r)] for r in X.reshape(len(X), -1).numpy()] == y.tolist()
    small = CIFAR10(n_val=20, max_train=30, max_test=5)
    assert (small.split_size("train"), small.split_size("val"), small.split_size("test")) == (30, 20, 5)
    assert torch.equal(small._data["train"][0], a._data["train"][0][:30])
    with pytest.raises(ValueError, match="n_val"):
        CIFAR10(n_val=5)
    # CIFAR-10 LRA with the same n_val holds out the same images, so both tasks train on the same ones
    lra = CIFAR10LRA(seed=3, n_val=20)
    for split in ("train", "val"):
        assert torch.equal(lra._data[split][0], to_gray(a._data[split][0])), split
        assert torch.equal(lra._data[split][1], a._data[split][1]), split


# --- augmentation ----------------------------------------------------------------------------------

def test_augmentation_is_a_function_of_seed_and_step(fixture_data):
    t1, t2 = CIFAR10(seed=0, n_val=20), CIFAR10(seed=0, n_val=20)
    b1, b2 = t1.train_batch(5, 16), t2.train_batch(5, 16)  # a fresh instance = a resumed run
    assert torch.equal(b1["x"], b2["x"]) and torch.equal(b1["y"], b2["y"])
    assert not torch.equal(t1.train_batch(6, 16)["x"], b1["x"])
    assert not torch.equal(CIFAR10(seed=1, n_val=20).train_batch(5, 16)["x"], b1["x"])
    # Same images in the same order without augmentation; the augmentation changes the pixels.
    plain = CIFAR10(seed=0, n_val=20, augment=False).train_batch(5, 16)
    assert torch.equal(plain["y"], b1["y"]) and not torch.equal(plain["x"], b1["x"])
    # Steps past the end of the 80 training images wrap into a new epoch.
    assert t1.train_batch(40, 16)["x"].shape == (16, 64, 48)


def test_augmentation_on_for_cifar10_off_for_lra_by_default(fixture_data):
    t, lra = CIFAR10(n_val=20), CIFAR10LRA(n_val=20)
    assert t.augment is True and lra.augment is False
    idx = lra.train_indices(0, 16)
    assert torch.equal(lra.train_batch(0, 16)["x"], lra.tokens(lra._data["train"][0][idx]))
    assert not torch.equal(t.train_batch(0, 16)["x"], t.tokens(t._data["train"][0][t.train_indices(0, 16)]))
    on = CIFAR10LRA(n_val=20, augment=True).train_batch(0, 16)["x"]
    assert on.shape == (16, 1024, 1) and not torch.equal(on, lra.train_batch(0, 16)["x"])


def test_flip_is_an_exact_mirror():
    x = torch.rand(4, 3, 32, 32)
    mask = torch.tensor([True, False, True, False])
    out = hflip(x, mask)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    assert torch.equal(out[0, :, 3, 0], x[0, :, 3, 31])
    assert torch.equal(hflip(out, mask), x)


def test_zero_shift_and_zero_rotation_are_the_identity():
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(random_crop(x, torch.full((3, 2), 4)), x)
    assert torch.equal(rotate(x, torch.zeros(3)), x)
    shifted = random_crop(x, torch.tensor([[0, 0], [8, 8], [4, 0]]))
    assert torch.equal(shifted[0, :, 4:, 4:], x[0, :, :28, :28]) and shifted[0, :, :4].abs().sum() == 0
    assert torch.equal(shifted[1, :, :28, :28], x[1, :, 4:, 4:]) and shifted[1, :, :, 28:].abs().sum() == 0
    assert torch.equal(shifted[2, :, :, 4:], x[2, :, :, :28])
    # Positive angles turn the picture counter-clockwise, as PIL/torchvision do.
    assert torch.equal(rotate(x, torch.full((3,), 90.0)), torch.rot90(x, 1, dims=(-2, -1)))
    # Rotation fills uncovered corners with zeros (before normalisation).
    r = rotate(torch.ones(1, 1, 32, 32), torch.tensor([20.0]))
    assert r[0, 0, 0, 0] == 0 and r[0, 0, 16, 16] == 1


def test_augmentation_keeps_pixel_values_and_shape():
    x = torch.randint(0, 256, (16, 3, 32, 32)).float()
    out = augment_images(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}  # nearest: copies and zero fill


def test_rotation_and_luma_agree_with_pil():
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb)
    assert np.array_equal(to_gray(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy(),
                          np.asarray(pil.convert("L")))
    for angle in (7.0, -15.0, 20.0):
        ours = rotate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), torch.tensor([angle]))
        theirs = np.asarray(pil.rotate(angle, resample=Image.NEAREST))
        same = (ours[0].permute(1, 2, 0).numpy() == theirs).all(-1).mean()
        assert same > 0.99, (angle, same)  # ties at pixel-centre boundaries aside


def test_lra_luma_matches_a_hand_computation(tmp_path):
    px = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [255, 255, 255], [100, 150, 200]],
                  np.uint8)
    # round(0.299 R + 0.587 G + 0.114 B): 76.245, 149.685, 29.07, 18.15, 255, 140.75
    want = [76, 150, 29, 18, 255, 141]
    assert to_gray(torch.from_numpy(px)[:, :, None, None])[:, 0, 0, 0].tolist() == want
    imgs = np.zeros((20, 3, 32, 32), np.uint8)
    imgs[:6, :, 0, 0] = px
    root = data_dir() / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for b in range(5):
        _write_batch(root / f"data_batch_{b + 1}", _images(b, 20), [i % 10 for i in range(20)])
    _write_batch(root / "test_batch", imgs, [0] * 20)
    x = next(CIFAR10LRA(n_val=20).eval_batches("test", 6))["x"]
    assert torch.allclose(x[:, 0, 0], (torch.tensor(want, dtype=torch.float32) / 255 - 0.5) / 0.5)


# --- errors ----------------------------------------------------------------------------------------

def test_missing_data_says_how_to_fetch(reliability):
    with pytest.raises(DataError, match="fpt data fetch cifar10") as e:
        CIFAR10()
    assert "data_batch_1" in str(e.value) and "FPT_DATA_DIR" in str(e.value)
    reliability.bad_input("no CIFAR-10 files", kind="missing data")
    with pytest.raises(DataError, match="fpt data fetch cifar10"):
        CIFAR10LRA()
    assert not cifar.cifar10_available()
    reliability.bad_input("no CIFAR-10 files, LRA", kind="missing data")


def test_partly_missing_and_misplaced_data(fixture_data, reliability):
    root = cifar.cifar10_root()
    (root / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch.*fpt data fetch cifar10"):
        CIFAR10(n_val=20)
    reliability.bad_input("CIFAR-10 test_batch missing", kind="missing data")
    flat = root.parent
    for f in root.iterdir():
        f.rename(flat / f.name)
    with pytest.raises(DataError, match="belong in the cifar-10-batches-py/ subdirectory"):
        CIFAR10(n_val=20)
    reliability.bad_input("CIFAR-10 batches outside their subdirectory", kind="missing data")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "shape", "labels", "label_range", "not_dict", "evil"])
def test_corrupt_files_say_delete_and_fetch_again(fixture_data, damage, reliability):
    path = cifar.cifar10_root() / "data_batch_3"
    imgs = _images(3, 20).reshape(20, 3072)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(b"<html>not found</html>")
    elif damage == "shape":
        path.write_bytes(_py2_pickle({"labels": [0] * 20, "data": imgs[:, :3000]}))
    elif damage == "labels":
        path.write_bytes(_py2_pickle({"labels": [0] * 19, "data": imgs}))
    elif damage == "label_range":
        path.write_bytes(_py2_pickle({"labels": [10] * 20, "data": imgs}))
    elif damage == "not_dict":
        path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    else:
        path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3") as e:
        CIFAR10(n_val=20)
    assert "fpt data fetch cifar10" in str(e.value) and "delete" in str(e.value)
    if damage == "evil":
        assert "refusing to load" in str(e.value)
    reliability.bad_input(f"CIFAR-10 batch: {damage}", kind="corrupt data")


def test_patch_size_must_divide_the_image(reliability):
    with pytest.raises(DataError, match="patch_size=5"):
        make_task("cifar10", patch_size=5)
    reliability.bad_input("CIFAR-10 patch_size=5", kind="parameter")
    with pytest.raises(DataError, match="patch_size=3"):
        CIFAR10LRA(patch_size=3)
    reliability.bad_input("CIFAR-10 LRA patch_size=3", kind="parameter")


def test_other_patch_sizes(fixture_data):
    t = CIFAR10(n_val=20, patch_size=8, augment=False)
    assert t.train_batch(0, 2)["x"].shape == (2, 16, 192)
    lra = CIFAR10LRA(n_val=20, patch_size=2)
    assert lra.train_batch(0, 2)["x"].shape == (2, 256, 4)
