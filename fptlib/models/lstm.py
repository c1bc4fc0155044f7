"""Layer-normalised LSTM: the paper's recurrent baseline (3 layers, width of the transformer it replaces)."""
from __future__ import annotations

import torch
from torch import nn


class LayerNormLSTMLayer(nn.Module):
    """One LSTM layer with layer norm on the input and recurrent projections and on the cell.

    The input projection is computed for all time steps at once; only the recurrent part loops.
    The initial state is zero (the original drew a random one each forward, which only adds noise).
    """

    def __init__(self, d_in: int, width: int):
        super().__init__()
        self.width = width
        self.i2h = nn.Linear(d_in, 4 * width)
        self.h2h = nn.Linear(width, 4 * width, bias=False)
        self.ln_i = nn.LayerNorm(4 * width)
        self.ln_h = nn.LayerNorm(4 * width)
        self.ln_c = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        gates_x = self.ln_i(self.i2h(x))
        h = x.new_zeros(B, self.width)
        c = x.new_zeros(B, self.width)
        outs = []
        for t in range(T):
            gates = gates_x[:, t] + self.ln_h(self.h2h(h))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
            outs.append(h)
        return torch.stack(outs, dim=1)


class LayerNormLSTM(nn.Module):
    """Stack of layer-normalised LSTM layers with dropout between layers.

    `residual` adds each layer's input to its output and `positions` adds a learned position
    table to the input: both are the paper's §3.3 variants and off for the Table 1 baseline.
    """

    def __init__(self, width: int, n_layers: int = 3, dropout: float = 0.1,
                 residual: bool = False, max_positions: int = 0):
        super().__init__()
        self.width = width
        self.residual = residual
        self.layers = nn.ModuleList(LayerNormLSTMLayer(width, width) for _ in range(n_layers))
        self.drop = nn.Dropout(dropout)
        self.wpe = nn.Embedding(max_positions, width) if max_positions else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(x.shape[1], device=x.device))
        for layer in self.layers:
            y = self.drop(layer(x))
            x = x + y if self.residual else y
        return x
