"""Sealed checkpoints: built beside the current one, sealed by trainer_state.json (written last, with
the size and sha256 of every other file) and swapped in by renames, so at every instant
`checkpoint/` or `.checkpoint-old/` is complete. A checkpoint that fails its seal is never loaded."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..io import read_json, sha256_file, write_json_atomic
from .errors import RunError
from .faults import fault
from .rundir import RunDir


def discard(path: Path) -> None:
    """Remove a directory so that no half-deleted copy is ever left under its name: rename, then delete."""
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name.lstrip('.')}-{os.getpid()}-{time.time_ns()}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(acc, run_dir: Path, state: dict) -> None:
    """Write checkpoint/ atomically: build a sibling directory, seal it, then swap it in.

    The seal is trainer_state.json, written last, with the size and sha256 of every other file.
    Invariant: at every instant checkpoint/ or .checkpoint-old/ is a complete, sealed checkpoint.
    With several processes every one calls this: each saves its random state into the new checkpoint,
    and the main process (alone) writes the model and optimizer, seals and swaps it in.
    """
    final, old = RunDir(run_dir).checkpoints
    tmp = run_dir / f".checkpoint-{state['step']}.tmp"
    main = acc.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()  # (no-op for one process)
    try:
        acc.save_state(str(tmp))
        acc.wait_for_everyone()  # every process's files are in before the seal lists them
        if main:
            files = {str(p.relative_to(tmp)): [p.stat().st_size, sha256_file(p)]
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            write_json_atomic(tmp / "trainer_state.json", {**state, "files": files})
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: give the space back, keep the old one
        raise
    if not main:
        return
    fault("checkpoint-written")
    if final.exists():
        discard(old)
        final.rename(old)
        fault("checkpoint-swap")
    # else: resumed from .checkpoint-old after a kill between the renames; it stays until this lands
    tmp.rename(final)
    discard(old)


def checkpoint_keys(ckpt: Path) -> set[str]:
    from safetensors import safe_open
    files = list(ckpt.glob("model*.safetensors"))
    if not files:
        raise RunError(f"checkpoint in {ckpt} has no model file; delete it to restart the run")
    try:
        with safe_open(str(files[0]), framework="pt") as f:
            return {k.removeprefix("module.") for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise RunError(f"checkpoint file {files[0]} is unreadable ({e}); delete {ckpt} to restart the run") from e


STATE_KEYS = ("config_hash", "step", "history", "best_val", "best_step", "evals_since_best", "elapsed",
               "last_finite_loss", "frozen_fingerprint", "stopped")


def _checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint directory cannot be trusted, or None if its seal holds."""
    seal = ckpt / "trainer_state.json"
    if not seal.exists():
        return "trainer_state.json is missing (the checkpoint was never completed)"
    try:
        state = read_json(seal)
    except (OSError, ValueError) as e:
        return f"trainer_state.json is unreadable ({e})"
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        return "trainer_state.json lacks training-state fields"
    files = state.get("files")
    if files is None:  # written before checkpoints were sealed: at least the model file must open
        try:
            checkpoint_keys(ckpt)
        except RunError as e:
            return str(e)
        return None
    try:
        listed = [(str(name), int(size), str(digest)) for name, (size, digest) in files.items()]
    except (AttributeError, TypeError, ValueError):
        return "trainer_state.json has a malformed file list"
    if not any(name.endswith(".safetensors") for name, _, _ in listed):
        return "the seal lists no model file"
    for name, size, digest in listed:
        p = ckpt / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != size:
            return f"{name} has {p.stat().st_size} bytes, not the {size} it was written with (truncated?)"
        if sha256_file(p) != digest:
            return f"{name} does not match the sha256 it was written with"
    return None


def find_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose seal holds, and what is wrong with those skipped.

    A kill between the two renames of a swap leaves only .checkpoint-old: still a complete checkpoint.
    """
    problems = []
    for cand in RunDir(run_dir).checkpoints:
        if not cand.exists():
            continue
        why = _checkpoint_problem(cand)
        if why is None:
            return cand, problems
        problems.append(f"{cand}: {why}")
    return None, problems


def clean_leftovers(run_dir: Path, checkpoints: bool = False) -> None:
    """Remove what killed processes left behind: unswapped checkpoints, trash, temporary files.
    Only called with the run directory's lock held, so nothing here is being written."""
    sealed = {p.name for p in RunDir(run_dir).checkpoints}
    for p in run_dir.iterdir():
        n = p.name
        if p.is_dir() and ((n.startswith(".checkpoint-") and n.endswith(".tmp")) or n.startswith(".trash-")
                           or (checkpoints and n in sealed)):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and n.startswith(".") and n.endswith(".tmp"):
            p.unlink(missing_ok=True)
