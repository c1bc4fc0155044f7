"""What a finished run records: its numbers on the full held-out splits, its identity (config,
data hash, numerics version) and where it departs from the paper's settings.

NUMERICS_VERSION is raised by hand whenever a change alters the numbers a config produces (a new
random stream, another reduction order, a fixed bug). The golden runs under tests/golden/ catch such a
change: when they fail, raise the version and recompute the results it affects. Results written
before the field existed are version 1.
"""
from __future__ import annotations

import platform
import time
from dataclasses import replace

import torch

from ..config import PRESETS, RunConfig, resolve
from ..data import fixed_training_set, task_defaults
from ..models import BASELINES
from ..paths import portable
from ..version import __version__
from .steps import evaluate

NUMERICS_VERSION = 1


def versions() -> dict:
    import accelerate
    import numpy
    import transformers

    return {"fptlib": __version__, "numerics_version": NUMERICS_VERSION, "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def deviations(cfg: RunConfig) -> list[str]:
    """How a resolved config differs from the paper scale for the same task (written beside results)."""
    paper = resolve(replace(cfg, scale="paper", backbone=None if cfg.backbone == PRESETS[cfg.scale]["backbone"]
                            else cfg.backbone, steps=None, batch_size=None, eval_every=None,
                            n_layers=None if cfg.backbone == PRESETS[cfg.scale]["backbone"] else cfg.n_layers,
                            lstm_width=None, train_eval_examples=None, patience=0, precision=None, task_options={}))
    defaults = task_defaults(cfg.task)
    shown = {"n_layers": lambda v: "all" if v is None else v, "patience": lambda v: v or "off"}
    out = []
    for k in ("backbone", "n_layers", "lstm_width", "steps", "batch_size", "patience", "precision"):
        if k == "lstm_width" and cfg.backbone not in BASELINES:
            continue
        a, b = getattr(cfg, k), getattr(paper, k)
        if a != b:
            fmt = shown.get(k, lambda v: v)
            out.append(f"{k}: {fmt(a)} (paper scale: {fmt(b)})")
    for k in sorted(set(cfg.task_options) | set(paper.task_options)):
        default = defaults[k]
        a, b = cfg.task_options.get(k, default), paper.task_options.get(k, default)
        if a != b:
            out.append(f"{cfg.task} {k}: {a} (paper scale: {b})")
    return out


def final_metrics(s) -> dict:
    """A finished session's test, train and further held-out scores, each over the whole split."""
    cfg, task, model = s.cfg, s.task, s.acc.unwrap_model(s.model)
    test = evaluate(model, task, "test", cfg.eval_batch_size, s.device, cache=s.cache)
    train = evaluate(model, task, "train", cfg.eval_batch_size, s.device, limit=cfg.train_eval_examples,
                     cache=s.cache)
    extra = {split: evaluate(model, task, split, cfg.eval_batch_size, s.device, cache=s.cache)
             for split in task.extra_splits}
    return {"test": test, "train": train, "extra": extra}


def assemble(s, scores: dict) -> dict:
    """result.json of a finished session (fptlib.training.loop.Session) from its final scores."""
    cfg, task, state = s.cfg, s.task, s.state
    model = s.acc.unwrap_model(s.model)
    test, tr = scores["test"], scores["train"]
    result = {
        "task": cfg.task, "backbone": cfg.backbone, "init": cfg.init, "trained_groups": list(cfg.train),
        "seed": cfg.seed, "scale": cfg.scale, "steps": state["step"], "max_steps": cfg.steps,
        "stopped": state["stopped"] or "budget",
        "test_accuracy": test["accuracy"], "test": test, "test_examples": task.split_size("test"),
        "train_accuracy": tr["accuracy"], "train_examples_scored": min(cfg.train_eval_examples,
                                                                        task.split_size("train")),
        "val_accuracy": state["history"][-1]["val_accuracy"] if state["history"] else None,
        "best_val_accuracy": state["best_val"], "best_val_step": state["best_step"],
        **s.report, "frozen_unchanged": model.frozen_fingerprint() == state["frozen_fingerprint"],
        "frozen_tensors": len(state["frozen_fingerprint"]),
        "wall_seconds": round(state["elapsed"] + (time.time() - s.seg_start), 3),
        "run_seconds_this_process": round(time.time() - s.t_start, 3),
        "data_hash": task.data_hash(), "task_info": portable(task.describe()),
        "config": cfg.to_dict(), "config_hash": cfg.hash(), "deviations_from_paper_scale": deviations(cfg),
        "versions": versions(), "numerics_version": NUMERICS_VERSION, "torch_threads": torch.get_num_threads(),
        "device": str(s.device),
    }
    if "masked_accuracy" in test:
        result["test_masked_accuracy"] = test["masked_accuracy"]
    result.update(_timing(s))
    if s.cache is not None:
        result["feature_cache"] = {"build_seconds": round(s.cache.build_seconds, 4),
                                   "note": "frozen features computed once, in inference mode (no dropout "
                                           "below the output layer)"}
    if scores["extra"]:  # further held-out sets, each scored in full
        result["extra_test"] = scores["extra"]
    result.update(_dropped(task, test, scores["extra"]))
    if getattr(model, "init_source", None):
        result["init_source"] = model.init_source
    return result


def _timing(s) -> dict:
    """This process's pure training-step time (evaluation excluded), in total and per epoch."""
    out = {"train_step_seconds": round(sum(s.step_seconds), 4)}
    n_train = s.task.split_size("train") if fixed_training_set(s.task) else None
    if s.step_seconds and n_train:
        per_epoch = -(-n_train // (s.cfg.batch_size * s.cfg.grad_accum))
        chunks = [s.step_seconds[i:i + per_epoch] for i in range(0, len(s.step_seconds), per_epoch)]
        out["epoch_step_seconds"] = [round(sum(c), 6) for c in chunks]
        out["epoch_steps"] = [len(c) for c in chunks]  # the last epoch may be partial
    return out


def _dropped(task, test: dict, extra: dict) -> dict:
    """Examples a length policy left out: accuracy excluding them, and counting them as wrong."""
    dropped = {s: task.split_dropped(s) for s in ("val", "test", *task.extra_splits)}
    if not any(dropped.values()):
        return {}
    scored = {"test": test["accuracy"], **{s: m["accuracy"] for s, m in extra.items()}}
    return {"dropped_examples": dropped, "accuracy_dropped_as_wrong": {
        s: a * task.split_size(s) / (task.split_size(s) + dropped[s]) for s, a in scored.items()}}
