"""Training: seeded, checkpointed, resumable; Accelerate supplies devices, mixed precision and
checkpoint state (optimizer and RNG included). Each run is a directory:

    config.json     the resolved config
    metrics.jsonl   one line per validation evaluation (rewritten atomically)
    result.json     final numbers on the full test split (written last, atomically)
    checkpoint/     latest checkpoint while the run is unfinished (removed at the end)

Faults cost at most the work since the last checkpoint. Every file is replaced atomically; a
checkpoint is built beside the current one, sealed by trainer_state.json (written last, holding the
size and sha256 of every other file) and swapped in by renames, so at every instant `checkpoint/` or
`.checkpoint-old/` is complete. A checkpoint that fails its seal is never loaded.

FPT_FAULT=point:n (tests only) SIGKILLs the process the n-th time it reaches `point`, one of
FAULT_POINTS; several comma-separated. Unset, it costs one dictionary lookup per step.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import platform
import shutil
import signal
import time
import warnings

from pathlib import Path

import torch
import torch.nn.functional as F

from .backbones import BackboneSpec, build_backbone
from .config import RunConfig, deviations, resolve
from .io import FileLock, Locked, read_json, sha256_file, write_json_atomic, write_text_atomic
from .model import FPT
from .tasks import DataError, Task, _generator, make_task


class RunError(RuntimeError):
    """A run that cannot proceed; the message says why and what to do."""


class NonFiniteLoss(RunError):
    pass


# Where FPT_FAULT can kill a run: after backward and before optimizer.step; after a checkpoint is
# written beside the current one but before it is swapped in; between the swap's two renames; after
# the final evaluation, before result.json is written.
FAULT_POINTS = ("step", "checkpoint-written", "checkpoint-swap", "final-eval")
_fault_counts: dict[str, int] = {}


def _fault(point: str) -> None:
    """Fault injection for the reliability tests: SIGKILL this process at the n-th `point`."""
    spec = os.environ.get("FPT_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        name, _, n = item.strip().partition(":")
        if name not in FAULT_POINTS:
            raise RunError(f"FPT_FAULT names unknown point {name!r}; choose one of {', '.join(FAULT_POINTS)}")
        if name == point:
            _fault_counts[point] = _fault_counts.get(point, 0) + 1
            if _fault_counts[point] == int(n or 1):
                os.kill(os.getpid(), signal.SIGKILL)


# Modules that only present results (tables, plots, the CLI, notebook driving, downloads): editing
# them cannot change a run's numbers, so they are left out of the source hash in `versions`.
_PRESENTATION = {"cli.py", "plots.py", "reproduce.py", "results.py", "paper.py", "experiments.py", "fetch.py",
                 "studies.py", "report.py", "bench.py", "original.py", "attention.py"}


def _hash_sources() -> str:
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.glob("*.py")):
        if p.name not in _PRESENTATION:
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


_SOURCE_HASH = _hash_sources()  # at import: the code this process runs, not what is on disk later


def source_hash() -> str:
    """sha256 of the fptlib modules that compute a run's numbers: the code version, even unreleased."""
    return _SOURCE_HASH


