"""Project paths, resolved from the package location so notebooks work from any cwd."""
from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"


def results_dir(scale: str) -> Path:
    """Where runs and tables of one scale go (override the root with FPT_RESULTS_DIR)."""
    return Path(os.environ.get("FPT_RESULTS_DIR", PROJ_ROOT / "results")) / scale


def figures_dir(scale: str) -> Path:
    return Path(os.environ.get("FPT_FIGURES_DIR", PROJ_ROOT / "figures")) / scale


def data_dir() -> Path:
    """Downloaded datasets live here; FPT_DATA_DIR moves them (e.g. to a shared disk)."""
    return Path(os.environ.get("FPT_DATA_DIR", PROJ_ROOT / "data"))


def portable(obj):
    """obj (a string, or lists and dicts of them) with every absolute path under the data directory or
    the repository written relative to it, as <data>/... and ./..., so a result file committed from one
    machine names none of its directories."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(portable(v) for v in obj)
    if not isinstance(obj, str):
        return obj
    for root, name in ((data_dir().resolve(), "<data>"), (PROJ_ROOT, ".")):
        obj = obj.replace(f"{root}{os.sep}", f"{name}/").replace(str(root), name)
    return obj
