"""The figures of notebook 04 (a layer's map, its heads, every layer, alignment per layer) and the helpers
the explorer draws with, exactly as the figures draw (`token_labels`, `draw_map`, `marked_cells`;
`query_patterns`, which stored pattern a Bit Memory query repeats, is shared with `measure`)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:  # type only: measure imports this module to draw an Analysis
    import torch

    from .measure import Analysis


def query_patterns(x: torch.Tensor | np.ndarray, n_patterns: int) -> np.ndarray:
    """Bit Memory: which stored pattern each example's query repeats (the unmasked query bits agree
    with it exactly; with hundreds of bits another pattern agreeing as well is vanishingly rare)."""
    x = np.asarray(x, dtype=np.float64)
    seq = x.reshape(len(x), n_patterns + 1, -1)
    agree = (seq[:, :-1] * seq[:, -1:]).sum(-1)
    return agree.argmax(1)


def _token_labels(an: Analysis) -> tuple[list[str], int]:
    T = an.maps["trained"].shape[-1]
    if an.task_name == "bit-xor":
        n = T // 2
        return [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)], n
    k = T // (an.n_patterns + 1)
    return [f"p{t // k}.{t % k}" if t < T - k else f"q.{t % k}" for t in range(T)], T - k


def _memory_examples(an: Analysis) -> tuple[np.ndarray, int]:
    """Bit Memory: the examples whose query repeats the same stored pattern as the first example,
    so that an average over them keeps the retrieval pattern in place."""
    which = query_patterns(an.x.numpy(), an.n_patterns)
    return np.flatnonzero(which == which[0]), int(which[0])


def _draw_map(ax, m: np.ndarray, an: Analysis, title: str, vmax: float | None = None, small: bool = False,
              pattern: int | None = None):
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
    labels, first_out = _token_labels(an)
    T = m.shape[0]
    ax.axhline(first_out - 0.5, color="white", lw=0.8, ls="--")
    if an.task_name == "bit-xor":
        n = T // 2
        for i in range(n):  # where output token n+i should look: its partner i and itself
            for col in (i, n + i):
                ax.add_patch(_box(col, n + i, small))
    elif pattern is not None:
        k = T - first_out
        for j in range(k):
            ax.add_patch(_box(pattern * k + j, first_out + j, small))
    if small:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        step = max(1, T // 12)
        ax.set_xticks(range(0, T, step), labels[::step], rotation=90, fontsize=7)
        ax.set_yticks(range(0, T, step), labels[::step], fontsize=7)
        ax.set_xlabel("attended token (key)", fontsize=8)
        ax.set_ylabel("attending token (query)", fontsize=8)
    ax.set_title(title, fontsize=8 if small else 9)
    return im


def _box(col: int, row: int, small: bool):
    from matplotlib.patches import Rectangle
    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", lw=0.6 if small else 1.2)


def _maps_for_plot(an: Analysis, which: str, layer: int):
    if an.task_name == "bit-memory":
        ex, pattern = _memory_examples(an)
        return an.maps[which][layer][ex], pattern, len(ex)
    return an.maps[which][layer], None, an.maps[which].shape[1]


def _subtitle(an: Analysis, n: int, pattern: int | None, heads: bool = True) -> str:
    over = "mean over heads and" if heads else "mean over"
    if pattern is None:
        return f"{over} {n} test examples; red boxes: tokens i and 5+i for output token 5+i"
    return (f"{over} the {n} test examples whose query repeats pattern {pattern}; red boxes: "
            f"query token j -> token j of pattern {pattern}")


def layer_figure(an: Analysis, layer: int = 0):
    """Head-averaged map of one layer, trained beside untrained (the demo's figure: layer 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.0))
    row = an.table.set_index(["model", "layer"])
    for ax, which in zip(axes, ("trained", "untrained")):
        a, pattern, n = _maps_for_plot(an, which, layer)
        r = row.loc[(which, layer + 1)]
        if an.task_name == "bit-xor":
            stat = (f"mass on {{i, 5+i}} {r.mass_pair:.2f} (uniform {r.uniform_pair:.2f}), "
                    f"top-2 exact {100 * r.top2_exact:.0f} %")
        else:
            stat = f"mass on repeated pattern {r.mass_pattern:.2f} (uniform {r.uniform_pattern:.2f})"
        im = _draw_map(ax, a.mean(axis=(0, 1)), an, f"{which}, layer {layer + 1}\n{stat}", pattern=pattern)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    a, pattern, n = _maps_for_plot(an, "trained", layer)
    fig.suptitle(f"{an.cfg.task}, {an.cfg.backbone} ({an.cfg.scale} scale), layer {layer + 1}: "
                 f"{_subtitle(an, n, pattern)}", fontsize=9)
    fig.tight_layout()
    return fig


def heads_figure(an: Analysis, layer: int = 0):
    """Every head of one layer (mean over examples), trained rows above untrained rows."""
    H = an.maps["trained"].shape[2]
    ncols = min(H, 6)
    nrows = math.ceil(H / ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.9 * ncols, 2.0 * 2 * nrows + 0.6), squeeze=False)
    for m, which in enumerate(("trained", "untrained")):
        a, pattern, n = _maps_for_plot(an, which, layer)
        per_head = a.mean(0)
        for h in range(nrows * ncols):
            ax = axes[m * nrows + h // ncols][h % ncols]
            if h >= H:
                ax.axis("off")
                continue
            _draw_map(ax, per_head[h], an, f"{which} head {h + 1}", small=True, pattern=pattern)
    a, pattern, n = _maps_for_plot(an, "trained", layer)
    fig.suptitle(f"{an.cfg.task}, {an.cfg.backbone}, layer {layer + 1}, each head (own colour scale): "
                 f"{_subtitle(an, n, pattern, heads=False)}", fontsize=8)
    fig.tight_layout()
    return fig


def all_layers_figure(an: Analysis):
    """Head-averaged maps of every layer: trained (top) and untrained (bottom)."""
    L = an.n_layers
    fig, axes = plt.subplots(2, L, figsize=(2.4 * L + 0.5, 5.2), squeeze=False)
    for m, which in enumerate(("trained", "untrained")):
        for layer in range(L):
            a, pattern, n = _maps_for_plot(an, which, layer)
            _draw_map(axes[m][layer], a.mean(axis=(0, 1)), an, f"{which}, layer {layer + 1}", small=True,
                      pattern=pattern)
    a, pattern, n = _maps_for_plot(an, "trained", 0)
    fig.suptitle(f"{an.cfg.task}, {an.cfg.backbone}, every layer: {_subtitle(an, n, pattern)}", fontsize=8)
    fig.tight_layout()
    return fig


def layers_figure(an: Analysis):
    """The alignment number of every layer, trained against untrained and uniform attention."""
    t = an.table
    xor = an.task_name == "bit-xor"
    mass, uni = ("mass_pair", "uniform_pair") if xor else ("mass_pattern", "uniform_pattern")
    second, second_title = ("top1_partner", "output rows peaking at partner bit i") if xor else \
        ("top1_slot", "query rows peaking at the matching token")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for which, color in (("trained", "#1f77b4"), ("untrained", "#ff7f0e")):
        s = t[t.model == which]
        axes[0].plot(s.layer, s[mass], marker="o", color=color, label=which)
        axes[1].plot(s.layer, 100 * s[second], marker="o", color=color, label=which)
    s = t[t.model == "trained"]
    axes[0].plot(s.layer, s[uni], color="grey", ls="--", label="uniform attention")
    axes[1].axhline(100 / an.maps["trained"].shape[-1], color="grey", ls="--", label="1 / tokens")
    axes[0].set_ylabel("attention mass on {i, 5+i}" if xor else "attention mass on the repeated pattern",
                       fontsize=8)
    axes[1].set_ylabel(f"% {second_title}", fontsize=8)
    for ax in axes:
        ax.set_xlabel("layer")
        ax.set_xticks(list(s.layer))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{an.cfg.task}, {an.cfg.backbone} ({an.cfg.scale} scale): alignment per layer", fontsize=9)
    fig.tight_layout()
    return fig


def token_labels(an: Analysis) -> tuple[list[str], int]:
    """The token names the figures use and the first output/query position. Bit XOR: a0..a4 are the
    first string's bits, b0..b4 the second's (the output tokens: position 5+i outputs a_i XOR b_i);
    Bit Memory: p<k>.<j> is token j of stored pattern k, q.<j> token j of the query."""
    return _token_labels(an)


def draw_map(ax, m: np.ndarray, an: Analysis, title: str, vmax: float | None = None, small: bool = False,
             pattern: int | None = None):
    """One (T, T) map on `ax` exactly as the figures draw it (labels, the dashed line before the output
    tokens, red boxes on `marked_cells`); returns the image for a colour bar."""
    return _draw_map(ax, m, an, title, vmax=vmax, small=small, pattern=pattern)


def marked_cells(an: Analysis, pattern: int | None = None) -> list[tuple[int, int]]:
    """(query row, key column) of every red box `draw_map` draws: Bit XOR, output token 5+i on token i
    (its partner a_i) and on itself (b_i), the two inputs of its XOR; Bit Memory, query token j on
    token j of stored pattern `pattern` (none when no pattern is given)."""
    T = an.maps["trained"].shape[-1]
    if an.task_name == "bit-xor":
        n = T // 2
        return [(n + i, col) for i in range(n) for col in (i, n + i)]
    if pattern is None:
        return []
    first_out = token_labels(an)[1]
    k = T - first_out
    return [(first_out + j, pattern * k + j) for j in range(k)]
