"""Model and task for a resolved config, deterministic in its seed."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import SOURCE_INITS, SOURCE_STEPS, RunConfig, resolve
from ..data import MaskedInputs, Task, make_task
from ..models import FPT, BackboneSpec, build_backbone
from ..seeding import Stream, stream_seed
from .errors import RunError

# Every parameter of a random transformer trains on the masked objective: at 1e-3, MNIST's (cpu, bf16) sat at the
# base rate for 300 steps (loss 0.40: every pixel predicted off); at 1e-4 its loss fell to 0.26
SELF_PRETRAIN_LR = 1e-4


def source_config(cfg: RunConfig) -> RunConfig:
    """The source run of an init in SOURCE_INITS: the same architecture, randomly initialised and fully
    trained, whose backbone becomes this run's frozen one.
    - bit (paper Table 2): trained on Bit Memory at the same scale and seed (bit_source_steps steps where set).
    - self-pretrained (Amos et al. 2024): trained on this task's own training inputs with tokens masked
      (objective "masked", pretrain_steps steps), at seed 0 whatever this run's seed: like the language
      model of init pretrained, one checkpoint per task that every seed and learning rate shares."""
    if cfg.init not in SOURCE_INITS:
        raise ValueError(f"init {cfg.init!r} has no source run; those that do: {', '.join(SOURCE_INITS)}")
    common = dict(backbone=cfg.backbone, init="random", train=("full",), scale=cfg.scale, n_layers=cfg.n_layers,
                  save_backbone=True, steps=getattr(cfg, SOURCE_STEPS[cfg.init]))
    if cfg.init == "bit":
        return resolve(RunConfig(task="bit-memory", seed=cfg.seed, **common))
    return resolve(RunConfig(task=cfg.task, task_options=cfg.task_options, seed=0, objective="masked",
                             precision=cfg.precision, lr=SELF_PRETRAIN_LR, **common))


def build(cfg: RunConfig, source: tuple[Path, dict] | None = None) -> tuple[FPT, Task]:
    """Model and task for a resolved config. An init in SOURCE_INITS takes the backbone of its source run,
    (path, summary), which `fptlib.training.loop.source_weights` trains or finds."""
    task = make_task(cfg.task, seed=cfg.seed, **cfg.task_options)
    if cfg.objective == "masked":
        task = MaskedInputs(task)
    if cfg.init in SOURCE_INITS and source is None:
        raise RunError(f"init {cfg.init!r} needs the weights of its source run: build the model with "
                       "fptlib.training.build_for_run (it trains or finds that run first)")
    weights, source = source if cfg.init in SOURCE_INITS else (None, None)
    spec = BackboneSpec(name=cfg.backbone, init=cfg.init, n_layers=cfg.n_layers,
                        attn_implementation=cfg.attn_implementation, lstm_width=cfg.lstm_width,
                        lstm_layers=cfg.lstm_layers, lstm_residual=cfg.lstm_residual,
                        lstm_positions=cfg.lstm_positions, attention_dropout=cfg.attention_dropout,
                        weights=str(weights) if weights else None, keep=cfg.keep)
    backbone = build_backbone(spec, cfg.seed)
    if task.seq_len > backbone.max_positions:
        raise RunError(f"task {cfg.task} has sequences of {task.seq_len} tokens but backbone {cfg.backbone} "
                       f"has {backbone.max_positions} positions; choose a larger patch size, a shorter "
                       "task, or a backbone with more positions")
    # Heads are seeded apart from the backbone so pretrained and random runs share the same heads.
    torch.manual_seed(stream_seed(cfg.seed, Stream.HEADS))
    model = FPT(backbone, input_kind=task.input_kind, d_in=task.d_in, n_out_tokens=task.n_out_tokens,
                out_dim=task.out_dim, orth_gain=cfg.orth_gain, input_dropout=cfg.input_dropout)
    model.set_trainable(cfg.train)
    model.init_source = source  # where a source init took its weights from (None otherwise)
    return model, task
