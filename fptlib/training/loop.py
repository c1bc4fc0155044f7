"""The training loop, in named steps: `start` (build, or resume from the last checkpoint), `step`
(one gradient step), `evaluate_and_checkpoint` (validation, early stopping, metrics and a sealed
checkpoint), `finish` (the full held-out splits and result.json). `train` runs them for one run
directory; the attention study runs the same steps in memory, without a run directory.

Seeded, checkpointed, resumable; Accelerate supplies devices, mixed precision and checkpoint state
(optimizer and RNG included). Faults cost at most the work since the last checkpoint; every file is
replaced atomically (see checkpoint.py for the seal).
"""
from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import SOURCE_INITS, RunConfig, is_resolved, resolve
from ..data import Task
from ..hardware import BF16_FLAGS, cpu, native_bf16
from ..io import FileLock, Locked, read_json, sha256_file, write_json_atomic
from ..models import FPT
from ..seeding import Stream, generator, stream_seed
from . import result as results
from .build import build, source_config
from .checkpoint import checkpoint_keys, clean_leftovers, discard, find_checkpoint, save_checkpoint
from .errors import NonFiniteLoss, RunError
from .faults import fault
from .rundir import NO_SPACE, RunDir, check_run_dir, check_writable, read_result, write_metrics
from .steps import (
    FeatureCache,
    accelerator,
    averager,
    check_cacheable,
    check_shares,
    evaluate,
    from_main,
    head_step,
    on_all,
    processes,
    share,
    to_device,
    train_step,
)


@dataclass
class Session:
    """A run in progress: the model on its device, its optimizer and the state a checkpoint keeps."""

    cfg: RunConfig
    run_dir: Path | None          # None: in memory (no metrics, checkpoints or result written)
    model: FPT
    task: Task
    acc: object                   # accelerate.Accelerator
    opt: torch.optim.Optimizer
    params: list
    state: dict
    report: dict                  # parameter counts per group
    validate: bool = True         # evaluate the validation split along the way
    cache: FeatureCache | None = None
    t_start: float = field(default_factory=time.time)
    seg_start: float = field(default_factory=time.time)
    step_seconds: list = field(default_factory=list)   # this process's pure step times
    step_losses: list = field(default_factory=list)    # this process's loss per step (floats)
    losses: list = field(default_factory=list)         # loss tensors since the last evaluation

    @property
    def device(self):
        return self.acc.device

    @property
    def done(self) -> bool:
        return self.state["step"] >= self.cfg.steps or self.state["stopped"] is not None


def fresh_state(cfg: RunConfig, model: FPT) -> dict:
    return {"config_hash": cfg.hash(), "step": 0, "history": [], "best_val": -1.0, "best_step": 0,
            "evals_since_best": 0, "elapsed": 0.0, "last_finite_loss": None,
            "frozen_fingerprint": model.frozen_fingerprint(), "stopped": None}


def source_weights(cfg: RunConfig, progress: bool = False) -> tuple[Path, dict]:
    """The source run behind an init in SOURCE_INITS (trained now if results/ does not hold it): its
    backbone file and a summary of it."""
    src = source_config(cfg)
    d = RunDir.of(src)
    res = train(src, d.path, resume=True, progress=progress, wait_for_lock=True)
    path = d.backbone_file
    saved = res.get("backbone_weights", {})
    if not path.is_file() or sha256_file(path) != saved.get("sha256"):
        raise RunError(f"{path} is missing or does not match the sha256 its run recorded; delete {d.path} "
                       "to train the source run again")
    summary = {"run_id": src.run_id(), "task": src.task, "test_accuracy": res["test_accuracy"],
               "test_masked_accuracy": res.get("test_masked_accuracy"), "steps": res["steps"],
               "sha256": saved["sha256"]}
    if src.objective is not None:  # self-pretraining: what it learnt to predict, and its cost
        summary |= {"objective": src.objective, "wall_seconds": res.get("wall_seconds")}
    return path, summary


