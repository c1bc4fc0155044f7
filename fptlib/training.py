"""Training: seeded, checkpointed, resumable; Accelerate supplies devices, mixed precision and
checkpoint state (optimizer and RNG included). Each run is a directory:

    config.json     the resolved config
    metrics.jsonl   one line per validation evaluation (rewritten atomically)
    result.json     final numbers on the full test split (written last, atomically)
    checkpoint/     latest checkpoint while the run is unfinished (removed at the end)
"""
from __future__ import annotations

import math
import os
import platform
import shutil
import time

from pathlib import Path

import torch
import torch.nn.functional as F

from .backbones import BackboneSpec, build_backbone
from .config import RunConfig, deviations, resolve
from .io import FileLock, Locked, read_json, write_json_atomic, write_text_atomic
from .model import FPT
from .tasks import Task, _generator, make_task


class RunError(RuntimeError):
    """A run that cannot proceed; the message says why and what to do."""


class NonFiniteLoss(RunError):
    pass


def versions() -> dict:
    import accelerate
    import numpy
    import transformers
    from . import __version__
    return {"fptlib": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def build(cfg: RunConfig) -> tuple[FPT, Task]:
    """Model and task for a resolved config, deterministic in cfg.seed."""
    task = make_task(cfg.task, seed=cfg.seed, **cfg.task_options)
    spec = BackboneSpec(name=cfg.backbone, init=cfg.init, n_layers=cfg.n_layers,
                        attn_implementation=cfg.attn_implementation, lstm_width=cfg.lstm_width,
                        lstm_layers=cfg.lstm_layers, lstm_residual=cfg.lstm_residual,
                        lstm_positions=cfg.lstm_positions)
    backbone = build_backbone(spec, cfg.seed)
    if task.seq_len > backbone.max_positions:
        raise RunError(f"task {cfg.task} has sequences of {task.seq_len} tokens but backbone {cfg.backbone} "
                       f"has {backbone.max_positions} positions; choose a larger patch size, a shorter "
                       "task, or a backbone with more positions")
    # Heads are seeded apart from the backbone so pretrained and random runs share the same heads.
    torch.manual_seed(int(_generator(cfg.seed, 7).initial_seed()))
    model = FPT(backbone, input_kind=task.input_kind, d_in=task.d_in, n_out_tokens=task.n_out_tokens,
                out_dim=task.out_dim, orth_gain=cfg.orth_gain, input_dropout=cfg.input_dropout)
    model.set_trainable(cfg.train)
    return model, task


def loss_fn(logits: torch.Tensor, batch: dict, n_classes: int) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, n_classes), batch["y"].reshape(-1))


