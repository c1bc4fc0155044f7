"""Inference-only shortcuts for the HF backbones (evaluation and feature caching); each computes
the same function as the plain forward, up to float rounding (tested).

- The last block computes queries, attention output and MLP only for the tokens the output layer
  reads (keys and values still come from every token). For a classifier reading one token of 64,
  that removes ~98 % of the last block's query, projection and MLP work.
- On CPU, each MLP's first matmul and its GELU run as one oneDNN kernel (a GEMM with a GELU
  post-op) on weights packed once; this saves a full pass over the 4x-wide activations.

Neither is used while training: with dropout on, fewer random draws would change the masks and so
the numbers of a seeded run.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as nnf


def _heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, w = t.shape
    return t.view(B, T, n_heads, w // n_heads).transpose(1, 2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    B, H, T, d = t.shape
    return t.transpose(1, 2).reshape(B, T, H * d)


def _gpt2_last_block(block, n: int):
    attn = block.attn
    w = attn.embed_dim
    H = attn.num_heads

    def forward(hidden_states, *args, **kwargs):
        x = hidden_states
        B, T, _ = x.shape
        a = block.ln_1(x)
        W, b = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: (in, 3w)
        q = torch.addmm(b[:w], a[:, -n:].reshape(-1, w), W[:, :w]).view(B, n, w)
        kv = torch.addmm(b[w:], a.reshape(-1, w), W[:, w:]).view(B, T, 2 * w)
        k, v = kv.split(w, dim=2)
        # query i sits at position T-n+i and sees keys up to it (GPT-2 is causal)
        mask = torch.ones(n, T, dtype=torch.bool, device=x.device).tril(T - n)
        o = nnf.scaled_dot_product_attention(_heads(q, H), _heads(k, H), _heads(v, H), attn_mask=mask,
                                           scale=attn.scaling)
        h = attn.resid_dropout(attn.c_proj(_merge(o))) + x[:, -n:]
        h = h + block.mlp(block.ln_2(h))
        return torch.cat([x[:, :-n], h], dim=1)
    return forward


def _bert_last_layer(layer, n: int):
    sa = layer.attention.self
    H = sa.num_attention_heads

    def forward(hidden_states, *args, **kwargs):
        x = hidden_states
        o = nnf.scaled_dot_product_attention(_heads(sa.query(x[:, -n:]), H), _heads(sa.key(x), H),
                                           _heads(sa.value(x), H), scale=sa.scaling)
        h = layer.attention.output(_merge(o), x[:, -n:])
        h = layer.output(layer.intermediate(h), h)
        return torch.cat([x[:, :-n], h], dim=1)
    return forward


class _PackedGelu:
    """GEMM + GELU as one oneDNN call on a packed copy of a frozen weight (repacked if it changes)."""

    def __init__(self, linear_weight_out_in, bias, approximate: str):
        self.src, self.bias, self.approx = linear_weight_out_in, bias, approximate
        self.key = None
        self.packed = None

    def __call__(self, x):
        w = self.src()
        key = (w.data_ptr(), w._version)
        if key != self.key:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), 64)
            self.key = key
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.packed, self.bias(),
                                               "gelu", [], self.approx)
        return y.view(*x.shape[:-1], y.shape[-1])


def _packed_mlp_forwards(bb) -> dict:
    """module -> replacement forward, for every MLP whose activation oneDNN can fuse."""
    out = {}
    for block in bb.blocks():
        if bb.family == "gpt2":
            mlp = block.mlp
            if isinstance(mlp.act, torch.nn.GELU):  # fptlib fuses GPT-2's tanh GELU at build time
                fused = _PackedGelu(lambda m=mlp: m.c_fc.weight.t(), lambda m=mlp: m.c_fc.bias, mlp.act.approximate)
                out[mlp] = (lambda m, f: lambda x: m.dropout(m.c_proj(f(x))))(mlp, fused)
        else:
            inter = block.intermediate
            act = getattr(inter, "intermediate_act_fn", None)
            if type(act).__name__ == "GELUActivation":  # exact (erf) GELU
                fused = _PackedGelu(lambda m=inter: m.dense.weight, lambda m=inter: m.dense.bias, "none")
                out[inter] = fused
    return out


_warned = False


@contextlib.contextmanager
def inference_shortcuts(bb, n_last: int | None, device: torch.device):
    """Within inference mode: prune the last block to its last n_last tokens (None: keep all) and,
    on CPU with oneDNN, fuse the MLP GELUs. Restores the modules on exit."""
    patched = []
    if n_last is not None:
        last = bb.blocks()[-1]
        last.forward = (_gpt2_last_block if bb.family == "gpt2" else _bert_last_layer)(last, n_last)
        patched.append(last)
    if device.type == "cpu" and supported():
        cache = bb.__dict__.setdefault("_packed_mlps", None)
        if cache is None:
            cache = bb._packed_mlps = _packed_mlp_forwards(bb)
        for m, f in cache.items():
            m.forward = f
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward  # back to the class's forward


_supported: bool | None = None


def supported() -> bool:
    """Whether this torch build has the oneDNN ops used above (checked once, with a tiny call)."""
    global _warned, _supported
    if _supported is not None:
        return _supported
    _supported = False
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
        torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), w, torch.zeros(2), "gelu", [], "none")
        _supported = True
        return True
    except (RuntimeError, AttributeError) as e:
        if not _warned:
            warnings.warn(f"oneDNN fused GELU not available in this torch build ({e}); evaluating "
                          "without it", RuntimeWarning, stacklevel=2)
            _warned = True
        return False
