"""`fpt rehearse`: every numbered notebook executed by papermill at scale `paper`, on a machine without
the paper's models or data, with the paper's settings in every respect but two: a step cap (notebook
parameters `steps` and `seeds`) and stand-ins in the places a real machine keeps the real things.

  hub/      a Hugging Face cache (HF_HUB_CACHE, HF_HUB_OFFLINE=1) holding tiny models under the real
            names (standins); `from_pretrained("gpt2")` loads them, random init reads their config.json
  www/      canonical-format dataset files (fixtures), served on 127.0.0.1 (mirror) and fetched with
            `fpt data fetch all --mirror URL --hashes www/checksums.json` into
  data/     a fresh data directory (FPT_DATA_DIR)
  results/, figures/   FPT_RESULTS_DIR, FPT_FIGURES_DIR: the notebooks' runs, tables and figures

Afterwards every run trained is listed with its hub name, where its weights came from and its data
source (rehearsal.md / rehearsal.csv under results/paper/), and every table and figure the catalogue
says a notebook writes is checked for. A failure names the notebook, and the run where one failed."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import read_json, write_text_atomic
from ..models import weights_source
from ..study.catalogue import NOTEBOOKS, notebook_runs
from ..study.notebooks import reproduce
from ..study.render.markdown import frame_markdown
from ..training import RunDir
from . import fixtures, mirror, standins

SCALE = "paper"
STEP_CAP = 2


@dataclass(frozen=True)
class Layout:
    root: Path

    hub = property(lambda self: self.root / "hub")
    www = property(lambda self: self.root / "www")
    data = property(lambda self: self.root / "data")
    results = property(lambda self: self.root / "results")
    figures = property(lambda self: self.root / "figures")

    @property
    def env(self) -> dict[str, str]:
        """What the notebooks' kernels see: the stand-in locations, offline, loopback not proxied."""
        loopback = "127.0.0.1,localhost"
        return {"HF_HUB_CACHE": str(self.hub), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "FPT_DATA_DIR": str(self.data), "FPT_RESULTS_DIR": str(self.results),
                "FPT_FIGURES_DIR": str(self.figures), "NO_PROXY": loopback, "no_proxy": loopback}


