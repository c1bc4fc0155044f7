"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_file(path: Path | str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path | str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path | str):
    with open(path) as f:
        return json.load(f)


class Locked(RuntimeError):
    """Another process holds the lock."""


class FileLock:
    """An advisory lock (fcntl.flock) on a file; released when the holder exits, even on SIGKILL."""

    def __init__(self, path: Path | str, wait: bool):
        self.path, self.wait, self.fd = Path(path), wait, None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise Locked(f"{self.path.parent} is being written by another process (pid {holder})") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class DataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: builtin values, numpy arrays/scalars/dtypes, never another callable.

    Dataset files (CIFAR-10 batches, TAPE's LMDB records) are pickles from the internet; a pickle can
    name any callable, so everything outside this list is refused.
    """

    _ALLOWED = {
        "numpy": {"ndarray", "dtype"},
        "numpy.core.multiarray": {"_reconstruct", "scalar"},
        "numpy._core.multiarray": {"_reconstruct", "scalar"},
        "numpy.core.numeric": {"_frombuffer"},  # protocol-5 arrays
        "numpy._core.numeric": {"_frombuffer"},
        "_codecs": {"encode"},  # how protocol-2 pickles spell bytes
        "collections": {"OrderedDict"},
    }

    def find_class(self, module, name):
        if name in self._ALLOWED.get(module, ()):
            import numpy as np
            if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
                module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 1.x pickles
            return super().find_class(module, name)
        if module == "numpy.dtypes" or (module == "numpy" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: data files hold plain data only")


def safe_loads(raw: bytes, encoding: str = "ASCII"):
    import io
    return DataUnpickler(io.BytesIO(raw), encoding=encoding).load()


def safe_load(file, encoding: str = "ASCII"):
    return DataUnpickler(file, encoding=encoding).load()
