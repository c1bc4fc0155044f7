"""Dataset acquisition: `fpt data fetch TASK` and `fpt data status`.

Every dataset is described once, in the SPEC at the end of its module (collected in
`registry.REGISTRY`): which files to download, from where, with which published checksum (or, when
none is published, which format check), and where the reader expects the result under the data
directory (`fptlib.paths.data_dir()`, moved by FPT_DATA_DIR or `--data-dir`).

Downloads go through pooch: each file is streamed into a temporary file inside a hidden staging
directory (`<dataset>/.download/`) and moved to its name there only once it is complete and its
hash matches; a transfer cut short (fewer bytes than the server announced) raises, and the
temporary file is deleted. Nothing reaches the path a reader looks at before it has passed its
check: plain files are moved into place after validation, archives are unpacked into a temporary
sibling directory that is validated and then renamed into place. pooch cannot resume a byte range,
so an interrupted download restarts from the beginning of that file; files of a dataset that were
already complete are kept and not downloaded again.

A mirror (`--mirror URL` or FPT_DATA_MIRROR) replaces everything before the file name of the
canonical URLs: the mirror must serve each file under its own name at its root, e.g.
`URL/train-images-idx3-ubyte.gz`, `URL/cifar-10-python.tar.gz`, `URL/basic_train.tsv`,
`URL/remote_homology.tar.gz`. Tests use the same mechanism with a loopback server, and
`with_hashes` (CLI: `--hashes FILE`) to give their fixture files their own checksums.

Archives are unpacked only after every member has been checked: absolute paths, '..', links and
special files are refused. Pickled data (CIFAR batches, TAPE records) is read by validators with an
unpickler that accepts plain data and numpy arrays only.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable

from ..io import FileLock, Locked, read_json, sha256_file, write_json_atomic
from ..paths import data_dir as default_data_dir
from .base import DataError
from .registry import REGISTRY
from .spec import Dataset, Remote

MANIFEST = ".fetch-manifest.json"
STAGING = ".download"
MIRROR_ENV = "FPT_DATA_MIRROR"


class FetchError(DataError):
    """A download or an unpacked dataset failed; the message names the file and how to fix it."""



def with_hashes(overrides: dict[str, str | None], registry: dict[str, Dataset] | None = None
                ) -> dict[str, Dataset]:
    """A copy of the registry with some hashes replaced (keys: a remote's file name, an archive member as
    'top/member', e.g. 'cifar-10-batches-py/data_batch_1', or an unpacked copy's name for the sha256 of its
    content), in every dataset with that name (MNIST and Fashion-MNIST share theirs). Tests use it to give
    fixture files their own hashes; unknown keys raise FetchError."""
    registry = REGISTRY if registry is None else registry
    used: set[str] = set()

    def take(key: str, default):
        if key in overrides:
            used.add(key)
            return overrides[key]
        return default

    out = {}
    for name, ds in registry.items():
        remotes = []
        for r in ds.remotes:
            changes = {"known_hash": take(r.name, r.known_hash)}
            for alt in r.alt_names:
                changes["content_hash"] = take(alt, changes.get("content_hash", r.content_hash))
            if r.extract:
                changes["member_hashes"] = tuple((m, take(f"{r.extract}/{m}", h)) for m, h in r.member_hashes)
            remotes.append(dataclasses.replace(r, **changes))
        out[name] = dataclasses.replace(ds, remotes=tuple(remotes))
    left = set(overrides) - used
    if left:
        raise FetchError(f"no registry file named {', '.join(sorted(left))}; names are "
                         + ", ".join(r.name for d in registry.values() for r in d.remotes))
    return out


def load_hash_overrides(path) -> dict[str, str | None]:
    """Read a JSON object {file name or 'top/member': hash or null} for `with_hashes`."""
    try:
        obj = read_json(path)
    except (OSError, ValueError) as e:
        raise FetchError(f"cannot read the checksum overrides {path} ({e})") from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                            for k, v in obj.items()):
        raise FetchError(f"{path} must hold a JSON object mapping file names to 'alg:hex' strings or null")
    return obj


def dataset_names(registry: dict[str, Dataset] | None = None) -> list[str]:
    return list(REGISTRY if registry is None else registry)


def _lookup(name: str, registry: dict[str, Dataset]) -> Dataset:
    if name not in registry:
        raise FetchError(f"unknown dataset {name!r}; choose one of {', '.join(registry)} (or 'all')")
    return registry[name]


def urls_for(remote: Remote, mirror: str | None = None) -> list[str]:
    """The URLs to try: the canonical ones, or the mirror's copy (MIRROR/name)."""
    if mirror:
        return [mirror.rstrip("/") + "/" + remote.name]
    return list(remote.urls)


