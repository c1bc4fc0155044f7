"""Model and task for a resolved config, deterministic in its seed."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig, resolve
from ..data import Task, make_task
from ..models import FPT, BackboneSpec, build_backbone
from ..seeding import Stream, stream_seed
from .errors import RunError


def bit_source_config(cfg: RunConfig) -> RunConfig:
    """Init 'bit' (paper Table 2): the same architecture, randomly initialised and fully trained on
    Bit Memory at the same scale and seed (for bit_source_steps steps where set); its weights become the
    frozen backbone."""
    return resolve(RunConfig(task="bit-memory", backbone=cfg.backbone, init="random", train=("full",),
                             scale=cfg.scale, seed=cfg.seed, n_layers=cfg.n_layers, save_backbone=True,
                             steps=cfg.bit_source_steps))


def build(cfg: RunConfig, bit_weights: tuple[Path, dict] | None = None) -> tuple[FPT, Task]:
    """Model and task for a resolved config. Init 'bit' takes the weights of its Bit Memory source
    run, (path, summary), which `fptlib.training.loop.bit_source` trains or finds."""
    task = make_task(cfg.task, seed=cfg.seed, **cfg.task_options)
    if cfg.init == "bit" and bit_weights is None:
        raise RunError("init 'bit' needs the weights of its Bit Memory source run: build the model with "
                       "fptlib.training.build_for_run (it trains or finds that run first)")
    weights, source = bit_weights if cfg.init == "bit" else (None, None)
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
    model.init_source = source  # where init 'bit' took its weights from (None otherwise)
    return model, task
