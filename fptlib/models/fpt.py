"""The Frozen Pretrained Transformer: new input layer -> backbone -> new output layer on the last token(s)."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from ..groups import FPT_GROUPS, TRAINABLE_GROUPS, parse_groups
from .backbones import Backbone, BackboneError


class FPT(nn.Module):
    def __init__(self, backbone: Backbone, *, input_kind: str, d_in: int, n_out_tokens: int,
                 out_dim: int, orth_gain: float = 1.41, input_dropout: float = 0.1):
        super().__init__()
        w = backbone.width
        if input_kind == "linear":
            self.input = nn.Linear(d_in, w)
            # Orthogonal init matters when the input layer is frozen (paper §3.12).
            nn.init.orthogonal_(self.input.weight, gain=orth_gain)
            nn.init.zeros_(self.input.bias)
        elif input_kind == "tokens":
            self.input = nn.Embedding(d_in, w)  # N(0, 1), as the paper's Gaussian init for embeddings
        else:
            raise ValueError(f"input_kind must be 'linear' or 'tokens', not {input_kind!r}")
        self.drop = nn.Dropout(input_dropout)
        self.backbone = backbone
        self.output = nn.Linear(w, out_dim)
        self.n_out_tokens = n_out_tokens
        self.set_trainable(FPT_GROUPS)  # the paper's default until told otherwise

    def forward(self, x, attention_mask=None, output_attentions=False):
        h = self.features(x, attention_mask, output_attentions)
        if output_attentions:
            h, attn = h
            return self.output(h), attn
        return self.output(h)

    def features(self, x, attention_mask=None, output_attentions=False):
        """Hidden states of the tokens the output layer reads: (B, n_out_tokens, width).
        Everything below the output layer; cached when only the output layer trains (Table 10)."""
        h = self.backbone(self.drop(self.input(x)), attention_mask, output_attentions, n_last=self.n_out_tokens)
        attn = None
        if output_attentions:
            h, attn = h
        if attention_mask is not None and self.n_out_tokens == 1:
            # Read the last real token of each padded sequence.
            last = attention_mask.long().sum(1) - 1
            h = h[torch.arange(h.shape[0], device=h.device), last][:, None]
        else:
            h = h[:, -self.n_out_tokens:]
        return (h, attn) if output_attentions else h

    # ---- parameter groups -------------------------------------------------------------------
    def groups(self) -> dict[str, str]:
        """Every parameter name -> its group; checked to cover the whole model exactly once."""
        owner = {f"input.{n}": "input" for n, _ in self.input.named_parameters()}
        owner |= {f"output.{n}": "output" for n, _ in self.output.named_parameters()}
        owner |= {f"backbone.{n}": g for n, g in self.backbone.groups().items()}
        names = {n for n, _ in self.named_parameters()}
        if names != set(owner):
            raise BackboneError(f"parameter grouping does not cover the model: "
                                f"missing {sorted(names - set(owner))[:5]}, extra {sorted(set(owner) - names)[:5]}")
        return owner

    def set_trainable(self, train_groups) -> tuple[str, ...]:
        groups = parse_groups(train_groups)
        owner = self.groups()
        last = None
        if "attention_last" in groups:
            if not hasattr(self.backbone, "block_index"):
                raise BackboneError(f"attention_last needs a transformer backbone, not {self.backbone.family}")
            last = len(self.backbone.blocks()) - 1
        for n, p in self.named_parameters():
            on = owner[n] in groups or (last is not None and owner[n] == "attention"
                                        and self.backbone.block_index(n.removeprefix("backbone.")) == last)
            p.requires_grad_(on)
        return groups

    def param_report(self) -> dict:
        """Trainable and total parameter counts, per group."""
        owner = self.groups()
        by_group = {g: 0 for g in TRAINABLE_GROUPS}
        total_by_group = {g: 0 for g in TRAINABLE_GROUPS + ("unused",)}
        for n, p in self.named_parameters():
            total_by_group[owner[n]] += p.numel()
            if p.requires_grad:
                by_group[owner[n]] += p.numel()
        return {"trainable_params": sum(by_group.values()),
                "trainable_params_by_group": by_group,
                "total_params": sum(total_by_group.values()),
                "total_params_by_group": total_by_group}

    def frozen_fingerprint(self) -> dict[str, str]:
        """SHA-256 of every frozen tensor: cheap to keep, exact to compare (no copies of big models)."""
        return {n: hashlib.sha256(p.detach().contiguous().cpu().numpy().tobytes()).hexdigest()
                for n, p in self.named_parameters() if not p.requires_grad}