def versions() -> dict:
    import accelerate
    import numpy
    import transformers
    from . import __version__
    return {"fptlib": __version__, "fptlib_source": source_hash(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _make_task(cfg: RunConfig) -> Task:
    """make_task, with the command that fetches a dataset added to any missing/corrupt-data message."""
    try:
        return make_task(cfg.task, seed=cfg.seed, **cfg.task_options)
    except DataError as e:
        if "fpt data fetch" in str(e):
            raise
        from .fetch import REGISTRY
        ds = REGISTRY.get(cfg.task)
        if ds is None or ds.kind == "generated":
            raise
        raise DataError(f"{e} (`fpt data fetch {cfg.task}` downloads and verifies it; "
                        "`fpt data status` lists what is present)") from e


def run_dir_for(cfg: RunConfig) -> Path:
    """Where the study machinery keeps a run: results/<scale>/runs/<run id>."""
    from .paths import results_dir
    return results_dir(cfg.scale) / "runs" / cfg.run_id()


def bit_source_config(cfg: RunConfig) -> RunConfig:
    """Init 'bit' (paper Table 2): the same architecture, randomly initialised and fully trained on
    Bit Memory at the same scale and seed; its weights become the frozen backbone."""
    return resolve(RunConfig(task="bit-memory", backbone=cfg.backbone, init="random", train=("full",),
                             scale=cfg.scale, seed=cfg.seed, n_layers=cfg.n_layers, save_backbone=True))


def bit_source(cfg: RunConfig, progress: bool = False) -> tuple[Path, dict]:
    """The Bit Memory run behind init 'bit' (trained now if results/ does not hold it) and its summary."""
    src = bit_source_config(cfg)
    d = run_dir_for(src)
    res = train(src, d, resume=True, progress=progress, wait_for_lock=True)
    path = d / "backbone.safetensors"
    saved = res.get("backbone_weights", {})
    if not path.is_file() or sha256_file(path) != saved.get("sha256"):
        raise RunError(f"{path} is missing or does not match the sha256 its run recorded; delete {d} "
                       "to train the Bit Memory source again")
    return path, {"run_id": src.run_id(), "task": "bit-memory", "test_accuracy": res["test_accuracy"],
                  "test_masked_accuracy": res.get("test_masked_accuracy"), "steps": res["steps"],
                  "sha256": saved["sha256"]}


def build(cfg: RunConfig) -> tuple[FPT, Task]:
    """Model and task for a resolved config, deterministic in cfg.seed."""
    task = _make_task(cfg)
    weights, source = None, None
    if cfg.init == "bit":
        weights, source = bit_source(cfg)
    spec = BackboneSpec(name=cfg.backbone, init=cfg.init, n_layers=cfg.n_layers,
                        attn_implementation=cfg.attn_implementation, lstm_width=cfg.lstm_width,
                        lstm_layers=cfg.lstm_layers, lstm_residual=cfg.lstm_residual,
                        lstm_positions=cfg.lstm_positions, attention_dropout=cfg.attention_dropout,
                        weights=str(weights) if weights else None)
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
    model.init_source = source  # where init 'bit' took its weights from (None otherwise)
    return model, task


def loss_fn(logits: torch.Tensor, batch: dict, n_classes: int) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, n_classes), batch["y"].reshape(-1))


def train_step(acc, model, opt, params, micro_batches, n_micro: int, n_classes: int, clip_norm: float,
               before_update=None) -> list[torch.Tensor]:
    """One gradient step (what `train` runs and `fpt bench` times); returns the micro-batch losses
    as tensors, so nothing here waits for the device. Only trainable tensors reach the optimizer
    and the clipping; frozen ones get no gradient at all."""
    model.train()
    opt.zero_grad(set_to_none=True)
    losses = []
    for batch in micro_batches:
        with acc.autocast():
            logits = model(batch["x"], batch.get("attention_mask"))
        loss = loss_fn(logits, batch, n_classes) / n_micro
        acc.backward(loss)
        losses.append(loss.detach() * n_micro)
    acc.clip_grad_norm_(params, clip_norm)
    if before_update is not None:
        before_update()
    opt.step()
    return losses