def build_for_run(cfg: RunConfig) -> tuple[FPT, Task]:
    """`build`, with the source run of a source init (bit, self-pretrained) trained or found first."""
    return build(cfg, source_weights(cfg) if cfg.init in SOURCE_INITS else None)


def _accelerator(cfg: RunConfig, trainable: set[str]):
    if torch.cuda.is_available():  # TF32 only when asked: the paper's numbers are fp32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    if cfg.precision == "bf16" and not native_bf16():
        warnings.warn(f"this run is bf16 but {cpu()[0]} has no native bf16 ({' or '.join(BF16_FLAGS)}): it is "
                      "emulated and slower than fp32 here. To compute an fp32 set of runs instead pass "
                      "precision fp32 (another run identity: never mixed with bf16 runs)", RuntimeWarning,
                      stacklevel=3)
    acc = accelerator(cfg.precision)

    def keep_trainable(models, weights, _dir):
        """Checkpoints hold only trainable tensors; frozen ones are rebuilt from the seed and verified."""
        for w in weights:
            for k in list(w):
                if k.removeprefix("module.") not in trainable:  # "module." when wrapped for DDP
                    del w[k]
    acc.register_save_state_pre_hook(keep_trainable)
    return acc


def start(cfg: RunConfig, run_dir: Path | None = None, resume: bool = False, validate: bool = True) -> Session:
    """Build the run's model, task and optimizer, then resume from the last sealed checkpoint in
    run_dir (resume=True) or start at step 0, seeded from the run's seed."""
    from accelerate.utils import set_seed
    t_start = time.time()
    model, task = build_for_run(cfg)
    if cfg.cache_features:
        check_cacheable(cfg, task)  # before anything is written into the run directory
        if cfg.grad_accum != 1:
            raise RunError("cache_features trains on whole batches of cached features; use grad_accum=1")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise RunError(f"nothing to train: groups {list(cfg.train)} hold no parameters in this model")
    report = model.param_report()
    acc = _accelerator(cfg, trainable)
    check_shares(cfg.batch_size, acc.num_processes)
    params = [p for p in model.parameters() if p.requires_grad]
    # On cached features a step is a few small kernels, so the fused Adam's single call matters.
    opt = torch.optim.Adam(params, lr=cfg.lr, fused=True if cfg.cache_features else None)
    model, opt = acc.prepare(model, opt)
    state = _restore(acc, cfg, run_dir, trainable) if resume and run_dir is not None else None
    if state is not None:
        _check_frozen(acc.unwrap_model(model), state, run_dir)
    if state is None:
        set_seed(_dropout_seed(cfg, acc.process_index) % 2**32)
        state = fresh_state(cfg, acc.unwrap_model(model))
        if acc.num_processes > 1:  # a checkpoint holds one random state per process
            state["num_processes"] = acc.num_processes
    s = Session(cfg, run_dir, model, task, acc, opt, params, state, report, validate=validate, t_start=t_start)
    if run_dir is not None and acc.is_main_process:
        write_json_atomic(RunDir(run_dir).config_file, cfg.to_dict() | {"config_hash": cfg.hash()})
    if cfg.cache_features:
        s.cache = FeatureCache(acc.unwrap_model(model), task, cfg.eval_batch_size, s.device,
                               ("train", "val", "test", *task.extra_splits))
    if validate and not state["history"]:  # the starting point of the learning curve
        _record(s, 0, None, _validate(s), 0.0)
        _write_metrics(s)
    s.seg_start = time.time()
    return s


def _dropout_seed(cfg: RunConfig, process: int) -> int:
    """torch's global seed (dropout) of a fresh run; each further process of a launch gets its own."""
    if process == 0:
        return stream_seed(cfg.seed, Stream.TRAINING)
    return int(generator(cfg.seed, Stream.TRAINING, process).initial_seed())


