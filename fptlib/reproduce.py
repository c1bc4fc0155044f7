"""Execute the numbered notebooks headlessly with papermill, one scale at a time.

A failing notebook does not stop the others; the summary says which failed and why, and the
exit status is non-zero. Runs are cached by config, so a rerun computes only what is missing.
The notebooks come from notebooks/ (or FPT_NOTEBOOKS_DIR, or the `notebooks_dir` argument).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .io import write_json_atomic
from .paths import NOTEBOOKS_DIR, PROJ_ROOT, results_dir


def _notebooks_dir(directory: Path | str | None = None) -> Path:
    return Path(directory or os.environ.get("FPT_NOTEBOOKS_DIR") or NOTEBOOKS_DIR)


def notebooks(only: list[str] | None = None, directory: Path | str | None = None) -> list[Path]:
    """Numbered notebooks (NN_name.ipynb) in order; `only` filters by number or name prefix."""
    directory = _notebooks_dir(directory)
    nbs = sorted(p for p in directory.glob("[0-9][0-9]*.ipynb"))
    if not nbs:
        raise ValueError(f"no numbered notebooks (NN_name.ipynb) in {directory}")
    if only:
        picked = [p for p in nbs if any(p.name.startswith(o) or p.stem == o for o in only)]
        unknown = [o for o in only if not any(p.name.startswith(o) or p.stem == o for p in nbs)]
        if unknown:
            raise ValueError(f"no notebook matches {unknown}; available: {', '.join(p.stem for p in nbs)}")
        nbs = picked
    # 00 (the summary) reads what the others wrote, so it runs last.
    return [p for p in nbs if not p.name.startswith("00")] + [p for p in nbs if p.name.startswith("00")]


def _why(e: Exception) -> str:
    """One line saying why a notebook failed: the exception raised in its cell, where possible."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:  # papermill's PapermillExecutionError: the notebook's own exception
        cell = getattr(e, "exec_count", None)
        text = f"{ename}: {' '.join(str(evalue).split())}"
        return text + (f" (in cell [{cell}])" if cell is not None else "")
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[-1] if lines else ''}".strip()


def reproduce(scale: str = "cpu", only: list[str] | None = None, parameters: dict | None = None,
              log_output: bool = False, notebooks_dir: Path | str | None = None) -> dict:
    """Execute the notebooks in order, each to results/SCALE/executed/; never stops at a failure.

    Returns (and writes to results/SCALE/reproduce_summary.json) one entry per notebook with its
    status and, if it failed, why; `failed` lists the failed ones.
    """
    import papermill as pm
    nbs = notebooks(only, notebooks_dir)
    out_dir = results_dir(scale) / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"scale": scale, "notebooks": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    t0 = time.time()
    for nb in nbs:
        t = time.time()
        entry = {"notebook": nb.name, "executed": str(out_dir / nb.name)}
        print(f"[fpt reproduce] {nb.name} (scale {scale}) ...", flush=True)
        try:
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters={"scale": scale, **(parameters or {})},
                                cwd=str(PROJ_ROOT), progress_bar=False, log_output=log_output,
                                kernel_name="python3")
            entry["status"] = "ok"
        except Exception as e:  # keep going: one broken notebook must not cost the others
            entry["status"] = "failed"
            entry["error"] = _why(e)
        entry["wall_seconds"] = round(time.time() - t, 1)
        print(f"[fpt reproduce] {nb.name}: {entry['status']} in {entry['wall_seconds']} s"
              + (f" - {entry['error']}" if entry["status"] != "ok" else ""), flush=True)
        summary["notebooks"].append(entry)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    summary["failed"] = [e["notebook"] for e in summary["notebooks"] if e["status"] != "ok"]
    summary["cpu_count"] = os.cpu_count()
    write_json_atomic(results_dir(scale) / "reproduce_summary.json", summary)
    ok = len(summary["notebooks"]) - len(summary["failed"])
    print(f"[fpt reproduce] summary: {ok} of {len(summary['notebooks'])} notebook(s) ran"
          + ("" if not summary["failed"] else "; FAILED:"), flush=True)
    for e in summary["notebooks"]:
        if e["status"] != "ok":
            print(f"[fpt reproduce]   {e['notebook']}: {e['error']} (executed copy: {e['executed']})", flush=True)
    return summary