@torch.inference_mode()
def evaluate(model: FPT, task: Task, split: str, batch_size: int, device, limit: int | None = None,
             cache: "FeatureCache | None" = None) -> dict:
    """Accuracy and loss over a whole split (or its first `limit` examples): exact counts, no sampling.
    With a FeatureCache, the output layer is scored on the cached features of the split."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    m_correct = m_total = 0
    source = cache if cache is not None else task
    for batch in source.eval_batches(split, batch_size, limit):
        batch = {k: v.to(device) for k, v in batch.items()}
        if cache is not None:
            logits = model.output(batch["h"]).float()
        else:
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


class FeatureCache:
    """Paper Table 10, output layer only: nothing below the output layer trains, so the frozen
    features each example produces are computed once (in inference mode, so without dropout) and
    every later epoch trains the output layer on them alone."""

    def __init__(self, model: FPT, task: Task, batch_size: int, device, splits):
        t = time.time()
        self.task = task
        self.splits = {s: self._features(model, task, s, batch_size, device) for s in splits}
        self.build_seconds = time.time() - t

    @staticmethod
    @torch.inference_mode()
    def _features(model, task, split, batch_size, device) -> dict:
        was = model.training
        model.eval()
        parts: dict[str, list] = {}
        for batch in task.eval_batches(split, batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            parts.setdefault("h", []).append(model.features(batch["x"], batch.get("attention_mask")))
            for k in ("y", "query_mask"):
                if k in batch:
                    parts.setdefault(k, []).append(batch[k])
        model.train(was)
        return {k: torch.cat(v).clone() for k, v in parts.items()}  # clone: out of inference mode

    def train_batch(self, step: int, batch_size: int) -> dict:
        idx = self.task.train_indices(step, batch_size)
        return {k: v[idx] for k, v in self.splits["train"].items()}

    def eval_batches(self, split, batch_size, limit=None):
        data = self.splits[split]
        n = len(data["y"]) if limit is None else min(limit, len(data["y"]))
        for i in range(0, n, batch_size):
            yield {k: v[i:i + batch_size] for k, v in data.items()}


@torch.no_grad()
def head_step(layer: torch.nn.Linear, opt: torch.optim.Optimizer, h: torch.Tensor, y: torch.Tensor,
              n_classes: int, clip_norm: float) -> torch.Tensor:
    """One training step of the output layer alone on cached features, with the gradient written out
    (linear + mean cross-entropy): the same step as autograd's, without its per-step bookkeeping,
    which is most of the cost when the model is one small matrix. Returns the loss."""
    x = h.reshape(-1, h.shape[-1])
    logits = torch.addmm(layer.bias, x, layer.weight.t())
    flat = logits.view(-1, n_classes).float()
    t = y.reshape(-1)
    logp = torch.log_softmax(flat, -1)
    loss = -logp.gather(1, t[:, None]).mean()
    g = logp.exp_()
    g[torch.arange(len(t)), t] -= 1.0
    g = g.div_(len(t)).view_as(logits).to(logits.dtype)
    gw, gb = g.t() @ x, g.sum(0)
    norm = torch.sqrt(gw.square().sum() + gb.square().sum())
    scale = torch.clamp(clip_norm / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s rule
    layer.weight.grad, layer.bias.grad = gw.mul_(scale), gb.mul_(scale)
    opt.step()
    return loss


def check_cacheable(cfg: RunConfig, task: Task) -> None:
    if set(cfg.train) != {"output"}:
        raise RunError(f"cache_features needs a run that trains only the output layer (train=output); this "
                       f"one trains {', '.join(cfg.train)}, so its features change every step")
    if not hasattr(task, "train_indices"):
        raise RunError(f"cache_features needs a fixed training set, but {cfg.task} draws fresh examples every "
                       "step; use mnist, listops, cifar10, cifar10-lra or homology")
    if getattr(task, "augment", False):
        raise RunError(f"cache_features cannot cache augmented training images; pass the task option "
                       f"augment=false (--option augment=false) to train {cfg.task} on fixed images")


def _discard(path: Path) -> None:
    """Remove a directory so that no half-deleted copy is ever left under its name: rename, then delete."""
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name.lstrip('.')}-{os.getpid()}-{time.time_ns()}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def _save_checkpoint(acc, run_dir: Path, state: dict) -> None:
    """Write checkpoint/ atomically: build a sibling directory, seal it, then swap it in.

    The seal is trainer_state.json, written last, with the size and sha256 of every other file.
    Invariant: at every instant checkpoint/ or .checkpoint-old/ is a complete, sealed checkpoint.
    """
    final, old = run_dir / "checkpoint", run_dir / ".checkpoint-old"
    tmp = run_dir / f".checkpoint-{state['step']}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        acc.save_state(str(tmp))
        files = {str(p.relative_to(tmp)): [p.stat().st_size, sha256_file(p)]
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json_atomic(tmp / "trainer_state.json", {**state, "files": files})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: give the space back, keep the old one
        raise
    _fault("checkpoint-written")
    if final.exists():
        _discard(old)
        final.rename(old)
        _fault("checkpoint-swap")
    # else: resumed from .checkpoint-old after a kill between the renames; it stays until this lands
    tmp.rename(final)
    _discard(old)


def _checkpoint_keys(ckpt: Path) -> set[str]:
    from safetensors import safe_open
    files = list(ckpt.glob("model*.safetensors"))
    if not files:
        raise RunError(f"checkpoint in {ckpt} has no model file; delete it to restart the run")
    try:
        with safe_open(str(files[0]), framework="pt") as f:
            return {k.removeprefix("module.") for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise RunError(f"checkpoint file {files[0]} is unreadable ({e}); delete {ckpt} to restart the run") from e


_STATE_KEYS = ("config_hash", "step", "history", "best_val", "best_step", "evals_since_best", "elapsed",
               "last_finite_loss", "frozen_fingerprint", "stopped")


def _checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint directory cannot be trusted, or None if its seal holds."""
    seal = ckpt / "trainer_state.json"
    if not seal.exists():
        return "trainer_state.json is missing (the checkpoint was never completed)"
    try:
        state = read_json(seal)
    except (OSError, ValueError) as e:
        return f"trainer_state.json is unreadable ({e})"
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        return "trainer_state.json lacks training-state fields"
    files = state.get("files")
    if files is None:  # written before checkpoints were sealed: at least the model file must open
        try:
            _checkpoint_keys(ckpt)
        except RunError as e:
            return str(e)
        return None
    try:
        listed = [(str(name), int(size), str(digest)) for name, (size, digest) in files.items()]
    except (AttributeError, TypeError, ValueError):
        return "trainer_state.json has a malformed file list"
    if not any(name.endswith(".safetensors") for name, _, _ in listed):
        return "the seal lists no model file"
    for name, size, digest in listed:
        p = ckpt / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != size:
            return f"{name} has {p.stat().st_size} bytes, not the {size} it was written with (truncated?)"
        if sha256_file(p) != digest:
            return f"{name} does not match the sha256 it was written with"
    return None