def _root(ds: Dataset, data_dir: Path) -> Path:
    return data_dir / ds.subdir


def _data_dir(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


# ---------------------------------------------------------------------------------------------
# Checking what is in place


def _hash(path: Path, known: str) -> str:
    import pooch
    alg = known.split(":")[0] if ":" in known else "sha256"
    return f"{alg}:{pooch.file_hash(str(path), alg=alg)}"


def _same_hash(actual: str, known: str) -> bool:
    known = known if ":" in known else f"sha256:{known}"
    return actual.lower() == known.lower()


def _manifest(root: Path) -> dict:
    try:
        return read_json(root / MANIFEST).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _check_artifact(remote: Remote, root: Path, manifest: dict) -> tuple[str, str]:
    """(state, detail) of one remote's artifact in place: present, missing or corrupt. Every copy a
    reader could pick (e.g. a gunzipped MNIST file beside the .gz) is checked."""
    found = [p for p in [root / remote.target] + [root / a for a in remote.alt_names] if p.exists()]
    if not found:
        return "missing", f"{remote.target} missing"
    details = []
    for path in found:
        state, detail = _check_one(remote, path, manifest)
        if state != "present":
            return state, detail
        details.append(detail)
    return "present", "; ".join(details)


def _check_one(remote: Remote, path: Path, manifest: dict) -> tuple[str, str]:
    try:
        if remote.extract:
            if not path.is_dir():
                return "corrupt", f"{path} is not a directory"
            for member, known in remote.member_hashes:
                m = path / member
                if not m.is_file():
                    return "corrupt", f"{m} is missing"
                if known and not _same_hash(_hash(m, known), known):
                    return "corrupt", f"{m} differs from its published checksum {known}"
            return "present", remote.check(path)
        if path.name == remote.name and remote.known_hash:
            actual = _hash(path, remote.known_hash)
            if not _same_hash(actual, remote.known_hash):
                return "corrupt", (f"{path} differs from its published checksum: expected "
                                   f"{remote.known_hash}, found {actual}")
            return "present", remote.check(path)
        detail = remote.check(path)
        if remote.content_hash and path.name != remote.name:
            if sha256_file(path) != remote.content_hash:
                return "corrupt", f"{path} differs from its known content (sha256 {remote.content_hash})"
            return "present", detail
        recorded = manifest.get(path.name, {}).get("sha256")
        if recorded:
            if sha256_file(path) != recorded:
                return "corrupt", (f"{path} changed since it was downloaded (sha256 differs from the one "
                                   f"recorded in {MANIFEST})")
            return "present", detail
        return "present", detail + " (format-checked; no recorded checksum)"
    except DataError as e:
        return "corrupt", str(e)


def _manual_lines(ds: Dataset, root: Path, mirror: str | None = None, only_missing: bool = False,
                  manifest: dict | None = None) -> list[str]:
    lines = []
    for r in ds.remotes:
        if only_missing and _check_artifact(r, root, manifest or {})[0] == "present":
            continue
        urls = urls_for(r, mirror)
        lines.append(f"  {urls[0]}")
        lines.extend(f"    (or {u})" for u in urls[1:])
        if r.extract:
            lines.append(f"    -> save as {root / r.name}, then run `fpt data fetch {ds.name}` to verify and "
                         f"unpack it offline (or: tar -xzf {r.name} -C {root}, giving {root / r.extract}/)")
        else:
            lines.append(f"    -> {root / r.name}")
    return lines


def status(data_dir=None, registry: dict[str, Dataset] | None = None,
           names: list[str] | None = None) -> list[dict]:
    """One dict per dataset: name, state (present | missing | corrupt | generated), path, detail,
    command (how to get it), checksum (how it is checked) and manual (download by hand)."""
    registry = REGISTRY if registry is None else registry
    data_dir = _data_dir(data_dir)
    rows = []
    for name in names or list(registry):
        ds = _lookup(name, registry)
        if ds.kind == "generated":
            rows.append({"name": name, "state": "generated", "path": "", "detail": ds.note,
                         "command": "none needed", "checksum": "", "manual": []})
            continue
        if ds.kind == "alias":
            base = status(data_dir, registry, [ds.alias_of])[0]
            rows.append(base | {"name": name, "manual": [], "checksum": f"as {ds.alias_of}",
                                "detail": f"uses the {ds.alias_of} files ({base['state']}): {ds.note}"})
            continue
        root = _root(ds, data_dir)
        manifest = _manifest(root)
        results = [(r, *_check_artifact(r, root, manifest)) for r in ds.remotes]
        bad = [(r, s, d) for r, s, d in results if s == "corrupt"]
        missing = [(r, s, d) for r, s, d in results if s == "missing"]
        if bad:
            state, detail = "corrupt", "; ".join(d for _, _, d in bad) + \
                f". Delete it and run `fpt data fetch {name}`"
        elif missing:
            state = "missing"
            have = len(results) - len(missing)
            detail = (f"{', '.join(r.target for r, _, _ in missing)} missing" if have or len(missing) == 1
                      else f"all {len(missing)} files missing")
            if have:
                detail += f" ({have} of {len(results)} in place)"
        else:
            state, detail = "present", "; ".join(f"{r.target}: {d}" for r, _, d in results)
            if ds.unprepared and (why := ds.unprepared(root)):
                state, detail = "missing", f"{why} (`fpt data fetch {name}` makes them)"
        if ds.note and state != "present":
            detail += f". Note: {ds.note}"
        rows.append({"name": name, "state": state, "path": str(root), "detail": detail,
                     "command": f"fpt data fetch {name}", "checksum": ds.checksum,
                     "manual": [] if state == "present" else _manual_lines(ds, root, only_missing=True,
                                                                          manifest=manifest)})
    return rows


def format_status(rows: list[dict], data_dir=None) -> str:
    """The table `fpt data status` prints, then how to get whatever is missing."""
    data_dir = _data_dir(data_dir)
    out = [f"data directory: {data_dir}  (set by --data-dir or FPT_DATA_DIR)", ""]
    w = max(len(r["name"]) for r in rows)
    out.append(f"{'dataset':<{w}}  {'state':<9}  details")
    out.append(f"{'-' * w}  {'-' * 9}  {'-' * 40}")
    for r in rows:
        where = f"{r['path']}: " if r["path"] and r["state"] in ("present", "corrupt") else ""
        out.append(f"{r['name']:<{w}}  {r['state']:<9}  {where}{r['detail']}")
    todo = [r for r in rows if r["state"] in ("missing", "corrupt")]
    if todo:
        out += ["", "To get what is missing, run the command (it downloads, verifies and unpacks), or "
                "download by hand to the paths shown:"]
        for r in todo:
            out += ["", f"{r['name']}: {r['command']}"] + (r["manual"] or ["  (same files as above)"])
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Fetching


class _TextProgress:
    """A minimal progress bar with the interface pooch expects (total, update, reset, close)."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream, self.total, self.n, self._shown = label, stream or sys.stderr, 0, 0, -1

    def update(self, n):
        self.n += n
        if self.total:
            pct = min(100, int(100 * self.n / self.total))
            if pct // 10 != self._shown // 10 or pct == 100 and self._shown != 100:
                self._shown = pct
                print(f"  {self.label}: {pct:3d}% of {self.total / 1e6:.1f} MB", file=self.stream, flush=True)

    def reset(self):
        self.n = 0

    def close(self):
        pass


def _progressbar(progress: bool, label: str):
    if not progress:
        return False
    try:
        import tqdm  # noqa: F401  pooch draws its own bar with tqdm when it is installed
        return True
    except ImportError:
        return _TextProgress(label)


def _classify(exc: BaseException) -> str:
    import requests
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return "checksum"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "truncated"
    if isinstance(exc, requests.exceptions.HTTPError):
        return "http"
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return "unreachable"
    return "other"


def _download(remote: Remote, staging: Path, urls: list[str], progress: bool, log) -> tuple[Path, str]:
    """Download one remote into the staging directory (complete and hash-checked, or not at all)."""
    import pooch
    failures = []
    for url in urls:
        if not re.match(r"^(https?|ftp)://", url):
            raise FetchError(f"cannot download {url}: only http(s) and ftp URLs are supported "
                             "(check --mirror / FPT_DATA_MIRROR)")
        log(f"downloading {url}")
        downloader = pooch.HTTPDownloader(progressbar=_progressbar(progress, remote.name), timeout=60,
                                          chunk_size=1 << 16)
        logger = pooch.get_logger()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            path = pooch.retrieve(url, known_hash=remote.known_hash, fname=remote.name, path=staging,
                                  downloader=downloader if url.startswith("http") else None)
            return Path(path), url
        except Exception as e:  # noqa: BLE001 - classified and reported below
            kind = _classify(e)
            if kind == "other":
                raise
            failures.append((url, kind, e))
            if url != urls[-1]:
                log(f"  failed ({_reason(kind, e)}); trying the next URL")
        finally:
            logger.setLevel(level)
    raise _DownloadFailed(remote, failures)


def _reason(kind: str, exc: BaseException) -> str:
    """A short, readable reason from the verbose requests/urllib3 message."""
    text = str(exc)
    if kind == "truncated":
        m = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
        return (f"got {int(m.group(1)):,} bytes, {int(m.group(2)):,} more were announced" if m
                else text)
    if kind == "unreachable":
        m = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
        if m:
            return m.group(0).strip()
        return "timed out" if "timed out" in text.lower() else text
    if kind == "checksum":
        return "checksum mismatch"
    return text


class _DownloadFailed(Exception):
    def __init__(self, remote, failures):
        super().__init__(remote.name)
        self.remote, self.failures = remote, failures


def _failure_message(ds: Dataset, root: Path, err: _DownloadFailed, mirror: str | None) -> str:
    r = err.remote
    kinds = {k for _, k, _ in err.failures}
    retry = (f"Run `fpt data fetch {ds.name}` again (an interrupted or failed download restarts from the "
             "beginning of that file; files already complete are kept), or download by hand:")
    manual = "\n".join(_manual_lines(ds, root, mirror=None, only_missing=True, manifest=_manifest(root)))
    if mirror:
        manual += f"\n(from the mirror {mirror}: {urls_for(r, mirror)[0]})"
    if kinds == {"unreachable"}:
        tried = "\n".join(f"  {u}: {_reason(k, e)}" for u, k, e in err.failures)
        return (f"cannot reach the server for {r.name} (no network?). Tried:\n{tried}\n"
                f"Without network, download these files on another machine and put them at the paths "
                f"shown, then check with `fpt data status`:\n{manual}\n"
                f"(A reachable copy can also be used with --mirror URL or {MIRROR_ENV}.)")
    parts = []
    for url, kind, e in err.failures:
        if kind == "checksum":
            m = re.search(r"expected (\S+) but got (\S+?)\.?\s", str(e) + " ")
            exp, got = (m.group(1), m.group(2)) if m else (r.known_hash, "?")
            alg = exp.split(":")[0] if ":" in exp else "sha256"
            parts.append(f"{url}: the downloaded {r.name} does not match its checksum: expected {exp}, got "
                         f"{alg}:{got.split(':')[-1]}. The file is corrupt (or the server sent something "
                         "else); it was deleted and nothing was put in place.")
        elif kind == "truncated":
            parts.append(f"{url}: the download of {r.name} was cut short (the server sent fewer bytes than it "
                         f"announced: {_reason(kind, e)}). The partial file was deleted and nothing was put in "
                         "place.")
        elif kind == "http":
            parts.append(f"{url}: {e}")
        else:
            parts.append(f"{url}: unreachable ({_reason(kind, e)})")
    return f"could not download {r.name}:\n  " + "\n  ".join(parts) + f"\n{retry}\n{manual}"


def _safe_members(tar: tarfile.TarFile, top: str, archive: Path) -> list[tarfile.TarInfo]:
    keep = []
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if m.name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", m.name):
            raise FetchError(f"{archive} contains an unsafe member path {m.name!r} (absolute or with '..'); "
                             "refusing to unpack it")
        parts = [x for x in p.parts if x not in (".", "")]
        if not parts or parts[0] != top:
            continue  # e.g. macOS '._*' files beside the data
        if not (m.isfile() or m.isdir()):
            raise FetchError(f"{archive} contains {m.name!r}, which is a link or special file; refusing to "
                             "unpack it")
        keep.append(m)
    if not any(m.isfile() for m in keep):
        raise FetchError(f"{archive} holds no files under {top}/; it is not the expected archive")
    return keep


def _extract(archive: Path, top: str, root: Path) -> Path:
    """Unpack archive's `top/` into a temporary sibling of root/top; returns that temporary directory."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, top, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
            # tarfile stops at the end-of-archive marker, before the gzip/bz2/xz trailer, so a damaged byte in
            # a member's unused pages would pass unnoticed; reading the stream to its end runs its checksum.
            while tar.fileobj.read(1 << 20):
                pass
    except FetchError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{archive} cannot be unpacked ({e}); it is truncated or corrupt. Delete it and run "
                         "the fetch again") from e
    return tmp


