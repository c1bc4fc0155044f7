"""`fpt plan`: every run a scale's notebooks would compute, its shape and its cost, before anything
trains. Runs are deduplicated across notebooks as execution does (a run shared with an earlier
notebook is counted there); a run whose data or weights are missing here is still planned, so the
plan is the study with every dataset present. `calibrate` times a few real training steps of each
distinct shape on this machine and multiplies by the step budget: the training steps' cost, where
convergence stopping (patience) may end a run early. Validation passes are not timed; at the paper's
settings they add 1-2 % (Bit Memory) to a third to a half again (the 1,024-token tasks)."""
from __future__ import annotations

import time

import pandas as pd
import torch

from ..config import PRESETS, RunConfig
from ..data import task_class
from ..paths import results_dir
from ..training import run_dir_for
from .catalogue import notebook_runs
from .tables import frame_markdown

SHAPE_KEYS = ("task", "backbone", "n_layers", "tokens", "d_in", "batch_size", "grad_accum", "trained",
              "cache_features", "precision")


def _line(notebook: str, row: str, cfg: RunConfig) -> dict:
    tokens, d_in = task_class(cfg.task).planned_shape(cfg.task_options)[:2]
    return {"notebook": notebook, "row": row, "run_id": cfg.run_id(), "task": cfg.task, "backbone": cfg.backbone,
            "init": cfg.init,
            "n_layers": cfg.n_layers or 0, "trained": "+".join(cfg.train), "seed": cfg.seed, "tokens": tokens,
            "d_in": d_in, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "steps": cfg.steps,
            "patience": cfg.patience, "cache_features": cfg.cache_features, "precision": cfg.precision,
            "done": (run_dir_for(cfg) / "result.json").is_file(), "config": cfg}


def plan(scale: str, only: list[str] | None = None) -> pd.DataFrame:
    """One line per run, in notebook order, each counted by the first notebook that computes it."""
    seen: set[str] = set()
    out = []
    for nb, runs in notebook_runs(scale, planned=True).items():
        for r in runs:
            if r.config.run_id() not in seen:
                seen.add(r.config.run_id())
                out.append(_line(nb, r.row, r.config))
    df = pd.DataFrame(out)
    if only:
        df = df[df.notebook.isin(only)].reset_index(drop=True)
    return df


def step_seconds(cfg: RunConfig, n_steps: int = 3) -> float:
    """Median seconds of one training step of this run's shape on this machine: the run's model (random
    init from its architecture, so nothing is downloaded) on random inputs of the task's shape."""
    from ..models import FPT, BackboneSpec, build_backbone
    from ..training import accelerator, train_step
    shape = task_class(cfg.task).planned_shape(cfg.task_options)
    bb = build_backbone(BackboneSpec(cfg.backbone, init="random", n_layers=cfg.n_layers, lstm_width=cfg.lstm_width,
                                     lstm_layers=cfg.lstm_layers, lstm_residual=cfg.lstm_residual,
                                     lstm_positions=cfg.lstm_positions, attention_dropout=cfg.attention_dropout),
                        cfg.seed)
    model = FPT(bb, input_kind=shape.input_kind, d_in=shape.d_in, n_out_tokens=shape.n_out_tokens,
                out_dim=shape.out_dim)
    model.set_trainable(cfg.train)
    acc = accelerator(cfg.precision)
    params = [p for p in model.parameters() if p.requires_grad]
    model, opt = acc.prepare(model, torch.optim.Adam(params, lr=cfg.lr))
    g = torch.Generator().manual_seed(0)
    b = cfg.batch_size
    x = (torch.randint(0, shape.d_in, (b, shape.tokens), generator=g) if shape.input_kind == "tokens"
         else torch.randn(b, shape.tokens, shape.d_in, generator=g))
    decisions = shape.n_out_tokens * shape.out_dim // shape.n_classes
    batch = {"x": x.to(acc.device), "y": torch.randint(0, shape.n_classes, (b, decisions), generator=g).to(acc.device)}
    times = []
    for i in range(n_steps + 1):  # the first step warms up and is not counted
        t = time.perf_counter()
        losses = train_step(acc, model, opt, params, [batch] * cfg.grad_accum, cfg.grad_accum, shape.n_classes,
                            cfg.clip_norm)
        float(losses[-1])  # waits for the device
        if i:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def calibrate(runs: pd.DataFrame, n_steps: int = 3, progress: bool = True) -> pd.DataFrame:
    """runs with `step_seconds` (per distinct shape, measured here) and `seconds` (times the budget)."""
    from tqdm.auto import tqdm
    shapes = runs.drop_duplicates(list(SHAPE_KEYS))
    measured = {}
    for _, r in tqdm(list(shapes.iterrows()), desc="calibrating shapes", disable=not progress):
        measured[tuple(r[k] for k in SHAPE_KEYS)] = step_seconds(r.config, n_steps)
    out = runs.copy()
    out["step_seconds"] = [measured[tuple(r[k] for k in SHAPE_KEYS)] for _, r in runs.iterrows()]
    out["seconds"] = out.step_seconds * out.steps
    return out


def totals(runs: pd.DataFrame) -> pd.DataFrame:
    """Per notebook and for the study: runs, gradient steps, runs done, and seconds where calibrated."""
    agg = {"runs": ("run_id", "count"), "steps": ("steps", "sum"), "done": ("done", "sum")}
    if "seconds" in runs:
        agg["seconds"] = ("seconds", "sum")
    t = runs.groupby("notebook", sort=False).agg(**agg).reset_index()
    total = {"notebook": "all", **{k: t[k].sum() for k in t.columns if k != "notebook"}}
    return pd.concat([t, pd.DataFrame([total])], ignore_index=True)


def markdown(runs: pd.DataFrame, scale: str) -> str:
    t = totals(runs)
    if "seconds" in t:
        t["hours"] = (t.seconds / 3600).round(2)
        t = t.drop(columns="seconds")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    lines = [f"Plan of scale `{scale}` ({PRESETS[scale]['about']}): {len(runs)} runs, {int(runs.steps.sum()):,} "
             "gradient steps" + (f"; calibrated on this machine ({device}, {torch.get_num_threads()} threads): "
                                 f"{runs.seconds.sum() / 3600:.1f} hours of training steps (convergence stopping ends "
                                 "runs early; validation passes are not timed)" if "seconds" in runs else "") + ".",
             "",
             frame_markdown(t)]
    if "step_seconds" in runs:
        shapes = runs.drop_duplicates(list(SHAPE_KEYS))[list(SHAPE_KEYS) + ["step_seconds"]]
        lines += ["", "Seconds per training step of each distinct shape:", "",
                  frame_markdown(shapes.round({"step_seconds": 4}))]
    return "\n".join(lines) + "\n"


def save(runs: pd.DataFrame, scale: str) -> dict:
    from ..io import write_text_atomic
    d = results_dir(scale) / "plan"
    paths = {"csv": d / "plan.csv", "md": d / "plan.md"}
    write_text_atomic(paths["csv"], runs.drop(columns="config").to_csv(index=False))
    write_text_atomic(paths["md"], markdown(runs, scale))
    return paths