def _find_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose seal holds, and what is wrong with those skipped.

    A kill between the two renames of a swap leaves only .checkpoint-old: still a complete checkpoint.
    """
    problems = []
    for cand in (run_dir / "checkpoint", run_dir / ".checkpoint-old"):
        if not cand.exists():
            continue
        why = _checkpoint_problem(cand)
        if why is None:
            return cand, problems
        problems.append(f"{cand}: {why}")
    return None, problems


def _clean_leftovers(run_dir: Path, checkpoints: bool = False) -> None:
    """Remove what killed processes left behind: unswapped checkpoints, trash, temporary files.
    Only called with the run directory's lock held, so nothing here is being written."""
    for p in run_dir.iterdir():
        n = p.name
        if p.is_dir() and ((n.startswith(".checkpoint-") and n.endswith(".tmp")) or n.startswith(".trash-")
                           or (checkpoints and n in ("checkpoint", ".checkpoint-old"))):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and n.startswith(".") and n.endswith(".tmp"):
            p.unlink(missing_ok=True)


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
    except OSError as e:
        if e.errno not in _NO_SPACE:
            raise
        raise RunError(f"could not write to {run_dir}: {e}. No result was written and the last complete "
                       "checkpoint is kept: free space (or make the directory writable), then run again "
                       "with --resume (it continues from that checkpoint)") from e


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _train_locked(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> dict:
    chash = cfg.hash()
    _check_run_dir(run_dir, cfg, resume)
    if resume and (run_dir / "result.json").exists():
        result = _read_result(run_dir, chash)
        _clean_leftovers(run_dir, checkpoints=True)  # a kill after the result, before the cleanup
        return result
    _clean_leftovers(run_dir)

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    t_start = time.time()
    model, task = build(cfg)
    if cfg.cache_features:
        check_cacheable(cfg, task)  # before anything is written into the run directory
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
    # On cached features a step is a few small kernels, so the fused Adam's single call matters.
    opt = torch.optim.Adam(params, lr=cfg.lr, fused=True if cfg.cache_features else None)
    if cfg.cache_features:
        if cfg.grad_accum != 1:
            raise RunError("cache_features trains on whole batches of cached features; use grad_accum=1")
    model, opt = acc.prepare(model, opt)
    device = acc.device

    ckpt, problems = _find_checkpoint(run_dir) if resume else (None, [])
    if ckpt is None and problems:
        raise RunError(f"no usable checkpoint in {run_dir}: " + "; ".join(problems) + ". Refusing to load a "
                       "damaged checkpoint: delete the listed directories to restart this run from step 0")
    if ckpt is not None:
        if problems:  # the newest checkpoint is damaged: fall back to the previous one, drop the damaged one
            warnings.warn(f"skipping damaged checkpoint ({'; '.join(problems)}); resuming from {ckpt}",
                          RuntimeWarning, stacklevel=2)
            _discard(run_dir / "checkpoint")
        state = read_json(ckpt / "trainer_state.json")
        state.pop("files", None)
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

    cache = None
    if cfg.cache_features:
        cache = FeatureCache(acc.unwrap_model(model), task, cfg.eval_batch_size, device,
                             ("train", "val", "test", *task.extra_splits))
    out_layer = acc.unwrap_model(model).output
    n_train = task.split_size("train") if hasattr(task, "train_indices") else None
    step_seconds: list[float] = []  # pure training-step time per step of this process (no evaluation)

    if not state["history"]:  # the starting point of the learning curve
        val0 = evaluate(model, task, "val", cfg.eval_batch_size, device, cache=cache)
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
        t_step = time.perf_counter()
        if cache is not None:
            b = cache.train_batch(step, cfg.batch_size)
            losses.append(head_step(out_layer, opt.optimizer, b["h"].to(device), b["y"].to(device),
                                    task.n_classes, cfg.clip_norm))
            _fault("step")
        else:
            micro = ({k: v.to(device) for k, v in task.train_batch(step * cfg.grad_accum + m, cfg.batch_size).items()}
                     for m in range(cfg.grad_accum))
            losses += train_step(acc, model, opt, params, micro, cfg.grad_accum, task.n_classes, cfg.clip_norm,
                                 before_update=lambda: _fault("step"))
        step_seconds.append(time.perf_counter() - t_step)
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            seg = torch.stack(losses).float().reshape(-1, cfg.grad_accum).mean(1).tolist()
            losses.clear()
            for i, v in enumerate(seg):
                if not math.isfinite(v):
                    bad = step - len(seg) + i + 1
                    last = state["last_finite_loss"]
                    raise NonFiniteLoss(
                        f"loss became {v} at step {bad} of run {run_dir}; last finite loss "
                        f"{'none (the first step failed)' if last is None else f'{last:.6g}'}. "
                        f"No result was written. Try a lower --lr (now {cfg.lr}), "
                        "fp32 precision or fewer trained groups, in a new --out (a changed config cannot "
                        "resume this checkpoint).")
                state["last_finite_loss"] = v
            val = evaluate(model, task, "val", cfg.eval_batch_size, device, cache=cache)
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
    test = evaluate(unwrapped, task, "test", cfg.eval_batch_size, device, cache=cache)
    tr = evaluate(unwrapped, task, "train", cfg.eval_batch_size, device, limit=cfg.train_eval_examples, cache=cache)
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
    result["train_step_seconds"] = round(sum(step_seconds), 4)  # this process's steps, evaluation excluded
    if step_seconds and n_train:
        per_epoch = -(-n_train // (cfg.batch_size * cfg.grad_accum))
        chunks = [step_seconds[i:i + per_epoch] for i in range(0, len(step_seconds), per_epoch)]
        result["epoch_step_seconds"] = [round(sum(c), 6) for c in chunks]
        result["epoch_steps"] = [len(c) for c in chunks]  # the last epoch may be partial
    if cache is not None:
        result["feature_cache"] = {"build_seconds": round(cache.build_seconds, 4),
                                   "note": "frozen features computed once, in inference mode (no dropout "
                                           "below the output layer)"}
    for split in task.extra_splits:  # further held-out sets, each scored in full
        result.setdefault("extra_test", {})[split] = evaluate(unwrapped, task, split, cfg.eval_batch_size, device,
                                                              cache=cache)
    dropped = {s: task.split_dropped(s) for s in ("val", "test", *task.extra_splits)}
    if any(dropped.values()):
        # Examples a length policy left out: report accuracy excluding them and counting them as wrong.
        result["dropped_examples"] = dropped
        scored = {"test": test["accuracy"], **{s: m["accuracy"] for s, m in result.get("extra_test", {}).items()}}
        result["accuracy_dropped_as_wrong"] = {
            s: a * task.split_size(s) / (task.split_size(s) + dropped[s]) for s, a in scored.items()}
    if getattr(unwrapped, "init_source", None):
        result["init_source"] = unwrapped.init_source
    if cfg.save_backbone:
        from safetensors.torch import save_file
        path = run_dir / "backbone.safetensors"
        tmp = run_dir / ".backbone.safetensors.tmp"
        save_file({k: v.detach().contiguous().cpu() for k, v in unwrapped.backbone.state_dict().items()}, str(tmp))
        os.replace(tmp, path)
        result["backbone_weights"] = {"file": path.name, "sha256": sha256_file(path)}
    _fault("final-eval")
    write_json_atomic(run_dir / "result.json", result)
    _clean_leftovers(run_dir, checkpoints=True)
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
        probe.unlink(missing_ok=True)
    except OSError as e:
        raise RunError(f"cannot write to output directory {run_dir}: {e}; choose another --out") from e


def _check_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    """Refuse a directory that belongs to another config, or an unfinished run without --resume."""
    cfg_file = run_dir / "config.json"
    if cfg_file.exists():
        try:
            old = read_json(cfg_file).get("config_hash")
        except (OSError, ValueError, AttributeError) as e:
            raise RunError(f"{cfg_file} is unreadable ({e}); the run directory was damaged after it was "
                           "written: delete it, or use another --out") from e
        if old != cfg.hash():
            raise RunError(f"{run_dir} holds a run of another config ({old}, this one is {cfg.hash()}); "
                           "refusing to mix runs: use another --out or delete the directory")
        if not resume:
            raise RunError(f"{run_dir} already holds this run; pass --resume to finish or reuse it, "
                           "or use another --out")


def _read_result(run_dir: Path, chash: str) -> dict:
    """A finished run's result, refused if damaged or if it belongs to another config."""
    path = run_dir / "result.json"
    try:
        result = read_json(path)
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is unreadable ({e}); fpt writes it atomically, so it was damaged "
                       "afterwards: delete it to compute the run again (with --resume)") from e
    if not isinstance(result, dict) or result.get("config_hash") != chash:
        got = result.get("config_hash") if isinstance(result, dict) else None
        raise RunError(f"{path} belongs to config {got}, not {chash}; refusing to report it for this "
                       "run: delete it, or use another --out")
    return result


def result_without_timing(result: dict) -> dict:
    """The numbers of a result, without wall-clock fields (which differ between identical runs)."""
    drop = {"wall_seconds", "run_seconds_this_process", "train_step_seconds", "epoch_step_seconds", "epoch_steps"}
    out = {k: v for k, v in result.items() if k not in drop}
    if "feature_cache" in out:
        out["feature_cache"] = {k: v for k, v in out["feature_cache"].items() if k != "build_seconds"}
    return out