def _swap_into_place(new: Path, dest: Path) -> None:
    """Rename a directory (or file) into place; an existing one is moved aside first, then removed."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _clean_stale(root: Path, staging: Path, ds: Dataset) -> None:
    """Remove what an interrupted earlier fetch left: pooch temporaries and half-unpacked trees."""
    names = {r.name for r in ds.remotes}
    if staging.is_dir():
        for p in staging.iterdir():
            if p.name not in names:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    for p in root.glob(".extract-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _remove_empty(*dirs: Path) -> None:
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            pass


def fetch(name: str, data_dir=None, mirror: str | None = None, progress: bool = True,
          registry: dict[str, Dataset] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Download, verify and put in place one dataset (or 'all'). Returns its status row plus
    'action' (downloaded | already present | nothing to fetch). Raises FetchError."""
    registry = REGISTRY if registry is None else registry
    data_dir = _data_dir(data_dir)
    mirror = mirror if mirror is not None else (os.environ.get(MIRROR_ENV) or None)
    log = log or (lambda msg: print(f"[fpt data] {msg}", file=sys.stderr, flush=True))
    if name == "all":
        # the paper's datasets; the offline ones beyond it come by name, or with `fpt reproduce` (auto_fetch)
        rows = [fetch(n, data_dir, mirror, progress, registry, log) for n, d in registry.items()
                if d.kind == "download" and d.in_paper]
        return {"name": "all", "state": "present", "action": ", ".join(f"{r['name']}: {r['action']}"
                                                                       for r in rows), "rows": rows}
    ds = _lookup(name, registry)
    if ds.kind == "generated":
        return status(data_dir, registry, [name])[0] | {"action": "nothing to fetch",
                                                         "detail": "generated on the fly by the task"}
    if ds.kind == "alias":
        row = fetch(ds.alias_of, data_dir, mirror, progress, registry, log)
        return status(data_dir, registry, [name])[0] | {"action": f"{row['action']} ({ds.alias_of})"}

    root = _root(ds, data_dir)
    before = status(data_dir, registry, [name])[0]
    if before["state"] == "present":
        return before | {"action": "already present"}
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create the data directory {root} ({e}); choose another with --data-dir "
                         "or FPT_DATA_DIR") from e
    staging = root / STAGING
    try:
        with FileLock(data_dir / ".locks" / f"{name}.lock", wait=False):
            _fetch_locked(ds, root, staging, mirror, progress, log)
    except Locked as e:
        raise FetchError(f"another `fpt data fetch {name}` is running ({e}); wait for it to finish") from None
    finally:
        _remove_empty(staging, root)
    after = status(data_dir, registry, [name])[0]
    if after["state"] != "present":  # cannot happen unless something changed the files meanwhile
        raise FetchError(f"{name} is still {after['state']} after the download: {after['detail']}")
    return after | {"action": "downloaded"}


