"""The offline real data beyond the paper: Fashion-MNIST and the Pfam families, from their Debian packages.

The tests read the packages installed (`make test-deps` installs dataset-fashion-mnist, hmmer and
hmmer-examples; without them these tests fail, saying so) and, for the path an ordinary user takes, a fake
`apt-get` that hands over a .deb built here with the real dpkg-deb. No test touches the network.
"""
import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHORT_WAIT

from fptlib.data import debian, download, make_task, pfam
from fptlib.data.homology import decode
from fptlib.data.mnist import MNIST_IDX, read_idx
from fptlib.rehearse import fixtures

INSTALLED = {"dataset-fashion-mnist": "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
             "hmmer-examples": "/usr/share/doc/hmmer/examples/tutorial/fn3.hmm", "hmmer": "/usr/bin/hmmemit"}


def _need_packages():
    missing = [p for p, f in INSTALLED.items() if not Path(f).exists()]
    assert not missing, f"Debian packages {missing} are not installed: run `make test-deps` (as root)"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data directory with both datasets fetched from the installed packages (what `fpt reproduce` does)."""
    _need_packages()
    root = tmp_path_factory.mktemp("offline-data")
    mp = pytest.MonkeyPatch()
    mp.setenv("FPT_DATA_DIR", str(root))
    mp.setenv("PATH", "/usr/bin:/bin")  # hmmemit from the package; no apt-get fallback needed
    for name in ("fashion-mnist", "pfam"):
        row = download.fetch(name, root, progress=False, log=lambda m: None)
        assert row["state"] == "present", row
    yield root
    mp.undo()


@pytest.fixture
def in_data(data_root, monkeypatch):
    monkeypatch.setenv("FPT_DATA_DIR", str(data_root))
    return data_root


# ---------------------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_the_installed_package(in_data):
    root = in_data / "fashion-mnist"
    manifest = download._manifest(root)
    for stem in MNIST_IDX.values():  # kept unpacked, checked by the sha256 of their content
        assert (root / stem).is_file() and stem in manifest
        assert manifest[stem]["source"].startswith("Debian package dataset-fashion-mnist")
    task = make_task("fashion-mnist", n_val=1000)
    assert (task.split_size("train"), task.split_size("val"), task.split_size("test")) == (59000, 1000, 10000)
    assert task.seq_len == 49 and task.d_in == 16 and task.n_classes == 10
    val_labels = task._data["val"][1]
    assert torch.bincount(val_labels, minlength=10).tolist() == [100] * 10  # stratified
    assert download.status(in_data, names=["fashion-mnist"])[0]["state"] == "present"


def test_fashion_mnist_copy_that_differs_is_refused(in_data, tmp_path, reliability):
    """A changed byte in a kept file is caught by the content checksum (status says corrupt)."""
    root = tmp_path / "fashion-mnist"
    shutil.copytree(in_data / "fashion-mnist", root)
    labels = root / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] ^= 1
    labels.write_bytes(bytes(raw))
    row = download.status(tmp_path, names=["fashion-mnist"])[0]
    assert row["state"] == "corrupt" and "t10k-labels-idx1-ubyte" in row["detail"]
    reliability.bad_input("a Fashion-MNIST file with one bit changed", kind="corrupt data")


def _fake_deb(tmp_path: Path, package: str, files: dict[str, bytes]) -> Path:
    """A real .deb (dpkg-deb --build) holding `files` at their installed paths."""
    tree = tmp_path / f"{package}-tree"
    for path, data in files.items():
        (tree / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tree / path.lstrip("/")).write_bytes(data)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: test <t@example.org>\nDescription: fixture\n")
    deb = tmp_path / f"{package}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True,
                   capture_output=True, timeout=SHORT_WAIT)
    return deb


def _fake_apt_get(tmp_path: Path, deb: Path) -> Path:
    """A directory holding an `apt-get` whose `download PKG` copies the fixture .deb into the working dir."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "apt-get"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = download ] || exit 2\ncp {deb} .\necho \"$@\" >> {tmp_path}/calls\n")
    script.chmod(0o755)
    return bindir