@torch.inference_mode()
def evaluate(model: FPT, task: Task, split: str, batch_size: int, device, limit: int | None = None) -> dict:
    """Accuracy and loss over a whole split (or its first `limit` examples): exact counts, no sampling."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    m_correct = m_total = 0
    for batch in task.eval_batches(split, batch_size, limit):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch["x"], batch.get("attention_mask")).float()
        logits = logits.reshape(logits.shape[0], -1, task.n_classes)
        y = batch["y"].reshape(logits.shape[0], -1)
        hit = logits.argmax(-1) == y
        correct += int(hit.sum())
        total += hit.numel()
        loss_sum += float(F.cross_entropy(logits.reshape(-1, task.n_classes), y.reshape(-1), reduction="sum"))
        if "query_mask" in batch:
            m = batch["query_mask"].reshape(hit.shape)
            m_correct += int(hit[m].sum())
            m_total += int(m.sum())
    model.train(was_training)
    out = {"accuracy": correct / total, "loss": loss_sum / total, "decisions": total}
    if m_total:
        out["masked_accuracy"] = m_correct / m_total
    return out


def _save_checkpoint(acc, run_dir: Path, state: dict) -> None:
    """Write checkpoint/ atomically: build a sibling directory, then swap it in."""
    final = run_dir / "checkpoint"
    tmp = run_dir / f".checkpoint-{state['step']}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    acc.save_state(str(tmp))
    write_json_atomic(tmp / "trainer_state.json", state)  # last file written: marks completeness
    old = run_dir / ".checkpoint-old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _checkpoint_keys(ckpt: Path) -> set[str]:
    from safetensors import safe_open
    files = list(ckpt.glob("model*.safetensors"))
    if not files:
        raise RunError(f"checkpoint in {ckpt} has no model file; delete it to restart the run")
    with safe_open(str(files[0]), framework="pt") as f:
        return {k.removeprefix("module.") for k in f.keys()}


def _find_checkpoint(run_dir: Path) -> Path | None:
    # A kill between the two renames leaves only .checkpoint-old: still a complete checkpoint.
    for cand in (run_dir / "checkpoint", run_dir / ".checkpoint-old"):
        if (cand / "trainer_state.json").exists():
            return cand
    return None


def train(cfg: RunConfig, out_dir: Path | str, resume: bool = False, progress: bool = True,
          wait_for_lock: bool = False) -> dict:
    """Train one run into out_dir and return its result dict.

    With resume=True an unfinished run continues from its checkpoint and a finished one is returned
    as it is; a run directory holding a different config is refused either way. A run directory is
    locked while a process works in it: another process is refused, or waits with wait_for_lock.
    """
    cfg = resolve(cfg)
    run_dir = Path(out_dir)
    _check_writable(run_dir)
    try:
        with FileLock(run_dir / ".lock", wait=wait_for_lock):
            return _train_locked(cfg, run_dir, resume, progress)
    except Locked as e:
        raise RunError(f"{e}; wait for it, or use another --out") from None


def _train_locked(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> dict:
    chash = cfg.hash()
    _check_run_dir(run_dir, cfg, resume)
    if resume and (run_dir / "result.json").exists():
        return read_json(run_dir / "result.json")

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    t_start = time.time()
    model, task = build(cfg)
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    if not trainable_names:
        raise RunError(f"nothing to train: groups {list(cfg.train)} hold no parameters in this model")
    report = model.param_report()
    acc = Accelerator(cpu=not torch.cuda.is_available(),
                      mixed_precision="no" if cfg.precision == "fp32" else cfg.precision)
    # Checkpoints hold only trainable tensors; frozen ones are rebuilt from the seed and verified.
    def keep_trainable(models, weights, _dir):
        for w in weights:
            for k in list(w):
                if k.removeprefix("module.") not in trainable_names:  # "module." when wrapped for DDP
                    del w[k]
    acc.register_save_state_pre_hook(keep_trainable)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    model, opt = acc.prepare(model, opt)
    device = acc.device

    ckpt = _find_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = read_json(ckpt / "trainer_state.json")
        if state["config_hash"] != chash:
            raise RunError(f"checkpoint in {run_dir} was made by config {state['config_hash']}, not {chash}; "
                           "refusing to mix runs: use another --out or delete the directory")
        saved = _checkpoint_keys(ckpt)
        if not trainable_names <= saved:
            raise RunError(f"checkpoint in {ckpt} lacks {sorted(trainable_names - saved)[:3]}...; it is "
                           "damaged: delete the checkpoint directory to restart the run")
        acc.load_state(str(ckpt), strict=False)  # strict=False: frozen tensors are not in checkpoints
    else:
        set_seed(int(_generator(cfg.seed, 11).initial_seed()) % 2**32)
        state = {"config_hash": chash, "step": 0, "history": [], "best_val": -1.0, "best_step": 0,
                 "evals_since_best": 0, "elapsed": 0.0, "last_finite_loss": None,
                 "frozen_fingerprint": acc.unwrap_model(model).frozen_fingerprint(), "stopped": None}
    write_json_atomic(run_dir / "config.json", cfg.to_dict() | {"config_hash": chash})

    if not state["history"]:  # the starting point of the learning curve
        val0 = evaluate(model, task, "val", cfg.eval_batch_size, device)
        state["history"].append({"step": 0, "train_loss": None, "val_accuracy": val0["accuracy"],
                                 "val_loss": val0["loss"], "elapsed_seconds": 0.0}
                                | ({"val_masked_accuracy": val0["masked_accuracy"]} if "masked_accuracy" in val0 else {}))
        _write_metrics(run_dir, state["history"])

    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.steps, initial=state["step"], disable=not progress, leave=False,
               desc=f"{cfg.task} {cfg.backbone} {cfg.init} s{cfg.seed}", dynamic_ncols=True)
    losses: list[torch.Tensor] = []
    seg_start = time.time()
    step = state["step"]
    while step < cfg.steps and state["stopped"] is None:
        model.train()
        opt.zero_grad(set_to_none=True)
        for micro in range(cfg.grad_accum):
            batch = task.train_batch(step * cfg.grad_accum + micro, cfg.batch_size)
            batch = {k: v.to(device) for k, v in batch.items()}
            with acc.autocast():
                logits = model(batch["x"], batch.get("attention_mask"))
            loss = loss_fn(logits, batch, task.n_classes) / cfg.grad_accum
            acc.backward(loss)
            losses.append(loss.detach() * cfg.grad_accum)
        acc.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            seg = torch.stack(losses).float().reshape(-1, cfg.grad_accum).mean(1).tolist()
            losses.clear()
            for i, v in enumerate(seg):
                if not math.isfinite(v):
                    bad = step - len(seg) + i + 1
                    raise NonFiniteLoss(
                        f"loss became {v} at step {bad} of run {run_dir}; last finite loss "
                        f"{state['last_finite_loss']}. No result was written. Try a lower --lr (now {cfg.lr}), "
                        "fp32 precision or fewer trained groups, in a new --out (a changed config cannot "
                        "resume this checkpoint).")
                state["last_finite_loss"] = v
            val = evaluate(model, task, "val", cfg.eval_batch_size, device)
            state["step"] = step
            state["elapsed"] += time.time() - seg_start
            seg_start = time.time()
            rec = {"step": step, "train_loss": sum(seg) / len(seg), "val_accuracy": val["accuracy"],
                   "val_loss": val["loss"], "elapsed_seconds": round(state["elapsed"], 3)}
            if "masked_accuracy" in val:
                rec["val_masked_accuracy"] = val["masked_accuracy"]
            state["history"].append(rec)
            if val["accuracy"] > state["best_val"]:
                state["best_val"], state["best_step"], state["evals_since_best"] = val["accuracy"], step, 0
            else:
                state["evals_since_best"] += 1
                if cfg.patience and state["evals_since_best"] >= cfg.patience:
                    state["stopped"] = "converged"
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val=f"{val['accuracy']:.3f}")
            _write_metrics(run_dir, state["history"])
            _save_checkpoint(acc, run_dir, state)
    bar.close()

    unwrapped = acc.unwrap_model(model)
    test = evaluate(unwrapped, task, "test", cfg.eval_batch_size, device)
    tr = evaluate(unwrapped, task, "train", cfg.eval_batch_size, device, limit=cfg.train_eval_examples)
    frozen_unchanged = unwrapped.frozen_fingerprint() == state["frozen_fingerprint"]
    result = {
        "task": cfg.task, "backbone": cfg.backbone, "init": cfg.init, "trained_groups": list(cfg.train),
        "seed": cfg.seed, "scale": cfg.scale, "steps": state["step"], "max_steps": cfg.steps,
        "stopped": state["stopped"] or "budget",
        "test_accuracy": test["accuracy"], "test": test, "test_examples": task.split_size("test"),
        "train_accuracy": tr["accuracy"], "train_examples_scored": min(cfg.train_eval_examples,
                                                                        task.split_size("train")),
        "val_accuracy": state["history"][-1]["val_accuracy"] if state["history"] else None,
        "best_val_accuracy": state["best_val"], "best_val_step": state["best_step"],
        **report, "frozen_unchanged": frozen_unchanged,
        "frozen_tensors": len(state["frozen_fingerprint"]),
        "wall_seconds": round(state["elapsed"] + (time.time() - seg_start), 3),
        "run_seconds_this_process": round(time.time() - t_start, 3),
        "data_hash": task.data_hash(), "task_info": task.describe(),
        "config": cfg.to_dict(), "config_hash": chash, "deviations_from_paper_scale": deviations(cfg),
        "versions": versions(), "device": str(device),
    }
    if "masked_accuracy" in test:
        result["test_masked_accuracy"] = test["masked_accuracy"]
    for split in task.extra_splits:  # further held-out sets, each scored in full
        result.setdefault("extra_test", {})[split] = evaluate(unwrapped, task, split, cfg.eval_batch_size, device)
    dropped = {s: task.split_dropped(s) for s in ("val", "test", *task.extra_splits)}
    if any(dropped.values()):
        # Examples a length policy left out: report accuracy excluding them and counting them as wrong.
        result["dropped_examples"] = dropped
        scored = {"test": test["accuracy"], **{s: m["accuracy"] for s, m in result.get("extra_test", {}).items()}}
        result["accuracy_dropped_as_wrong"] = {
            s: a * task.split_size(s) / (task.split_size(s) + dropped[s]) for s, a in scored.items()}
    write_json_atomic(run_dir / "result.json", result)
    for d in (run_dir / "checkpoint", run_dir / ".checkpoint-old"):
        shutil.rmtree(d, ignore_errors=True)
    acc.free_memory()
    return result


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    import json
    write_text_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to output directory {run_dir}: {e}; choose another --out") from e


def _check_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    """Refuse a directory that belongs to another config, or an unfinished run without --resume."""
    cfg_file = run_dir / "config.json"
    if cfg_file.exists():
        old = read_json(cfg_file).get("config_hash")
        if old != cfg.hash():
            raise RunError(f"{run_dir} holds a run of another config ({old}, this one is {cfg.hash()}); "
                           "refusing to mix runs: use another --out or delete the directory")
        if not resume:
            raise RunError(f"{run_dir} already holds this run; pass --resume to finish or reuse it, "
                           "or use another --out")


def result_without_timing(result: dict) -> dict:
    """The numbers of a result, without wall-clock fields (which differ between identical runs)."""
    drop = {"wall_seconds", "run_seconds_this_process"}
    out = {k: v for k, v in result.items() if k not in drop}
    return out
