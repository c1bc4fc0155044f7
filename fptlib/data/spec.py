"""The one description of a dataset and of the task that reads it: where its column stands in the tables (and
whether the paper has it), how to tell it is present, where it comes from (with its checksums), what to tell a
user when it is missing, and which task class reads it. Each dataset module ends with its SPEC; `registry`
collects them and derives the task lists from them, and `fpt data status`, `fpt data fetch`, the tables'
columns and missing-data cells and task construction all read them there."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import fixed_training_set


@dataclass(frozen=True)
class Remote:
    """One published file. A plain file is saved under `name`; an archive (`extract` set) is
    unpacked and only its top directory `extract` is kept, under the dataset directory."""

    name: str                             # file name as published (a mirror serves it as MIRROR/name)
    urls: tuple[str, ...]                 # canonical URLs, tried in order
    known_hash: str | None                # "md5:..." / "sha256:..." as published, or None
    check: Callable[[Path], str]          # validates the artifact (file or unpacked top directory)
    extract: str | None = None            # archives: the top directory to keep
    member_hashes: tuple[tuple[str, str | None], ...] = ()   # archives: published hashes of members
    alt_names: tuple[str, ...] = ()       # other accepted names in place (e.g. gunzipped MNIST)
    content_hash: str | None = None       # sha256 of the unpacked content, for copies under an alt name

    @property
    def target(self) -> str:
        """What the reader finds under the dataset directory."""
        return self.extract or self.name


def always_present(options: dict) -> bool:
    return True


@dataclass(frozen=True)
class Dataset:
    name: str                             # the task name (and `fpt data fetch NAME`)
    task: type | None = None              # the Task class that reads it
    # The task's column in every table: its place (1 first; the paper's column order, then the tasks beyond the
    # paper), its title there, and whether the paper has it (a task beyond it has no paper number; its title is
    # marked *). registry.TASKS, TASK_COLUMNS and the titles are derived from these.
    column: int = 0
    column_title: str = ""
    in_paper: bool = True
    title: str = ""                       # what is missing, in the sentence of a missing-data cell
    subdir: str = ""
    kind: str = "download"                # download | alias | generated
    remotes: tuple[Remote, ...] = ()
    checksum: str = ""                    # where the published checksums come from, or how it is checked
    alias_of: str | None = None
    note: str = ""
    # Cheap presence check for a task with these options (looks for files, reads none); options
    # whose source needs no download (generated data, the offline MNIST digits) are present.
    present: Callable[[dict], bool] = always_present
    # A copy on this machine (a system package) tried before the network: (staging dir, log) -> (where from,
    # {name in place (a remote's name or alt name): a file in staging}) or None; each file is verified first.
    local: Callable | None = None
    # Files made from the fetched ones (e.g. sequences sampled from profile HMMs): `prepare(root, log)` makes
    # them and returns their manifest records; `unprepared(root)` says what of them is missing, or None.
    prepare: Callable | None = None
    unprepared: Callable | None = None
    # Fetched by `fpt reproduce` before the cpu notebooks when missing (small, with a local source)
    auto_fetch: bool = False

    @property
    def cacheable(self) -> bool:
        """Whether output-only runs of the task may cache its frozen features: its task class has a fixed
        training set (fptlib.data.base.fixed_training_set), which the class itself declares."""
        return self.task is not None and fixed_training_set(self.task)

    @property
    def fetch_name(self) -> str:
        return self.alias_of or self.name

    @property
    def hint(self) -> str:
        """What to run when the files are missing."""
        return f"run `fpt data fetch {self.fetch_name}`"

    def missing(self, options: dict) -> str | None:
        """None when the task can run with these options, else what is missing and how to get it."""
        return None if self.present(options) else f"{self.title} not in the data directory: {self.hint}"