def test_fashion_mnist_without_root_through_apt_get_download(tmp_path, monkeypatch):
    """Not installed: `apt-get download` (which needs no root) and `dpkg-deb -x` into the data directory's
    cache; each file verified by its content checksum before it is put in place."""
    files = fixtures.mnist_files(fixtures.Sizes(mnist_train=30, mnist_test=10))
    deb = _fake_deb(tmp_path, "dataset-fashion-mnist",
                    {f"/usr/share/datasets/fashion-mnist/{k}": v for k, v in files.items()})
    monkeypatch.setenv("PATH", f"{_fake_apt_get(tmp_path, deb)}:/usr/bin:/bin")
    monkeypatch.setattr(debian, "SYSTEM_ROOT", tmp_path / "empty-root")
    monkeypatch.setattr(download, "_download", _no_network)
    data = tmp_path / "data"
    monkeypatch.setenv("FPT_DATA_DIR", str(data))
    content = {k[:-3]: hashlib.sha256(gzip.decompress(v)).hexdigest() for k, v in files.items()}
    registry = download.with_hashes(content)
    row = download.fetch("fashion-mnist", data, progress=False, registry=registry, log=print)
    assert row["state"] == "present"
    assert (tmp_path / "calls").read_text().split() == ["download", "-q", "dataset-fashion-mnist"]
    assert read_idx(data / "fashion-mnist" / "train-images-idx3-ubyte").shape == (30, 28, 28)
    assert (data / debian.CACHE / "dataset-fashion-mnist").is_dir()  # unpacked once, reused
    # with the real (pinned) checksums the fixture copy is refused and nothing is put in place
    shutil.rmtree(data / "fashion-mnist")
    with pytest.raises(download.FetchError, match="no network in tests"):
        download.fetch("fashion-mnist", data, progress=False, log=lambda m: None)
    assert not (data / "fashion-mnist" / "train-images-idx3-ubyte").exists()


def _no_network(remote, staging, urls, progress, log):
    raise download.FetchError(f"no network in tests (asked for {urls[0]})")


def test_no_apt_get_means_no_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither apt-get nor dpkg-deb
    monkeypatch.setattr(debian, "SYSTEM_ROOT", tmp_path / "empty-root")
    monkeypatch.setenv("FPT_DATA_DIR", str(tmp_path))
    assert debian.package_root("dataset-fashion-mnist", INSTALLED["dataset-fashion-mnist"], log=lambda m: None) is None


def test_fetch_all_is_the_papers_datasets():
    # `fpt data fetch all` leaves out the tasks beyond the paper; those are the ones `fpt reproduce` fetches
    beyond = [n for n, d in download.REGISTRY.items() if not d.in_paper]
    offline = [n for n, d in download.REGISTRY.items() if d.auto_fetch]
    assert sorted(offline) == sorted(beyond) == ["fashion-mnist", "pfam"]


# ---------------------------------------------------------------------------------------- Pfam families


def test_pfam_files_and_pools_from_the_packages(in_data):
    root = in_data / "pfam"
    manifest = download._manifest(root)
    for family in pfam.FAMILIES:
        assert manifest[f"{family}.sto"]["source"].startswith("Debian package hmmer-examples")
        for split, n in pfam.POOL.items():
            assert len(pfam.read_fasta(pfam.pool_path(root, family, split))) == n
            assert manifest[f"emitted/{family}.{split}.fa"]["made_by"].startswith("HMMER 3")
    # hmmemit is seeded: sampling again gives the same pools, byte for byte
    again = in_data.parent / "again"
    again.mkdir()
    for family in pfam.FAMILIES:
        shutil.copy(root / f"{family}.hmm", again)
    records = pfam.prepare(again, log=lambda m: None)
    assert {k: v["sha256"] for k, v in records.items()} == {k: manifest[k]["sha256"] for k in records}


def test_pfam_test_split_is_only_real_seed_sequences(in_data):
    task = make_task("pfam")
    x, y = task._data["test"]["x"], task._data["test"]["y"][:, 0]
    real = {f: pfam.read_stockholm(in_data / "pfam" / f"{f}.sto") for f in pfam.FAMILIES}
    families = list(pfam.FAMILIES)
    for row, label in zip(x, y.tolist()):
        window = decode(row)
        assert len(window) == task.window
        assert any(window in s for s in real[families[label]].values()), (families[label], window)
    counts = torch.bincount(y, minlength=len(families)).tolist()
    assert all(0 < c <= task.test_per_family for c in counts)
    assert sum(counts) == task.split_size("test")


def test_pfam_no_training_window_equals_a_test_window(in_data):
    """Training windows are substrings of the train pool, so no pool sequence may contain a test window; the
    validation pool is sampled apart from the training pool (another hmmemit seed)."""
    task = make_task("pfam")
    tests = {decode(r) for r in task._data["test"]["x"]}
    for pool in task.pools["train"] + task.pools["val"]:
        assert not any(w in s for s in pool for w in tests)
    for step in range(20):  # and, directly, the batches a run sees
        batch = task.train_batch(step, 16)
        assert not {decode(r) for r in batch["x"]} & tests
    train = {s for pool in task.pools["train"] for s in pool}
    assert not train & {s for pool in task.pools["val"] for s in pool}


