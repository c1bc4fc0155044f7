"""Execute the numbered notebooks headlessly with papermill, one scale at a time.

A failing notebook does not stop the others; the summary says which failed and why, and the
exit status is non-zero. Runs are cached by config, so a rerun computes only what is missing.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .io import write_json_atomic
from .paths import NOTEBOOKS_DIR, PROJ_ROOT, results_dir


def notebooks(only: list[str] | None = None) -> list[Path]:
    """Numbered notebooks (NN_name.ipynb) in order; `only` filters by number or name prefix."""
    nbs = sorted(p for p in NOTEBOOKS_DIR.glob("[0-9][0-9]*.ipynb"))
    if only:
        picked = [p for p in nbs if any(p.name.startswith(o) or p.stem == o for o in only)]
        unknown = [o for o in only if not any(p.name.startswith(o) or p.stem == o for p in nbs)]
        if unknown:
            raise ValueError(f"no notebook matches {unknown}; available: {', '.join(p.stem for p in nbs)}")
        nbs = picked
    # 00 (the summary) reads what the others wrote, so it runs last.
    return [p for p in nbs if not p.name.startswith("00")] + [p for p in nbs if p.name.startswith("00")]


def reproduce(scale: str = "cpu", only: list[str] | None = None, parameters: dict | None = None,
              log_output: bool = False) -> dict:
    import papermill as pm
    out_dir = results_dir(scale) / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"scale": scale, "notebooks": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    t0 = time.time()
    for nb in notebooks(only):
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
            entry["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        entry["wall_seconds"] = round(time.time() - t, 1)
        print(f"[fpt reproduce] {nb.name}: {entry['status']} in {entry['wall_seconds']} s"
              + (f" - {entry['error']}" if entry["status"] != "ok" else ""), flush=True)
        summary["notebooks"].append(entry)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    summary["failed"] = [e["notebook"] for e in summary["notebooks"] if e["status"] != "ok"]
    summary["cpu_count"] = os.cpu_count()
    write_json_atomic(results_dir(scale) / "reproduce_summary.json", summary)
    return summary
