"""What each notebook costs to compute, from the runs' result files (nothing is run)."""
from __future__ import annotations

import heapq

import pandas as pd

from ..io import read_json
from ..paths import results_dir
from ..training import RunDir
from .catalogue import notebook_runs
from .results.tables import load_run


def schedule_seconds(durations: list[float], workers: int) -> float:
    """Wall time of jobs handed out in order to `workers` processes, each taking the next when free
    (what runs.execute does with its runs)."""
    free = [0.0] * max(1, workers)
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def compute_times(scale: str, workers: int = 2) -> pd.DataFrame:
    """What each notebook costs on a machine that has none of its runs: the runs it computes first (a
    run shared with an earlier notebook is counted there), the sum of their training wall time, read
    from the result files (nothing is run), and the notebook's wall time with `workers` runs side by
    side, scheduled from those times. Notebook 04's two models (trained one after the other in the
    notebook) are read from its cache."""
    def line(nb, used, new, secs, parallel=True):
        return {"notebook": nb, "runs": used, "new_runs": new, "computed": len(secs),
                "train_seconds": round(sum(secs), 1), "longest_run_seconds": max(secs, default=0.0),
                "side_by_side_seconds": round(schedule_seconds(secs, workers if parallel else 1), 1)}

    claimed: set = set()
    out = []
    for nb, runs in notebook_runs(scale).items():
        used = [RunDir.of(r.config).path for r in runs]
        new = [d for d in used if d not in claimed]
        claimed.update(new)
        done = [load_run(d) for d in new if RunDir(d).finished]
        # wall_seconds leaves out the one-off feature-cache build of cached output-only runs
        out.append(line(nb, len(used), len(new), [r["wall_seconds"] + (r.get("feature_cache") or {}).get(
            "build_seconds", 0.0) for r in done]))
    # 04 trains its own two models (attention maps need eager attention), cached beside the runs
    info = [read_json(p) for p in sorted((results_dir(scale) / "attention").glob("*.json"))]
    out.append(line("04", len(info), len(info), [float(i.get("train_seconds") or 0) for i in info], parallel=False))
    return pd.DataFrame(out).sort_values("notebook", ignore_index=True)