def _fetch_locked(ds: Dataset, root: Path, staging: Path, mirror, progress, log) -> None:
    _clean_stale(root, staging, ds)
    manifest = _manifest(root)
    records = dict(manifest)
    todo = [r for r in ds.remotes if _check_artifact(r, root, manifest)[0] != "present"]
    if todo and ds.local and not mirror:  # a system package's copy first; a mirror asked for is used as asked
        staging.mkdir(exist_ok=True)
        source, copies = ds.local(staging, log) or ("", {})
        todo = [r for r in todo if not _adopt_local(r, source, copies, root, records, log)]
        for path in copies.values():  # copies not used (unverified) are not kept
            if path.parent == staging:
                path.unlink(missing_ok=True)
        write_json_atomic(root / MANIFEST, {"dataset": ds.name, "files": records})
    for r in todo:
        staging.mkdir(exist_ok=True)
        if r.extract and (root / r.name).is_file():  # an archive the user saved by hand
            _adopt_saved_archive(r, root, staging, ds, log)
        try:
            path, url = _download(r, staging, urls_for(r, mirror), progress, log)
        except _DownloadFailed as e:
            raise FetchError(f"fpt data fetch {ds.name}: " + _failure_message(ds, root, e, mirror)) from None
        record = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "url": url,
                  "published_hash": r.known_hash,
                  "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if r.extract:
            log(f"unpacking {r.name}")
            tmp = None
            try:
                tmp = _extract(path, r.extract, root)
                _validate_unpacked(r, tmp / r.extract, ds, url)
                _swap_into_place(tmp / r.extract, root / r.extract)
            finally:  # the archive goes either way: unpacked, or unusable (a rerun downloads it again)
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                path.unlink(missing_ok=True)
            records[r.extract] = record | {"archive": r.name}
        else:
            try:
                r.check(path)
            except DataError as e:
                path.unlink(missing_ok=True)
                raise FetchError(f"fpt data fetch {ds.name}: the downloaded {r.name} from {url} is not usable "
                                 f"and was deleted: {e}. Retry, or download it by hand to {root / r.name}"
                                 ) from None
            os.replace(path, root / r.name)
            for alt in r.alt_names:  # a damaged copy under another name would shadow the good one
                (root / alt).unlink(missing_ok=True)
            records[r.name] = record
        write_json_atomic(root / MANIFEST, {"dataset": ds.name, "files": records})
    if ds.prepare and ds.unprepared(root):
        records |= ds.prepare(root, log)
        write_json_atomic(root / MANIFEST, {"dataset": ds.name, "files": records})


