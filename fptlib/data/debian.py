"""Files from a Debian package, without root: the installed copy where the package is installed, else the
package downloaded with `apt-get download` (an ordinary user may run it) and unpacked with `dpkg-deb -x`
into a cache under the data directory. On a machine without apt-get or dpkg-deb, or where the package
index does not know the package, there is no copy and the caller falls back to the network.

Fashion-MNIST (`dataset-fashion-mnist`) and the Pfam families with HMMER's `hmmemit` (`hmmer-examples`,
`hmmer`) come this way on a Debian machine; their checksums are verified by the caller either way.
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from ..paths import data_dir

# The FPT_DATA_DIR-relative cache of unpacked packages (one directory per package)
CACHE = ".debian"
SYSTEM_ROOT = Path("/")  # where installed packages are looked for (tests point it elsewhere)


def package_root(package: str, probe: str, log: Callable[[str], None] = print) -> Path | None:
    """A root under which the package's files lie at their installed paths ('/' where it is installed), or
    None. `probe` is one of its files (absolute, as installed) that tells whether a root holds it."""
    rel = probe.lstrip("/")
    if (SYSTEM_ROOT / rel).exists():
        return SYSTEM_ROOT
    cache = data_dir() / CACHE / package
    if (cache / rel).exists():
        return cache
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return None
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=f".{package}-") as tmp:
        log(f"apt-get download {package} (no root needed; unpacked under {cache})")
        got = subprocess.run(["apt-get", "download", "-q", package], cwd=tmp, capture_output=True, text=True)
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if got.returncode or not debs:
            log(f"  apt-get download {package} failed: {(got.stderr or got.stdout).strip()[-300:]}")
            return None
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        if not (unpacked / rel).exists():
            log(f"  {debs[0].name} has no {probe}")
            return None
        shutil.rmtree(cache, ignore_errors=True)
        unpacked.rename(cache)
    return cache


def find_file(root: Path, installed: str) -> Path | None:
    """A package file under root, compressed (.gz, as Debian ships large documentation files) or not."""
    for cand in (root / installed.lstrip("/"), root / (installed.lstrip("/") + ".gz")):
        if cand.exists():
            return cand
    return None


def copy_plain(src: Path, dest: Path) -> Path:
    """Copy a package file to dest, gunzipping it if Debian compressed it."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dest