@contextlib.contextmanager
def environment(env: dict[str, str]):
    """os.environ with `env` set for the with-block (papermill's kernels inherit it), then as it was."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prepare(layout: Layout, log=print) -> None:
    """The stand-in hub cache and the fixture files (both reproducible: seeded)."""
    if not layout.hub.is_dir():
        log(f"[rehearse] writing tiny stand-ins under {len(standins.STANDINS)} hub names into {layout.hub}")
        standins.write_hub_cache(layout.hub)
    log(f"[rehearse] writing canonical-format dataset files into {layout.www}")
    fixtures.write(layout.www)


def fetch_data(layout: Layout, log=print) -> str:
    """`fpt data fetch all` from the loopback mirror into the fresh data directory; its output."""
    with mirror.serve(layout.www) as url, environment(layout.env):
        log(f"[rehearse] mirror {url} serving {layout.www}")
        cmd = [sys.executable, "-c", "from fptlib.cli import main; raise SystemExit(main())", "data", "fetch", "all",
               "--mirror", url, "--hashes", str(layout.www / "checksums.json"), "--data-dir", str(layout.data),
               "--no-progress"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode:
        raise RuntimeError(f"fpt data fetch from the mirror failed (exit {proc.returncode}):\n{out}")
    return out


def runs_trained(layout: Layout, steps: int, only: list[str] | None = None) -> pd.DataFrame:
    """Every run the rehearsed notebooks used, in notebook order: its row, hub name, weights' source, data
    source and test accuracy (from its result.json), and the notebook that trained it first."""
    lines, seen = [], set()
    with environment(layout.env):  # the data and results directories (the hub cache is read at import)
        by_nb = notebook_runs(SCALE, steps=steps, seeds=[0])
        sources = {}
        for key, runs in by_nb.items():
            if only and key not in only:
                continue
            for r in runs:
                cfg = r.config
                if cfg.run_id() in seen:
                    continue
                seen.add(cfg.run_id())
                res_path = RunDir(layout.results / SCALE / "runs" / cfg.run_id()).result_file
                res = read_json(res_path) if res_path.is_file() else {}
                if cfg.backbone not in sources:
                    sources[cfg.backbone] = weights_source(cfg.backbone)
                lines.append({"notebook": key, "row": r.row, "task": cfg.task, "backbone": cfg.backbone,
                              "init": cfg.init, "weights": sources[cfg.backbone] if cfg.init == "pretrained" else
                              f"architecture of {sources[cfg.backbone]}",
                              "data": (res.get("task_info") or {}).get("source", "generated, seeded") if res
                              else "(no result)",
                              "steps": res.get("steps"), "test_accuracy": res.get("test_accuracy"),
                              "run_id": cfg.run_id(), "done": bool(res)})
    attention = layout.results / SCALE / "attention"
    for p in sorted(attention.glob("*.json")) if attention.is_dir() and (not only or "04" in only) else []:
        lines.append({"notebook": "04", "row": "attention model", "task": p.stem.split("__")[0],
                      "backbone": p.stem.split("__")[1], "init": "pretrained", "weights": "", "data": "generated",
                      "steps": None, "test_accuracy": None, "run_id": p.stem, "done": True})
    return pd.DataFrame(lines)


def _runs_in_child(layout: Layout, steps: int, only: list[str] | None) -> pd.DataFrame:
    """runs_trained in a fresh process: the Hugging Face libraries read their cache location once, at
    import, so only a process started with the stand-in environment resolves names as the kernels did."""
    out = layout.results / SCALE / "rehearsal.csv"
    code = ("import sys; from pathlib import Path; from fptlib.rehearse.run import Layout, runs_trained; "
            "runs_trained(Layout(Path(sys.argv[1])), int(sys.argv[2]), sys.argv[3:] or None).to_csv(sys.argv[1] + "
            f"'/results/{SCALE}/rehearsal.csv', index=False)")
    proc = subprocess.run([sys.executable, "-c", code, str(layout.root), str(steps), *(only or [])],
                          env=os.environ | layout.env, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"listing the rehearsal's runs failed:\n{proc.stderr[-3000:]}")
    return pd.read_csv(out, keep_default_na=False, na_values=[""], dtype={"notebook": str})


def missing_outputs(layout: Layout, only: list[str] | None = None) -> dict[str, list[str]]:
    """Per notebook, the tables and figures the catalogue says it writes that are not there."""
    out = {}
    for nb in NOTEBOOKS:
        if only and nb.key not in only:
            continue
        tables, figures = nb.outputs(SCALE)
        gone = [f"tables/{t}.csv" for t in tables
                if not (layout.results / SCALE / "tables" / f"{t}.csv").is_file()]
        gone += [f"figures/{f}" for f in figures if not (layout.figures / SCALE / f).is_file()]
        if gone:
            out[nb.stem] = gone
    return out


def rehearse(workdir: Path | str, only: list[str] | None = None, steps: int = STEP_CAP, log=print) -> dict:
    """Prepare, fetch, execute the notebooks at scale `paper`, list the runs and check the outputs.
    Returns {"ok", "failed" (notebook: why), "missing" (notebook: files), "runs" (DataFrame), "seconds"}."""
    t0 = time.time()
    layout = Layout(Path(workdir).resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    prepare(layout, log)
    log(fetch_data(layout, log))
    with environment(layout.env):
        summary = reproduce(SCALE, only=only, parameters={"steps": steps, "seeds": [0], "progress": False})
    runs = _runs_in_child(layout, steps, only)
    missing = missing_outputs(layout, only)
    failed = {e["notebook"]: e.get("error", "") for e in summary["notebooks"] if e["status"] != "ok"}
    report = _report(runs, summary, failed, missing, time.time() - t0)
    write_text_atomic(layout.results / SCALE / "rehearsal.md", report)
    log(report)
    return {"ok": not failed and not missing, "failed": failed, "missing": missing, "runs": runs,
            "seconds": round(time.time() - t0, 1), "layout": layout}


def _report(runs: pd.DataFrame, summary: dict, failed: dict, missing: dict, seconds: float) -> str:
    trained = runs[runs.done] if not runs.empty else runs
    lines = [f"# Rehearsal of scale `{SCALE}`: {len(summary['notebooks'])} notebook(s), {len(trained)} run(s) "
             f"trained, {seconds:.0f} s", "",
             "Every notebook executed by papermill at the paper's settings but a step cap and one seed, with "
             "tiny stand-ins under the real hub names and canonical-format fixture data fetched from a "
             "loopback mirror.", "", "## Notebooks", ""]
    lines += [f"- {e['notebook']}: {e['status']} in {e['wall_seconds']} s"
              + (f" - {failed[e['notebook']]}" if e["notebook"] in failed else "")
              + (f"; missing {', '.join(missing[e['notebook'].removesuffix('.ipynb')])}"
                 if e["notebook"].removesuffix(".ipynb") in missing else "") for e in summary["notebooks"]]
    cols = ["notebook", "row", "task", "backbone", "init", "weights", "data", "steps", "test_accuracy"]
    shown = runs[cols].astype({"steps": "Int64"}) if not runs.empty else runs
    lines += ["", "## Runs", "", frame_markdown(shown) if not runs.empty else "(none)", ""]
    return "\n".join(lines)