def _check_frozen(model: FPT, state: dict, run_dir: Path) -> None:
    """Refuse to resume on frozen weights other than those the checkpoint trained with (they are not in
    it): a source run trained again, or random init drawn differently by another torch or CPU."""
    now, then = model.frozen_fingerprint(), state["frozen_fingerprint"]
    if now != then:
        differ = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
        raise RunError(f"the frozen weights built now differ from those the checkpoint in {run_dir} trained with "
                       f"({len(differ)} of {len(then)} tensors, e.g. {differ[0]}): resuming would mix two models. "
                       "If the source run was trained again (init_source), delete the checkpoint directory to "
                       "restart this run from step 0")


def _restore(acc, cfg: RunConfig, run_dir: Path, trainable: set[str]) -> dict | None:
    """The training state of the newest sealed checkpoint, loaded into acc; None when there is none.
    The main process picks the checkpoint (and drops a damaged one); every process loads it."""
    ckpt, problems = from_main(acc, find_checkpoint(run_dir) if acc.is_main_process else None)
    if ckpt is None and problems:
        raise RunError(f"no usable checkpoint in {run_dir}: " + "; ".join(problems) + ". Refusing to load a "
                       "damaged checkpoint: delete the listed directories to restart this run from step 0")
    if ckpt is None:
        return None
    if problems:  # the newest checkpoint is damaged: fall back to the previous one, drop the damaged one
        if acc.is_main_process:
            warnings.warn(f"skipping damaged checkpoint ({'; '.join(problems)}); resuming from {ckpt}",
                          RuntimeWarning, stacklevel=3)
            discard(RunDir(run_dir).checkpoint)
    state = read_json(ckpt / "trainer_state.json")
    state.pop("files", None)
    if state["config_hash"] != cfg.hash():
        raise RunError(f"checkpoint in {run_dir} was made by config {state['config_hash']}, not {cfg.hash()}; "
                       "refusing to mix runs: use another --out or delete the directory")
    if state.get("num_processes", 1) != acc.num_processes:
        raise RunError(f"checkpoint in {run_dir} was made by {state.get('num_processes', 1)} process(es), this "
                       f"launch has {acc.num_processes}; resume it with the same number of processes")
    saved = checkpoint_keys(ckpt)
    if not trainable <= saved:
        raise RunError(f"checkpoint in {ckpt} lacks {sorted(trainable - saved)[:3]}...; it is "
                       "damaged: delete the checkpoint directory to restart the run")
    acc.load_state(str(ckpt), strict=False)  # strict=False: frozen tensors are not in checkpoints
    return state


def step(s: Session) -> None:
    """One gradient step; the batch is a pure function of (seed, step)."""
    cfg, task, n, acc = s.cfg, s.task, s.state["step"], s.acc
    t = time.perf_counter()
    if s.cache is not None:
        b = share(s.cache.train_batch(n, cfg.batch_size), acc.process_index, acc.num_processes)
        s.losses.append(head_step(acc.unwrap_model(s.model).output, s.opt.optimizer, b["h"].to(s.device),
                                  b["y"].to(s.device), task.n_classes, cfg.clip_norm, averager(acc)))
        fault("step")
    else:  # with several processes each takes its share of the batch; DDP averages their gradients
        micro = (to_device(share(task.train_batch(n * cfg.grad_accum + m, cfg.batch_size), acc.process_index,
                                 acc.num_processes), s.device)
                 for m in range(cfg.grad_accum))
        s.losses += train_step(s.acc, s.model, s.opt, s.params, micro, cfg.grad_accum, task.n_classes,
                               cfg.clip_norm, before_update=lambda: fault("step"))
    s.step_seconds.append(time.perf_counter() - t)
    s.state["step"] = n + 1


def due(s: Session) -> bool:
    """Whether the step just taken ends a segment: an evaluation (and checkpoint) follows it."""
    n = s.state["step"]
    return n % s.cfg.eval_every == 0 or n == s.cfg.steps


