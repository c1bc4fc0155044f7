"""A run's directory: where it lives, the checks before anything is written into it, and reading
back what a finished run wrote.

    config.json     the resolved config
    metrics.jsonl   one line per validation evaluation (rewritten atomically)
    result.json     final numbers on the full test split (written last, atomically)
    checkpoint/     latest checkpoint while the run is unfinished (removed at the end)
"""
from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..io import read_json, write_text_atomic
from ..paths import results_dir
from .errors import RunError


@dataclass(frozen=True)
class RunDir:
    """One run's directory and the files in it: the only place their names are spelled."""

    path: Path

    @classmethod
    def of(cls, cfg: RunConfig) -> "RunDir":
        """Where the study machinery keeps a run: results/<scale>/runs/<run id>."""
        return cls(results_dir(cfg.scale) / "runs" / cfg.run_id())

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def old_checkpoint(self) -> Path:
        """Where the previous checkpoint waits during a swap (checkpoint.save_checkpoint)."""
        return self.path / ".checkpoint-old"

    @property
    def checkpoints(self) -> tuple[Path, Path]:
        """Where a sealed checkpoint may be, newest first: checkpoint/, then the one a swap leaves."""
        return self.checkpoint, self.old_checkpoint

    @property
    def backbone_file(self) -> Path:
        """A Bit Memory source run's whole backbone (init "bit" loads it)."""
        return self.path / "backbone.safetensors"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @property
    def finished(self) -> bool:
        """The run has its result (written last, atomically)."""
        return self.result_file.is_file()

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_dir()

    def read_result(self, chash: str | None = None) -> dict:
        """The result, refused if damaged or (with `chash`) if it belongs to another config."""
        return read_result(self.path, chash)


def run_dir_for(cfg: RunConfig) -> Path:
    """RunDir.of(cfg).path."""
    return RunDir.of(cfg).path


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    write_text_atomic(RunDir(run_dir).metrics_file,
                      "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink(missing_ok=True)
    except OSError as e:
        raise RunError(f"cannot write to output directory {run_dir}: {e}; choose another --out") from e


def check_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    """Refuse a directory that belongs to another config, or an unfinished run without --resume."""
    cfg_file = RunDir(run_dir).config_file
    if cfg_file.exists():
        try:
            old = read_json(cfg_file).get("config_hash")
        except (OSError, ValueError, AttributeError) as e:
            raise RunError(f"{cfg_file} is unreadable ({e}); the run directory was damaged after it was "
                           "written: delete it, or use another --out") from e
        if old != cfg.hash():
            raise RunError(f"{run_dir} holds a run of another config ({old}, this one is {cfg.hash()}); "
                           "refusing to mix runs: use another --out or delete the directory")
        if not resume:
            raise RunError(f"{run_dir} already holds this run; pass --resume to finish or reuse it, "
                           "or use another --out")


def read_result(run_dir: Path, chash: str | None) -> dict:
    """A finished run's result, refused if damaged or if it belongs to another config (chash None:
    any config's)."""
    path = RunDir(run_dir).result_file
    try:
        result = read_json(path)
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is unreadable ({e}); fpt writes it atomically, so it was damaged "
                       "afterwards: delete it to compute the run again (with --resume)") from e
    if not isinstance(result, dict) or chash is not None and result.get("config_hash") != chash:
        got = result.get("config_hash") if isinstance(result, dict) else None
        raise RunError(f"{path} belongs to config {got}, not {chash}; refusing to report it for this "
                       "run: delete it, or use another --out")
    return result


def result_without_timing(result: dict) -> dict:
    """The numbers of a result, without wall-clock fields (which differ between identical runs)."""
    drop = {"wall_seconds", "run_seconds_this_process", "train_step_seconds", "epoch_step_seconds", "epoch_steps"}
    out = {k: v for k, v in result.items() if k not in drop}
    if "feature_cache" in out:
        out["feature_cache"] = {k: v for k, v in out["feature_cache"].items() if k != "build_seconds"}
    return out


# errnos that mean the disk (or quota) is full or read-only: the run keeps its last checkpoint
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
