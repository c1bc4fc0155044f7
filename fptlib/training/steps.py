"""What one training step and one evaluation compute: the gradient step (what `train` runs and
`fpt bench` times), exact evaluation over a whole split, and output-only training on cached
features (paper Table 10)."""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as nnf

from ..config import RunConfig
from ..data import CACHEABLE, IGNORE, Task, fixed_training_set
from ..models import FPT
from .errors import RunError


def accelerator(precision: str, **kw):
    """An Accelerator for one run in this precision. Accelerate keeps one state per process, so a run
    in another precision than the previous one in the same process (a notebook, a plan calibration)
    resets that state first; a distributed launch's process group is kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    want = "no" if precision == "fp32" else precision
    if AcceleratorState._shared_state and str(AcceleratorState().mixed_precision) != want:
        AcceleratorState._reset_state()
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=want, **kw)


def processes():
    """The launch's processes (Accelerate's PartialState, which joins their process group) when one run
    is spread over several (`accelerate launch`, `torchrun`); None for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available())


def leave_launch() -> None:
    """Leave the launch's process group before the interpreter exits (a no-op for one process, which
    never joins one). A gloo group left alive aborts the process in its C++ teardown now and then
    ("terminate called without an active exception", SIGABRT), turning a finished run into a failed launch."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_shares(batch_size: int, n_processes: int) -> None:
    if n_processes > 1 and batch_size % n_processes:
        raise RunError(f"batch size {batch_size} cannot be split evenly over {n_processes} processes (each "
                       f"trains an equal share of every batch): pass a --batch-size divisible by {n_processes}, "
                       "or launch a number of processes that divides it")


def share(batch: dict, index: int, count: int) -> dict:
    """Process `index`'s contiguous 1/count of the rows of a global batch (the whole batch for one process)."""
    if count == 1:
        return batch
    rows = len(batch["y"]) // count
    return {k: v[index * rows:(index + 1) * rows] for k, v in batch.items()}


def from_main(acc, obj):
    """The main process's `obj`, on every process (no collective for a single process)."""
    if acc.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list
    return broadcast_object_list([obj])[0]


def on_all(acc, flag: bool) -> bool:
    """Whether `flag` holds on every process."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.gather(torch.tensor([int(flag)], device=acc.device)).min())


def averager(acc):
    """None for a single process, else a function averaging a tensor over the processes (all-reduce)."""
    if acc.num_processes == 1:
        return None

    def average(t: torch.Tensor) -> torch.Tensor:
        return acc.reduce(t, reduction="mean")
    return average


def to_device(batch: dict, device) -> dict:
    """A batch on the run's device; on CUDA through pinned memory, copied without blocking the host."""
    if getattr(device, "type", str(device)) == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def loss_fn(logits: torch.Tensor, batch: dict, n_classes: int) -> torch.Tensor:
    return nnf.cross_entropy(logits.float().reshape(-1, n_classes), batch["y"].reshape(-1))


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
        batch = to_device(batch, device)
        if cache is not None:
            logits = model.output(batch["h"]).float()
        else:
            logits = model(batch["x"], batch.get("attention_mask")).float()
        logits = logits.reshape(logits.shape[0], -1, task.n_classes)
        y = batch["y"].reshape(logits.shape[0], -1)
        scored = y != IGNORE  # self-pretraining scores only its masked tokens
        hit = (logits.argmax(-1) == y) & scored
        correct += int(hit.sum())
        total += int(scored.sum())
        loss_sum += float(nnf.cross_entropy(logits.reshape(-1, task.n_classes), y.reshape(-1), reduction="sum"))
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
            batch = to_device(batch, device)
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
              n_classes: int, clip_norm: float, average=None) -> torch.Tensor:
    """One training step of the output layer alone on cached features, with the gradient written out
    (linear + mean cross-entropy): the same step as autograd's, without its per-step bookkeeping,
    which is most of the cost when the model is one small matrix. Returns the loss (of this process's
    rows). With several processes, `average` (see `averager`) all-reduces the gradient before clipping."""
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
    if average is not None:  # each process's share is a mean over its rows: their average is the batch's
        gw, gb = average(gw), average(gb)
    norm = torch.sqrt(gw.square().sum() + gb.square().sum())
    scale = torch.clamp(clip_norm / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s rule
    layer.weight.grad, layer.bias.grad = gw.mul_(scale), gb.mul_(scale)
    opt.step()
    return loss


def check_cacheable(cfg: RunConfig, task: Task) -> None:
    if set(cfg.train) != {"output"}:
        raise RunError(f"cache_features needs a run that trains only the output layer (train=output); this "
                       f"one trains {', '.join(cfg.train)}, so its features change every step")
    if not fixed_training_set(task):
        raise RunError(f"cache_features needs a fixed training set, but {cfg.task} draws fresh examples every "
                       f"step; use {', '.join(CACHEABLE[:-1])} or {CACHEABLE[-1]}")
    if getattr(task, "augment", False):
        raise RunError(f"cache_features cannot cache augmented training images; pass the task option "
                       f"augment=false (--option augment=false) to train {cfg.task} on fixed images")