def evaluate_and_checkpoint(s: Session) -> dict | None:
    """End a segment: check its losses are finite, score the validation split, apply early stopping,
    rewrite metrics.jsonl and checkpoint. Returns the new learning-curve point (None without validation)."""
    cfg, state, n = s.cfg, s.state, s.state["step"]
    seg = torch.stack(s.losses).float()
    if s.acc.num_processes > 1:  # each process's losses are over its share: average them into the batch's
        seg = s.acc.reduce(seg, reduction="mean")
    seg = seg.reshape(-1, cfg.grad_accum).mean(1).tolist()
    s.losses.clear()
    for i, v in enumerate(seg):
        if not math.isfinite(v):
            last = state["last_finite_loss"]
            where = f"run {s.run_dir}" if s.run_dir is not None else f"the in-memory run {cfg.run_id()}"
            raise NonFiniteLoss(
                f"loss became {v} at step {n - len(seg) + i + 1} of {where}; last finite loss "
                f"{'none (the first step failed)' if last is None else f'{last:.6g}'}. "
                f"No result was written. Try a lower --lr (now {cfg.lr}), "
                "fp32 precision or fewer trained groups, in a new --out (a changed config cannot "
                "resume this checkpoint).")
        state["last_finite_loss"] = v
    s.step_losses += seg
    val = _validate(s) if s.validate else None
    state["elapsed"] += time.time() - s.seg_start  # the evaluation counts towards the run's wall time
    s.seg_start = time.time()
    if val is None:
        return None
    rec = _record(s, n, sum(seg) / len(seg), val, round(state["elapsed"], 3))
    if val["accuracy"] > state["best_val"]:
        state["best_val"], state["best_step"], state["evals_since_best"] = val["accuracy"], n, 0
    else:
        state["evals_since_best"] += 1
        if cfg.patience and state["evals_since_best"] >= cfg.patience:
            state["stopped"] = "converged"
    _write_metrics(s)
    if s.run_dir is not None:
        save_checkpoint(s.acc, s.run_dir, state)
    return rec


def _validate(s: Session) -> dict:
    """The validation scores of the model as it stands. Every process scores the whole split with the
    unwrapped model (no collective inside); the main process's scores decide for all of them."""
    return from_main(s.acc, evaluate(s.acc.unwrap_model(s.model), s.task, "val", s.cfg.eval_batch_size, s.device,
                                     cache=s.cache))


def _record(s: Session, n: int, train_loss, val: dict, elapsed: float) -> dict:
    rec = {"step": n, "train_loss": train_loss, "val_accuracy": val["accuracy"], "val_loss": val["loss"],
           "elapsed_seconds": elapsed}
    if "masked_accuracy" in val:
        rec["val_masked_accuracy"] = val["masked_accuracy"]
    s.state["history"].append(rec)
    return rec


def _write_metrics(s: Session) -> None:
    if s.run_dir is not None and s.acc.is_main_process:
        write_metrics(s.run_dir, s.state["history"])


def run_steps(s: Session, progress: bool = False) -> None:
    """Step until the budget is spent or early stopping ends the run, evaluating at every segment end."""
    from tqdm.auto import tqdm
    cfg = s.cfg
    bar = tqdm(total=cfg.steps, initial=s.state["step"], disable=not (progress and s.acc.is_main_process),
               leave=False,
               desc=f"{cfg.task} {cfg.backbone} {cfg.init} s{cfg.seed}", dynamic_ncols=True)
    while not s.done:
        step(s)
        bar.update(1)
        if due(s):
            rec = evaluate_and_checkpoint(s)
            if rec is not None:
                bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val=f"{rec['val_accuracy']:.3f}")
    bar.close()


def finish(s: Session) -> dict:
    """Score the full held-out splits, write result.json (last, atomically) and remove the checkpoints.
    With several processes each scores the splits and checks its frozen weights; the main one writes."""
    result = results.assemble(s, results.final_metrics(s))
    main = s.acc.is_main_process
    if s.acc.num_processes > 1:
        result["frozen_unchanged"] = on_all(s.acc, result["frozen_unchanged"])
        result["num_processes"] = s.acc.num_processes
    if s.cfg.save_backbone and main:
        result["backbone_weights"] = _save_backbone(s)
    fault("final-eval")
    if main:
        write_json_atomic(RunDir(s.run_dir).result_file, result)
        clean_leftovers(s.run_dir, checkpoints=True)
    s.acc.free_memory()
    return result


