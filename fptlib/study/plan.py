"""`fpt plan`: every run a scale's notebooks would compute, its shape and its cost, before anything
trains. Runs are deduplicated across notebooks as execution does (a run shared with an earlier
notebook is counted there); a run whose data or weights are missing here is still planned, so the
plan is the study with every dataset present. `calibrate` times a few real training steps of each
distinct shape on this machine and multiplies by the step budget: the training steps' cost, where
convergence stopping (patience) may end a run early. Validation passes are not timed; at the paper's
settings they add 1-2 % (Bit Memory) to a third to a half again (the 1,024-token tasks). Priced on a GPU
on paper instead (`fpt plan --gpu`, study.pricing), every run's FLOPs, hours and memory come from
fptlib.models.cost; `measure_step` checks that model against a real step here."""
from __future__ import annotations

import time

import pandas as pd
import torch

from ..config import PRESETS, RunConfig
from ..data import planned_shape
from ..models import cost
from ..paths import results_dir
from ..training import RunDir
from .catalogue import notebook_runs
from .render.markdown import frame_markdown

SHAPE_KEYS = ("task", "backbone", "n_layers", "tokens", "d_in", "batch_size", "grad_accum", "trained",
              "cache_features", "precision")


def _line(notebook: str, row: str, cfg: RunConfig) -> dict:
    tokens, d_in = planned_shape(cfg.task, cfg.task_options, cfg.objective)[:2]
    return {"notebook": notebook, "row": row, "run_id": cfg.run_id(), "task": cfg.task, "backbone": cfg.backbone,
            "init": cfg.init,
            "n_layers": cfg.n_layers or 0, "trained": "+".join(cfg.train), "seed": cfg.seed, "tokens": tokens,
            "d_in": d_in, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "steps": cfg.steps,
            "patience": cfg.patience, "cache_features": cfg.cache_features, "precision": cfg.precision,
            "done": RunDir.of(cfg).finished, "config": cfg}


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


def training_step(cfg: RunConfig):
    """One training step of this run's shape on this machine, as a function to call: the run's model
    (random init from its architecture, so nothing is downloaded) on random inputs of the task's shape.
    It returns the last micro-batch's loss, waited for."""
    from ..models import FPT, BackboneSpec, build_backbone
    from ..training import accelerator, train_step
    shape = planned_shape(cfg.task, cfg.task_options, cfg.objective)
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

    def step() -> float:
        losses = train_step(acc, model, opt, params, [batch] * cfg.grad_accum, cfg.grad_accum, shape.n_classes,
                            cfg.clip_norm)
        return float(losses[-1])  # waits for the device
    return step


def step_seconds(cfg: RunConfig, n_steps: int = 3) -> float:
    """Median seconds of one training step of this run's shape on this machine (`training_step`)."""
    step = training_step(cfg)
    times = []
    for i in range(n_steps + 1):  # the first step warms up and is not counted
        t = time.perf_counter()
        step()
        if i:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


MATRIX_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def measure_step(cfg: RunConfig) -> dict:
    """One training step of the run's shape on this machine (`training_step`, after one step that
    creates Adam's state, as every later step finds it), measured beside the cost model's figures for it:
    `flops` as torch's profiler counts the matrix products (MATRIX_OPS) against cost.step_flops, and
    `working`, the most bytes torch's allocator held at once above what it held before the step (on a
    GPU its peak statistic, on a CPU the profiler's memory events), against step_memory's `working`."""
    from torch.profiler import ProfilerActivity, profile

    from ..runs import sizing
    step = training_step(cfg)
    step()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=not cuda, with_flops=True) as prof:
        step()
    held = torch.cuda.max_memory_allocated() - before if cuda else _most_held(prof)
    counted = sum(e.flops for e in prof.events() if e.name in MATRIX_OPS and e.flops)
    d, s = sizing.run_dims(cfg), sizing.step_shape(cfg)
    model = cost.step_memory(d, s, "cuda" if cuda else "cpu", cfg.precision, sizing.attention_dropout(cfg))
    return {"flops_measured": counted, "flops_model": cfg.grad_accum * cost.step_flops(d, s)["step"],
            "working_measured": held, "working_model": model["working"]}


def _most_held(prof) -> int:
    """The most bytes live at once, from a profile's allocation (+) and free (-) events in time order."""
    live = held = 0
    for _, nbytes in sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                            if e.name() == "[memory]"):
        live += nbytes
        held = max(held, live)
    return held


