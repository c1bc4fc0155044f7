"""The no-transformer control: input layer, then pooling, then output layer, with nothing that mixes tokens
in between. What a task gives to a model that only sums up its tokens."""
from __future__ import annotations

import torch
from torch import nn

# Position table long enough for every task at every scale (ListOps at the paper scale: 2,000 tokens)
POOL_POSITIONS = 2048


class PoolBackbone(nn.Module):
    """Each token's embedding plus its learned position, layer-normed, then averaged over the real tokens;
    every position reads that average. Trains in FPT's groups (positions, layernorm) beside the new input
    and output layers, so it is FPT with the transformer taken out."""

    family = "pool"

    def __init__(self, width: int, max_positions: int = POOL_POSITIONS):
        super().__init__()
        self.wpe = nn.Embedding(max_positions, width)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.ln = nn.LayerNorm(width)
        self.width, self.max_positions = width, max_positions

    def forward(self, embeds, attention_mask=None, output_attentions=False, n_last=None):
        if output_attentions:
            raise ValueError("the pool control has no attention to return")
        t = embeds.shape[1]
        h = self.ln(embeds + self.wpe.weight[:t])
        real = (torch.ones(h.shape[:2], dtype=h.dtype, device=h.device) if attention_mask is None
                else attention_mask.to(h.dtype))
        pooled = (h * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return pooled[:, None].expand(-1, t, -1)

    def groups(self) -> dict[str, str]:
        return {"wpe.weight": "positions", "ln.weight": "layernorm", "ln.bias": "layernorm"}

    def blocks(self) -> nn.ModuleList:
        return nn.ModuleList()  # no block: nothing mixes tokens