def _save_backbone(s: Session) -> dict:
    from safetensors.torch import save_file
    path = RunDir(s.run_dir).backbone_file
    tmp = path.with_name(f".{path.name}.tmp")
    state = s.acc.unwrap_model(s.model).backbone.state_dict()
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
    return {"file": path.name, "sha256": sha256_file(path)}


def _prepare(cfg: RunConfig, run_dir: Path, resume: bool) -> dict | None:
    """Check the locked run directory and clear what a killed run left; a finished run's result, else None."""
    check_run_dir(run_dir, cfg, resume)
    if resume and RunDir(run_dir).result_file.exists():
        result = read_result(run_dir, cfg.hash())
        clean_leftovers(run_dir, checkpoints=True)  # a kill after the result, before the cleanup
        return result
    clean_leftovers(run_dir)
    return None


def _train_locked(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> dict:
    done = _prepare(cfg, run_dir, resume)
    if done is not None:
        return done
    s = start(cfg, run_dir, resume)
    run_steps(s, progress)
    return finish(s)


def train(cfg: RunConfig, out_dir: Path | str, resume: bool = False, progress: bool = True,
          wait_for_lock: bool = False) -> dict:
    """Train one run into out_dir and return its result dict.

    With resume=True an unfinished run continues from its checkpoint and a finished one is returned
    as it is; a run directory holding a different config is refused either way. A run directory is
    locked while a process works in it: another process is refused, or waits with wait_for_lock.
    Under a multi-process launch (torchrun, accelerate launch) the run is spread over the processes.
    """
    cfg = cfg if is_resolved(cfg) else resolve(cfg)
    run_dir = Path(out_dir)
    procs = processes()
    if procs is None:
        check_writable(run_dir)
    try:
        if procs is not None:
            return _train_spread(cfg, run_dir, resume, progress, wait_for_lock, procs)
        with FileLock(RunDir(run_dir).lock_file, wait=wait_for_lock):
            return _train_locked(cfg, run_dir, resume, progress)
    except (Locked, OSError) as e:
        err = _refusal(e, run_dir)
        if err is e:
            raise
        raise err from (None if isinstance(e, Locked) else e)


def _refusal(e: Exception, run_dir: Path) -> Exception:
    """The RunError a lock held elsewhere or a full (read-only) disk becomes; other errors as they are."""
    if isinstance(e, Locked):
        return RunError(f"{e}; wait for it, or use another --out")
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        return RunError(f"could not write to {run_dir}: {e}. No result was written and the last complete "
                        "checkpoint is kept: free space (or make the directory writable), then run again "
                        "with --resume (it continues from that checkpoint)")
    return e


def _train_spread(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, wait_for_lock: bool, procs) -> dict:
    """One run spread over a launch's processes (data parallel). The main process alone takes the lock,
    checks and writes the run directory, and tells the others whether to go on; every process trains
    its share of each batch. Returns the main process's result on every process."""
    check_shares(cfg.batch_size, procs.num_processes)
    with ExitStack() as held:
        verdict = ("go", None)
        if procs.is_main_process:
            try:
                check_writable(run_dir)
                held.enter_context(FileLock(RunDir(run_dir).lock_file, wait=wait_for_lock))
                verdict = ("go", _prepare(cfg, run_dir, resume))
            except (Locked, OSError, RunError) as e:
                verdict = ("refused", str(_refusal(e, run_dir)))
        from accelerate.utils import broadcast_object_list
        kind, done = broadcast_object_list([verdict])[0]
        if kind == "refused":
            raise RunError(done)
        if done is not None:
            return done
        s = start(cfg, run_dir, resume)
        run_steps(s, progress)
        return from_main(s.acc, finish(s))