def converged_steps(scale: str) -> dict[str, list[int]]:
    """Per task, the steps of this scale's finished runs that patience stopped (results/<scale>/runs): what a
    run trained to convergence is expected to take, where its cap is only a bound."""
    out: dict[str, list[int]] = {}
    for f in sorted((results_dir(scale) / "runs").glob("*/result.json")):
        res = RunDir(f.parent).read_result()
        if res.get("stopped") == "converged":
            out.setdefault(res["task"], []).append(int(res["steps"]))
    return out


def expected_steps(runs: pd.DataFrame, seen: dict[str, list[int]]) -> pd.DataFrame:
    """runs with `expected_steps`: a run with patience, the median steps of its task's runs that patience
    stopped (`seen`, from `converged_steps`; its cap where none has); any other run, its budget."""
    out = runs.copy()
    out["expected_steps"] = [int(min(pd.Series(seen[r.task]).median(), r.steps)) if r.patience and r.task in seen
                             else r.steps for r in runs.itertuples()]
    out.attrs["converged_from"] = {t: len(v) for t, v in seen.items() if t in set(runs.task)}
    return out


def calibrate(runs: pd.DataFrame, n_steps: int = 3, progress: bool = True) -> pd.DataFrame:
    """runs with `step_seconds` (per distinct shape, measured here), `seconds` (times the budget) and, where
    `expected_steps` is given, `expected_seconds`."""
    from tqdm.auto import tqdm
    shapes = runs.drop_duplicates(list(SHAPE_KEYS))
    measured = {}
    for _, r in tqdm(list(shapes.iterrows()), desc="calibrating shapes", disable=not progress):
        measured[tuple(r[k] for k in SHAPE_KEYS)] = step_seconds(r.config, n_steps)
    out = runs.copy()
    out["step_seconds"] = [measured[tuple(r[k] for k in SHAPE_KEYS)] for _, r in runs.iterrows()]
    out["seconds"] = out.step_seconds * out.steps
    if "expected_steps" in out:
        out["expected_seconds"] = out.step_seconds * out.expected_steps
    return out


# Columns `pricing.price` adds, and how a notebook's runs add up: sums, the largest run, the fewest per GPU.
PRICED = {"pflop": "sum", "hours_at_peak": "sum", "hours_at_utilisation": "sum", "peak_gib": "max",
          "runs_per_gpu": "min"}


def totals(runs: pd.DataFrame) -> pd.DataFrame:
    """Per notebook and for the study: runs, gradient steps, runs done, seconds where calibrated, and
    where priced on a GPU (`pricing.price`) its FLOPs, hours, largest run and runs per GPU."""
    how = {"runs": "sum", "steps": "sum", "expected_steps": "sum", "done": "sum", "seconds": "sum",
           "expected_seconds": "sum"} | PRICED
    agg = {"runs": ("run_id", "count"), "steps": ("steps", "sum"), "done": ("done", "sum")}
    agg |= {k: (k, how[k]) for k in ("expected_steps", "seconds", "expected_seconds", *PRICED) if k in runs}
    t = runs.groupby("notebook", sort=False).agg(**agg).reset_index()
    total = {"notebook": "all", **{k: t[k].agg(how[k]) for k in t.columns if k != "notebook"}}
    return pd.concat([t, pd.DataFrame([total])], ignore_index=True)


def markdown(runs: pd.DataFrame, scale: str) -> str:
    t = totals(runs)
    for col, name in (("seconds", "hours"), ("expected_seconds", "expected_hours")):
        if col in t:
            t[name] = (t[col] / 3600).round(2)
            t = t.drop(columns=col)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    lines = [f"Plan of scale `{scale}` ({PRESETS[scale]['about']}): {len(runs)} runs, {int(runs.steps.sum()):,} "
             "gradient steps" + (f"; calibrated on this machine ({device}, {torch.get_num_threads()} threads): "
                                 f"{runs.seconds.sum() / 3600:.1f} hours of training steps (convergence stopping ends "
                                 "runs early; validation passes are not timed)" if "seconds" in runs else "") + ".",
             "",
             frame_markdown(t)]
    if "expected_steps" in runs:
        seen = runs.attrs.get("converged_from", {})
        lines += ["", "`expected_steps`: a run that stops by patience at the median steps of its task's runs that "
                  "patience stopped here (" + (", ".join(f"{t} {n}" for t, n in seen.items()) or "none yet")
                  + " runs), else at its cap; every other run at its budget" + (
                      "; `expected_hours` times them by the calibrated step." if "expected_seconds" in runs
                      else ".")]
    if "pflop" in runs:
        from .pricing import describe, priced_table
        lines[1:] = ["", describe(runs), "", frame_markdown(priced_table(t, runs.attrs["utilisation"]))]
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
