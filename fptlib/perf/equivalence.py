"""`fpt bench --equivalence`: whether runs trained in bf16 autocast reach the same test accuracy as the
same runs in fp32, decided by the study's own noise rule. The two precisions are separate run identities
(precision is part of the config hash), trained side by side like any study's runs; the fp32 ones are the
committed FPT runs of notebook 01, so only the bf16 ones train. Writes precision_equivalence.{json,md}."""
from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone
from pathlib import Path

from ..config import RunConfig, resolve

TASKS = ("mnist", "listops")
SEEDS = (0, 1, 2)
PRECISIONS = ("fp32", "bf16")


def planned(tasks=TASKS, seeds=SEEDS, scale: str = "cpu") -> list:
    """The runs compared: FPT at the scale's settings, each seed in each precision."""
    from ..runs import PlannedRun
    return [PlannedRun(p, resolve(RunConfig(task=t, scale=scale, seed=s, precision=p)))
            for t in tasks for p in PRECISIONS for s in seeds]


def verdicts(df, spread: dict) -> list[dict]:
    """Per task: each precision's test accuracies (%), their means and stds, and whether bf16 and fp32 differ
    beyond the noise rule of the glance: 2 × the task's pooled seed spread × √(1/n₁ + 1/n₂)."""
    from ..study.results.compare import NOISE_BAND
    out = []
    for task, g in df.groupby("task", sort=False):
        acc = {p: [100 * float(a) for a in g[g.row == p].sort_values("seed").test_accuracy] for p in PRECISIONS}
        mean = {p: statistics.fmean(v) for p, v in acc.items()}
        line = {"task": task, "seeds": sorted(int(s) for s in g.seed.unique()), "accuracy": acc, "mean": mean,
                "std": {p: statistics.stdev(v) if len(v) > 1 else math.nan for p, v in acc.items()},
                "difference": mean["bf16"] - mean["fp32"]}
        if task in spread:
            n = [len(acc[p]) for p in PRECISIONS]
            line["spread"] = spread[task][0]
            line["band"] = NOISE_BAND * spread[task][0] * math.sqrt(1 / n[0] + 1 / n[1])
            line["verdict"] = "level (within noise)" if abs(line["difference"]) <= line["band"] else "decided"
        else:
            line["verdict"] = "noise not measured"
        out.append(line)
    return out


def markdown(record: dict) -> str:
    import pandas as pd

    from ..study.render.markdown import frame_markdown
    lines = [f"bf16 autocast against fp32, {record['scale']} scale, FPT (MiniLM), seeds "
             f"{', '.join(map(str, record['seeds']))}; test accuracy (%) on the full test split. Two precisions are "
             "level when their means differ by at most 2 × the task's pooled seed spread × √(1/3 + 1/3) (the "
             "glance's rule; the spread is pooled over every committed line of 2+ seeds of that task whose runs stop "
             "at a fixed budget, as these do).", ""]
    cells = []
    for v in record["tasks"]:
        each = {p: ", ".join(f"{a:.1f}" for a in v["accuracy"][p]) for p in PRECISIONS}
        ms = {p: f"{v['mean'][p]:.1f} ± {v['std'][p]:.1f}" for p in PRECISIONS}
        band = f"±{v['band']:.1f}" if "band" in v else "—"
        cells.append([v["task"], each["fp32"], each["bf16"], ms["fp32"], ms["bf16"], f"{v['difference']:+.1f}", band,
                      v["verdict"]])
    columns = ["task", "fp32 (each seed)", "bf16 (each seed)", "fp32 mean ± std", "bf16 mean ± std", "bf16 − fp32",
               "noise band", "verdict"]
    return "\n".join(lines + [frame_markdown(pd.DataFrame(cells, columns=columns))]) + "\n"


def run(out_root: Path, tasks=TASKS, seeds=SEEDS, scale: str = "cpu", progress: bool = True) -> dict:
    from ..io import write_json_atomic, write_text_atomic
    from ..runs import execute
    from ..study.report.gallery import summary_table
    from ..study.results.compare import protocol_lines, seed_spread
    df = execute(planned(tasks, seeds, scale), progress=progress)
    record = {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "scale": scale,
              "seeds": list(seeds), "runs": {Path(r.run_dir).name: r.row for r in df.itertuples()},
              "tasks": verdicts(df, seed_spread(protocol_lines(summary_table(scale), "budget")))}
    write_json_atomic(out_root / "precision_equivalence.json", record)
    write_text_atomic(out_root / "precision_equivalence.md", markdown(record))
    return record
