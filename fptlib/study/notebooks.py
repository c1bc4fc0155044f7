"""Execute the numbered notebooks headlessly with papermill, one scale at a time.

A failing notebook does not stop the others; the summary says which failed and why, and the
exit status is non-zero. Runs are cached by config, so a rerun computes only what is missing.
The notebooks come from notebooks/ (or FPT_NOTEBOOKS_DIR, or the `notebooks_dir` argument).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..io import read_json, write_json_atomic
from ..paths import NOTEBOOKS_DIR, PROJ_ROOT, portable, results_dir
from .catalogue import on_request


def _notebooks_dir(directory: Path | str | None = None) -> Path:
    return Path(directory or os.environ.get("FPT_NOTEBOOKS_DIR") or NOTEBOOKS_DIR)


def notebooks(only: list[str] | None = None, directory: Path | str | None = None) -> list[Path]:
    """Numbered notebooks (NN_name.ipynb) in order; `only` filters by number ("01" is 01_..., not
    01b_...), full name, or name prefix."""
    directory = _notebooks_dir(directory)
    nbs = sorted(p for p in directory.glob("[0-9][0-9]*.ipynb"))
    if not nbs:
        raise ValueError(f"no numbered notebooks (NN_name.ipynb) in {directory}")
    if only:
        def match(p: Path, o: str) -> bool:
            number = p.stem.split("_", 1)[0]
            return o == number if o.isdigit() else (o == number or p.stem == o or p.name.startswith(o))
        picked = [p for p in nbs if any(match(p, o) for o in only)]
        unknown = [o for o in only if not any(match(p, o) for p in nbs)]
        if unknown:
            raise ValueError(f"no notebook matches {unknown}; available: {', '.join(p.stem for p in nbs)}")
        nbs = picked
    # 00 (the summary) reads what the others wrote, so it runs last.
    return [p for p in nbs if not p.name.startswith("00")] + [p for p in nbs if p.name.startswith("00")]


# The smoke scale checks that every notebook runs end to end: one seed, and the shortest sweeps.
SCALE_PARAMETERS = {"smoke": {"seeds": [0], "depths": [1, 2], "lrs": [3e-4, 1e-3]}}


def _declared(nb: Path, wanted: dict) -> dict:
    """The parameters of `wanted` that this notebook declares in its parameters cell (a sweep's `depths`
    means nothing to notebook 01, nor `seeds` to notebook 04, which trains one `seed`)."""
    if not wanted:
        return {}
    import papermill as pm
    declared = pm.inspect_notebook(str(nb))
    return {k: v for k, v in wanted.items() if k in declared}


# A notebook's status in the summary that is not a failure: ran; runs left queued on SLURM (read next
# time); not run at this scale unless named (catalogue.on_request)
NOT_FAILED = ("ok", "pending", "skipped")


def _merged(out_dir: Path, summary: dict) -> dict:
    """This invocation's summary, plus the latest entry of every notebook it did not run (a partial
    `--only` run must not erase the record of the others); `wall_seconds` stays this invocation's."""
    try:
        old = read_json(out_dir / "reproduce_summary.json")
        before = {e["notebook"]: e for e in old.get("notebooks", [])}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        before = {}
    ran = {e["notebook"] for e in summary["notebooks"]}
    kept = [e for n, e in before.items() if n not in ran]
    merged = dict(summary)
    merged["notebooks"] = sorted(kept + summary["notebooks"], key=lambda e: e["notebook"])
    merged["failed"] = [e["notebook"] for e in merged["notebooks"] if e.get("status") not in NOT_FAILED]
    merged["this_invocation"] = sorted(ran)
    return merged


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
        entry = {"notebook": nb.name, "executed": portable(str(out_dir / nb.name))}
        why = "" if only else on_request(nb.stem, scale)
        if why:
            print(f"[fpt reproduce] {nb.name}: skipped at scale {scale} unless named: {why}", flush=True)
            summary["notebooks"].append(entry | {"status": "skipped", "why": why, "wall_seconds": 0.0})
            continue
        print(f"[fpt reproduce] {nb.name} (scale {scale}) ...", flush=True)
        try:
            params = {"scale": scale, **_declared(nb, SCALE_PARAMETERS.get(scale, {}) | (parameters or {}))}
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params,
                                cwd=str(PROJ_ROOT), progress_bar=False, log_output=log_output,
                                kernel_name="python3")
            entry["status"] = "ok"
        except Exception as e:  # keep going: one broken notebook must not cost the others
            # runs submitted to SLURM without waiting: not a failure, the next execution reads them
            entry["status"] = "pending" if getattr(e, "ename", None) == "RunsPending" else "failed"
            entry["error"] = _why(e)
        entry["wall_seconds"] = round(time.time() - t, 1)
        print(f"[fpt reproduce] {nb.name}: {entry['status']} in {entry['wall_seconds']} s"
              + (f" - {entry['error']}" if entry["status"] != "ok" else ""), flush=True)
        summary["notebooks"].append(entry)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    summary["failed"] = [e["notebook"] for e in summary["notebooks"] if e["status"] not in NOT_FAILED]
    summary["cpu_count"] = os.cpu_count()
    write_json_atomic(results_dir(scale) / "reproduce_summary.json", _merged(results_dir(scale), summary))
    skipped = [e["notebook"] for e in summary["notebooks"] if e["status"] == "skipped"]
    ok = len(summary["notebooks"]) - len(summary["failed"]) - len(skipped)
    print(f"[fpt reproduce] summary: {ok} of {len(summary['notebooks'])} notebook(s) ran"
          + (f"; skipped unless named: {', '.join(skipped)}" if skipped else "")
          + ("" if not summary["failed"] else "; FAILED:"), flush=True)
    for e in summary["notebooks"]:
        if e["status"] == "failed":
            print(f"[fpt reproduce]   {e['notebook']}: {e['error']} (executed copy: {e['executed']})", flush=True)
    return summary
