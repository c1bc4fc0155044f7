"""The original (2021) implementation's training and evaluation step, rebuilt from its description
(docs/paper.md §5) as the speed baseline of `fpt bench`. It is never used to produce results.

What makes it the original's step, and what costs time:
- HF GPT-2 with the 2021 eager attention: Q·Kᵀ, division by √d, `torch.where` against the causal
  buffer, softmax, dropout on the T×T weights, ·V; and the tanh GELU written out in Python ops;
- fp32; Adam handed every parameter (frozen ones included; it skips those without gradients);
- gradient clipping over every parameter;
- training accuracy computed on the host every step (a device synchronisation on a GPU);
- evaluation on sampled batches of the training batch size under `no_grad`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

ATTENTION_2021 = "fpt_original_2021"


def _attention_2021(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers 4.1's GPT-2 attention, as an HF attention function ((B, H, T, d) in, (B, T, H, d) out)."""
    w = torch.matmul(query, key.transpose(-1, -2))
    w = w / math.sqrt(value.size(-1))
    if getattr(module, "is_causal", True):
        nd, ns = w.size(-2), w.size(-1)
        causal = torch.tril(torch.ones(ns, ns, dtype=torch.uint8, device=w.device))[ns - nd:ns, :ns]
        w = torch.where(causal.bool(), w, torch.tensor(-1e4, dtype=w.dtype, device=w.device))
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        w = w + attention_mask
    w = nnf.softmax(w, dim=-1)
    w = nnf.dropout(w, p=dropout, training=module.training)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), w


def _register() -> None:
    from transformers import AttentionInterface
    AttentionInterface.register(ATTENTION_2021, _attention_2021)


class GeluNew2021(nn.Module):
    """The tanh GELU of 2021's transformers, one Python op at a time."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class OriginalFPT(nn.Module):
    """in_net (Linear or Embedding) → dropout → transformer(inputs_embeds) → out_net on the last tokens."""

    def __init__(self, transformer: nn.Module, width: int, input_kind: str, d_in: int, n_out_tokens: int,
                 out_dim: int):
        super().__init__()
        self.in_net = nn.Linear(d_in, width) if input_kind == "linear" else nn.Embedding(d_in, width)
        self.drop = nn.Dropout(0.1)
        self.transformer = transformer
        self.out_net = nn.Linear(width, out_dim)
        self.n_out_tokens = n_out_tokens

    def forward(self, x):
        h = self.transformer(inputs_embeds=self.drop(self.in_net(x))).last_hidden_state
        return self.out_net(h[:, -self.n_out_tokens:])


def build_original(hf_model: nn.Module, family: str, input_kind: str, d_in: int, n_out_tokens: int,
                   out_dim: int, trainable: set[str]) -> OriginalFPT:
    """Wrap an HF backbone the way the original did; `trainable` names the parameters that train
    (relative to the backbone), so the baseline and ours do exactly the same learning work."""
    _register()
    hf_model.config._attn_implementation = ATTENTION_2021
    if family == "gpt2":
        for block in hf_model.h:
            block.mlp.act = GeluNew2021()
    width = hf_model.config.hidden_size
    m = OriginalFPT(hf_model, width, input_kind, d_in, n_out_tokens, out_dim)
    for n, p in m.transformer.named_parameters():
        p.requires_grad_(f"model.{n}" in trainable)
    return m


class OriginalStep:
    """One training step and one evaluation pass, exactly in the original trainer's manner."""

    def __init__(self, model: OriginalFPT, n_classes: int, lr: float = 1e-3, eval_batches: int = 25):
        self.model, self.n_classes, self.eval_batches = model, n_classes, eval_batches
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)  # every parameter, frozen included

    def _loss_acc(self, x, y):
        logits = self.model(x).reshape(-1, self.n_classes)
        y = y.reshape(-1)
        loss = nnf.cross_entropy(logits, y)
        preds = logits.detach().cpu().numpy().argmax(-1)  # on the host, every step
        return loss, float(np.mean(preds == y.cpu().numpy()))

    def train_step(self, x, y) -> tuple[float, float]:
        self.model.train()
        loss, acc = self._loss_acc(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()
        return float(loss.detach().cpu().item()), acc

    def evaluate(self, batches) -> tuple[float, float]:
        """Mean loss and accuracy over sampled batches (the original scored 25 of them)."""
        self.model.eval()
        losses, accs = [], []
        with torch.no_grad():
            for x, y in batches:
                loss, acc = self._loss_acc(x, y)
                losses.append(float(loss.cpu().item()))
                accs.append(acc)
        self.model.train()
        return float(np.mean(losses)), float(np.mean(accs))