def _adopt_local(r: Remote, source: str, copies: dict[str, Path], root: Path, records: dict, log) -> bool:
    """Put a local copy of one remote in place if there is one and it verifies; False to download it."""
    name = next((n for n in (r.name, *r.alt_names) if n in copies), None)
    if name is None:
        return False
    path, known = copies[name], r.known_hash if name == r.name else r.content_hash
    ok = known and (_same_hash(_hash(path, known), known) if name == r.name
                    else sha256_file(path) == known)
    if not ok:
        log(f"the local copy of {name} ({path}) does not match its checksum; downloading it instead")
        return False
    r.check(path)
    records[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "source": source,
                     "published_hash": known,
                     "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    os.replace(path, root / name)
    for other in {r.name, *r.alt_names} - {name}:  # a stale copy under another name would shadow this one
        (root / other).unlink(missing_ok=True)
    log(f"{name}: verified copy from {source}")
    return True


def _adopt_saved_archive(r: Remote, root: Path, staging: Path, ds: Dataset, log) -> None:
    """Use an archive the user downloaded by hand into the dataset directory, if it is the right one."""
    saved = root / r.name
    log(f"found {saved}; checking it")
    if r.known_hash:
        actual = _hash(saved, r.known_hash)
        if not _same_hash(actual, r.known_hash):
            raise FetchError(f"fpt data fetch {ds.name}: {saved} does not match its published checksum: "
                             f"expected {r.known_hash}, got {actual}. It is truncated or corrupt (or another "
                             f"file): delete it and download it again from {r.urls[0]}, or delete it and run "
                             f"`fpt data fetch {ds.name}`")
    os.replace(saved, staging / r.name)


def _validate_unpacked(r: Remote, top: Path, ds: Dataset, url: str) -> None:
    try:
        for member, known in r.member_hashes:
            m = top / member
            if not m.is_file():
                raise DataError(f"the archive lacks {r.extract}/{member}")
            if known:
                actual = _hash(m, known)
                if not _same_hash(actual, known):
                    raise DataError(f"{r.extract}/{member} does not match its published checksum: expected "
                                    f"{known}, got {actual}")
        r.check(top)
    except DataError as e:
        raise FetchError(f"fpt data fetch {ds.name}: the archive {r.name} from {url} unpacked into something "
                         f"unusable, so nothing was put in place: {e}") from None