def test_pfam_training_stream_is_a_function_of_seed_and_step(in_data):
    a, b, c = make_task("pfam", seed=0), make_task("pfam", seed=0), make_task("pfam", seed=1)
    for step in (0, 7, 500):
        assert torch.equal(a.train_batch(step, 8)["x"], b.train_batch(step, 8)["x"])
    assert not torch.equal(a.train_batch(3, 8)["x"], c.train_batch(3, 8)["x"])
    assert not torch.equal(a.train_batch(3, 8)["x"], a.train_batch(4, 8)["x"])
    assert a.data_hash() == b.data_hash()


def test_pfam_windows_all_have_one_length_so_length_says_nothing(in_data):
    """Whole sequences give their family away by length (a classifier that sees only the length scores far above
    chance on them); the task's windows cannot, because every window of every split has the one window length."""
    from sklearn.tree import DecisionTreeClassifier
    task = make_task("pfam")
    fams = list(pfam.FAMILIES)
    # whole sequences: trained on the sampled lengths, tested on the real ones
    tr_len = [[len(s)] for pool in task.pools["train"] for s in pool]
    tr_y = [k for k, pool in enumerate(task.pools["train"]) for _ in pool]
    te_len = [[len(s)] for f in fams for s in task.test_seqs[f]]
    te_y = [k for k, f in enumerate(fams) for _ in task.test_seqs[f]]
    whole = DecisionTreeClassifier(random_state=0).fit(tr_len, tr_y).score(te_len, te_y)
    test_y = task._data["test"]["y"][:, 0].numpy()
    chance = np.bincount(test_y).max() / len(test_y)
    assert whole > 0.5 > 0.15 > chance, (whole, chance)
    # windows: the training stream, and every validation and test window, are all exactly one window long
    lengths = {"train": (task.train_batch(0, 2000)["x"] != pfam.PAD).sum(1)}
    for split in ("val", "test"):
        lengths[split] = torch.cat([(b["x"] != pfam.PAD).sum(1) for b in task.eval_batches(split, 512)])
        assert len(lengths[split]) == task.split_size(split) > 0, split
    assert {s: set(v.tolist()) for s, v in lengths.items()} == {s: {task.window} for s in lengths}


def test_pfam_missing_data_says_what_to_run(tmp_path, monkeypatch, reliability):
    monkeypatch.setenv("FPT_DATA_DIR", str(tmp_path))
    with pytest.raises(pfam.DataError, match="fpt data fetch pfam"):
        make_task("pfam")
    assert "fpt data fetch pfam" in download.status(tmp_path, names=["pfam"])[0]["command"]
    reliability.bad_input("no Pfam data", kind="missing data")


def test_pfam_window_is_checked(in_data, reliability):
    with pytest.raises(pfam.DataError, match="window must be an integer from 8 to 63"):
        make_task("pfam", window=100)
    reliability.bad_input("Pfam window=100", kind="parameter")


def test_hmmemit_missing_says_how_to_install(tmp_path, monkeypatch, reliability):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(debian, "SYSTEM_ROOT", tmp_path / "empty-root")
    monkeypatch.setenv("FPT_DATA_DIR", str(tmp_path))
    with pytest.raises(pfam.DataError, match="apt-get install hmmer"):
        pfam.hmmemit(log=lambda m: None)
    reliability.bad_input("no hmmemit on this machine", kind="missing data")


def test_reproduce_fetches_what_its_notebooks_use(tmp_path, monkeypatch, capsys):
    """`fpt reproduce --scale cpu` (so `make reproduce`) gets both datasets with no step by hand, and only for
    notebooks that use them."""
    _need_packages()
    from fptlib import cli
    monkeypatch.setenv("FPT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    cli._fetch_offline_data(["01"])  # Tables 1-2 proper: the paper's tasks only
    assert not (tmp_path / "fashion-mnist").exists() and not (tmp_path / "pfam").exists()
    cli._fetch_offline_data(["01c"])
    assert [r["state"] for r in download.status(tmp_path, names=["fashion-mnist", "pfam"])] == ["present"] * 2
    assert "fetching fashion-mnist" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no notebook matches"):
        cli._fetch_offline_data(["99"])
