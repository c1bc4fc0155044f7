"""What a run costs before it runs, on paper: the FLOPs of a training step and of a forward pass, and
the peak memory of a training step, from a model's dimensions and a task's shape; and the GPUs they
are priced on (`GPUS`: peak throughput and memory, each with its source).

FLOPs (one multiply-add = 2) count matrix products only: the blocks' dense layers, attention's
Q·Kᵀ and P·V, and the input and output layers. Layer norm, softmax, GELU, dropout and the optimizer
count as zero. A training step is the forward pass; the backward pass's activation gradients (as
much as the forward's dense work, twice its attention work) through every block between the lowest
trained parameter and the output; and the weight gradients of the trained matrices only (a frozen
weight needs none), each as much again as its forward product. `fptlib.perf.bench` reports its
achieved GFLOP/s with the same count, and tests/test_cost.py checks it against torch's profiler.

Memory of a step: every parameter in fp32; Adam's two moments and a gradient for each trained one;
the tensors autograd keeps for the backward pass at the step's batch and length (per block: the
layer norms' inputs, the dropout masks, the MLP's activation input, the inputs of trained matrices,
and the attention's q, k, v and output where a fused kernel runs, or q, k, v and its T x T
probabilities, dropout mask and dropped probabilities where the plain (math) kernel runs); and the
gradients in flight at a block's widest operation. The backward pass frees each block's tensors as it
goes, so the peak is at its start or its end (step_memory). The fused kernel runs on CUDA for every
family with PyTorch attention, and on a CPU only with attention dropout 0; Longformer always keeps
its banded scores. Dropout masks are bytes on CUDA, floats on a CPU. tests/test_cost.py checks the
estimate against the measured peak of CPU steps; the CUDA kernels' choices are assumed, not measured.
"""
from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..groups import FPT_GROUPS, parse_groups


# ---- the GPUs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPU:
    name: str
    fp32_tflops: float   # dense FP32 on the CUDA cores: fp32 runs (tf32 off, the default)
    tf32_tflops: float   # dense TF32 tensor cores (without 2:4 sparsity): fp32 runs with tf32 on
    bf16_tflops: float   # dense BF16 (= FP16) tensor cores (without sparsity): bf16 and fp16 runs
    memory_gb: float     # HBM, in 10^9 bytes as the datasheet gives it
    bandwidth_tbs: float  # HBM bandwidth, TB/s
    source: str
    device_names: tuple[str, ...]  # what torch.cuda.get_device_name says, upper-cased, spaces and '-' dropped

    def peak_tflops(self, precision: str, tf32: bool = False) -> float:
        if precision in ("bf16", "fp16"):
            return self.bf16_tflops
        return self.tf32_tflops if tf32 else self.fp32_tflops

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)


GPUS = {
    "h100": GPU("H100 SXM5 80GB", 67.0, 494.5, 989.5, 80, 3.35,
                "NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column; TF32/BF16 halved from the "
                "datasheet's with-sparsity 989/1,979", ("H10080GBHBM3", "H100SXM")),
    "h100-pcie": GPU("H100 PCIe 80GB", 51.0, 378.0, 756.0, 80, 2.0,
                     "NVIDIA H100 Tensor Core GPU datasheet (2023), PCIe column; TF32/BF16 halved from the "
                     "with-sparsity 756/1,513", ("H100PCIE",)),
    "h200": GPU("H200 SXM 141GB", 67.0, 494.5, 989.5, 141, 4.8,
                "NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column (the H100 SXM's compute, HBM3e)",
                ("H200",)),
    "a100": GPU("A100 SXM4 80GB", 19.5, 156.0, 312.0, 80, 2.039,
                "NVIDIA A100 Tensor Core GPU datasheet (2021), 80GB SXM column; TF32/BF16 without sparsity",
                ("A100SXM480GB",)),
    "a100-40gb": GPU("A100 SXM4 40GB", 19.5, 156.0, 312.0, 40, 1.555,
                     "NVIDIA A100 Tensor Core GPU datasheet (2021), 40GB SXM column; TF32/BF16 without sparsity",
                     ("A100SXM440GB",)),
}
# Per process on a shared GPU: the CUDA context and the kernels' workspace, outside the model's tensors.
CUDA_CONTEXT_BYTES = 512 * 2**20
# Share of a GPU's memory runs may fill: the rest is left to the caching allocator's fragmentation.
USABLE_FRACTION = 0.9
# More runs than this on one GPU only time-share its SMs: a cap, not a memory limit.
MAX_RUNS_PER_GPU = 8


def gpu(name: str) -> GPU:
    """The catalogue entry for `name` (case-insensitive), or a ValueError listing the known names."""
    key = name.strip().lower()
    if key not in GPUS:
        raise ValueError(f"unknown GPU {name!r}; known: {', '.join(GPUS)}")
    return GPUS[key]


def gpu_for_device(device_name: str) -> str | None:
    """The catalogue key of a device as torch.cuda.get_device_name names it ('NVIDIA H100 80GB HBM3'),
    or None for one not in the catalogue (an H100 NVL, an A100 PCIe, ...)."""
    squashed = re.sub(r"[\s\-_]", "", device_name.upper())
    for key, g in GPUS.items():
        if "NVL" not in squashed and any(n in squashed for n in g.device_names):
            return key
    return None


def runs_per_gpu(peak_bytes: int, g: GPU) -> int:
    """Runs of this peak memory that fit one GPU side by side: each with a CUDA context, within
    USABLE_FRACTION of its memory, at most MAX_RUNS_PER_GPU; 0 when not even one fits."""
    return max(0, min(MAX_RUNS_PER_GPU, int(g.memory_bytes * USABLE_FRACTION // (peak_bytes + CUDA_CONTEXT_BYTES))))


# ---- a model's dimensions ------------------------------------------------------------------------
@dataclass(frozen=True)
class StepShape:
    """The shape of one micro-batch: examples, tokens, features per token (or vocabulary size for token
    inputs), input kind, and the output layer's tokens and logits per token."""
    batch: int
    tokens: int
    d_in: int
    input_kind: str
    n_out_tokens: int
    out_dim: int


@dataclass(frozen=True)
class Dims:
    """What the cost model reads of a model. Matrix counts are weights of dense layers (nn.Linear,
    GPT-2's Conv1D), whose product costs 2 FLOPs per weight per token."""
    family: str
    width: int
    layers: int                  # transformer blocks, or LSTM layers
    ffn: int                     # MLP width (0: an LSTM)
    heads: int
    attn_dim: int                # heads x head size: the width of q, k and v
    window: int                  # Longformer's attention window (0: attention over every token)
    block_matrix: int            # dense weights in the blocks
    block_matrix_trained: int    # of which trained (need weight gradients)
    block_trainable: int         # trained parameters in the blocks (matrices, biases, norms)
    grad_blocks: int             # blocks the backward pass goes through (from the lowest trained parameter)
    input_trained: bool
    output_trained: bool
    params: int                  # every parameter of the model, used or not (all live in memory)
    trainable: int

    @classmethod
    def transformer(cls, width: int, layers: int, ffn: int, heads: int | None = None,
                    train=FPT_GROUPS) -> "Dims":
        """A GPT-2/BERT-shaped stack from its sizes alone (no parameter counts): what `fpt bench` prices."""
        groups = set(parse_groups(train))
        per_block = {"attention": 4 * width * width, "feedforward": 2 * width * ffn}
        trained = sum(v for g, v in per_block.items() if g in groups) * layers
        below = groups & {"input", "positions", "layernorm", "attention", "feedforward", "token_type"}
        return cls("gpt2", width, layers, ffn, heads or max(1, width // 64), width, 0,
                   sum(per_block.values()) * layers, trained, trained, layers if below else 0,
                   "input" in groups, "output" in groups, 0, 0)


def _is_matrix(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _position(name: str, block: int | None, layers: int) -> int:
    """Where a parameter sits in the stack: its block, -1 below the first block, `layers` above the last."""
    if block is not None:
        return block
    if name.startswith("output.") or re.search(r"(ln_f|final_layer_norm|model\.layernorm)\.", name):
        return layers
    return -1  # the input layer, position tables, token types, the embeddings' layer norm


def dims_of(model: nn.Module) -> Dims:
    """The Dims of a built FPT (on any device, the meta device included) as it is set to train."""
    bb = model.backbone
    cfg = getattr(getattr(bb, "model", None), "config", None)
    lstm = bb.family == "lstm"
    no_attention = bb.family in ("lstm", "pool")  # the baselines: no heads, no feed-forward width
    blocks = bb.model.layers if lstm else bb.blocks()
    layers = len(blocks)
    matrix = trained = 0
    lowest = layers
    block_trainable = sum(p.numel() for b in blocks for p in b.parameters() if p.requires_grad)
    for block in blocks:
        for mname, mod in block.named_modules():
            if _is_matrix(mod) and "_global" not in mname:  # Longformer's global q/k/v: no global tokens here
                matrix += mod.weight.numel()
                trained += mod.weight.numel() if mod.weight.requires_grad else 0
    block_of = {id(p): bi for bi, b in enumerate(blocks) for p in b.parameters()}
    for n, p in model.named_parameters():
        if p.requires_grad:
            lowest = min(lowest, _position(n, block_of.get(id(p)), layers))
    heads = 1 if no_attention else next(getattr(cfg, k) for k in ("n_head", "num_attention_heads", "num_heads")
                                        if getattr(cfg, k, None))
    ffn = 0 if no_attention else next((getattr(cfg, k) for k in ("n_inner", "intermediate_size", "d_ff")
                                       if getattr(cfg, k, None)), 4 * bb.width)
    attn_dim = heads * cfg.d_kv if bb.family == "t5" else 0 if no_attention else bb.width
    window = cfg.attention_window if bb.family == "longformer" else 0
    window = max(window) if isinstance(window, (list, tuple)) else int(window)
    params = list(model.parameters())
    return Dims(bb.family, bb.width, layers, ffn, heads, attn_dim, window, matrix, trained,
                block_trainable, layers - max(lowest, 0), model.input.weight.requires_grad,
                model.output.weight.requires_grad, sum(p.numel() for p in params),
                sum(p.numel() for p in params if p.requires_grad))


def dims_for(spec, d_in: int, input_kind: str, n_out_tokens: int, out_dim: int, train) -> Dims:
    """The Dims of the FPT a run builds (`spec`: its BackboneSpec), from a model built on the meta
    device: no weights are read or drawn, so any size is priced in a fraction of a second."""
    return _dims_cached(tuple(asdict(replace(spec, init="random")).items()), d_in, input_kind, n_out_tokens,
                        out_dim, tuple(parse_groups(train)))


@functools.lru_cache(maxsize=256)
def _dims_cached(spec_items: tuple, d_in: int, input_kind: str, n_out_tokens: int, out_dim: int,
                 train: tuple) -> Dims:
    from .fpt import FPT
    with torch.device("meta"):
        model = FPT(_meta_backbone(spec_items), input_kind=input_kind, d_in=d_in, n_out_tokens=n_out_tokens,
                    out_dim=out_dim)
    model.set_trainable(train)  # sets every parameter's flag, so a backbone shared between calls is safe
    return dims_of(model)


@functools.lru_cache(maxsize=32)
def _meta_backbone(spec_items: tuple):
    from .backbones import BackboneSpec, build_backbone
    with torch.device("meta"):
        return build_backbone(BackboneSpec(**dict(spec_items)), 0)


# ---- FLOPs ---------------------------------------------------------------------------------------
def padded_tokens(d: Dims, tokens: int) -> int:
    """Tokens the backbone computes: Longformer pads a sequence to a multiple of its window."""
    return -(-tokens // d.window) * d.window if d.window else tokens


def keys_per_query(d: Dims, tokens: int) -> int:
    """Keys each query's scores are computed against: all tokens, or for Longformer its sliding chunks
    (chunks of half a window, each scored against twice that: 2·window·(1 − window/2T) keys a query)."""
    if not d.window:
        return tokens
    t = padded_tokens(d, tokens)
    return max(1, round(2 * d.window * (1 - d.window / (2 * t))))


def _products(d: Dims, shape) -> tuple[int, int, int, int]:
    """Forward FLOPs of the blocks' dense layers, of attention (Q·Kᵀ and P·V), of the input layer and of
    the output layer, over `shape.batch` examples."""
    b, t = shape.batch, padded_tokens(d, shape.tokens)
    attn = 2 * 2 * b * t * keys_per_query(d, shape.tokens) * d.attn_dim * d.layers
    dense = 2 * b * t * d.block_matrix
    inp = 2 * b * shape.tokens * shape.d_in * d.width if shape.input_kind == "linear" else 0
    out = 2 * b * shape.n_out_tokens * d.width * shape.out_dim
    return dense, attn, inp, out


def forward_flops(d: Dims, shape) -> int:
    """FLOPs of a forward pass over `shape.batch` examples (training or evaluation)."""
    return sum(_products(d, shape))


def step_flops(d: Dims, shape) -> dict:
    """FLOPs of one micro-batch of a training step: forward, backward and their sum (`step`); a
    gradient step of grad_accum micro-batches costs grad_accum times `step`."""
    dense, attn, inp, out = _products(d, shape)
    forward = dense + attn + inp + out
    through = d.grad_blocks / d.layers if d.layers else 0.0
    activation = round((dense + 2 * attn) * through) + (out if d.grad_blocks or d.input_trained else 0)
    weights = (2 * shape.batch * padded_tokens(d, shape.tokens) * d.block_matrix_trained
               + (inp if d.input_trained else 0) + (out if d.output_trained else 0))
    return {"forward": forward, "backward": activation + weights, "step": forward + activation + weights}


def cached_step_flops(d: Dims, shape) -> int:
    """A step of the output layer alone on cached features: its forward and its weight gradient."""
    return 2 * 2 * shape.batch * shape.n_out_tokens * d.width * shape.out_dim


# ---- memory --------------------------------------------------------------------------------------
def fused_attention(d: Dims, device: str, attention_dropout: float) -> bool:
    """Whether PyTorch's fused attention runs (no T x T tensors kept): always on CUDA (its memory-efficient
    kernel takes fp32, dropout and an additive bias), on a CPU only without attention dropout; never for
    Longformer (its own banded attention) or the LSTM (no attention)."""
    if d.family in ("longformer", "lstm"):
        return False
    return device == "cuda" or attention_dropout == 0


def block_activation_bytes(d: Dims, tokens: int, keys: int, device: str, precision: str,
                           attention_dropout: float) -> float:
    """Bytes autograd keeps per token of one block for the backward pass (see the module docstring)."""
    act = 2 if precision in ("bf16", "fp16") else 4   # matrix products' outputs under autocast
    mask = 1 if device == "cuda" else 4               # dropout masks: bool on CUDA, float on a CPU
    w, f = d.width, d.ffn
    if d.family == "lstm":  # per step: gates, their layer norms and nonlinearities, the cell (measured: ~17 w)
        return 17 * w * 4 + w * mask
    saved = 2 * w * 4 + 2 * w * mask + f * act                       # norms' inputs, residual dropout, MLP
    if d.family == "t5":
        saved += f * mask                                             # T5's dropout inside its MLP
    if fused_attention(d, device, attention_dropout):
        saved += 4 * d.attn_dim * act + d.heads * 4                  # q, k, v, output, log-sum-exp
    else:
        probs = d.heads * keys * act
        saved += 3 * d.attn_dim * act + probs + (probs + d.heads * keys * mask if attention_dropout else 0)
    trained_share = d.block_matrix_trained / d.block_matrix if d.block_matrix else 0.0
    saved += trained_share * (2 * w + f) * act                        # inputs of the trained products
    return saved


def block_transient_bytes(d: Dims, keys: int, device: str, precision: str, attention_dropout: float) -> int:
    """Bytes per token alive beyond the kept tensors while the backward pass works through a block: the
    gradients going into and out of its widest operation (the MLP, or the T x T probabilities where
    the plain attention kernel runs)."""
    act = 2 if precision in ("bf16", "fp16") else 4
    if d.family == "lstm":
        return 2 * 4 * d.width * act
    widest = max(d.ffn, 0 if fused_attention(d, device, attention_dropout) else d.heads * keys)
    return 2 * widest * act


def step_memory(d: Dims, shape, device: str = "cuda", precision: str = "fp32",
                attention_dropout: float = 0.1) -> dict:
    """Bytes of a training step, by part: `parameters` (all, fp32; bf16 adds its cast copies of the
    trained matrices), `optimizer` (Adam's two moments of each trained parameter), `gradients`,
    `activations` (all the tensors kept for the backward pass) and `transient` (see
    block_transient_bytes); `working`, the step's peak above the parameters and optimizer state; and
    `peak`, the step's peak in all. The backward pass frees each block's kept tensors as it fills
    that block's gradients, so `working` is the larger of its start (every block's tensors, the top
    block's gradients) and its end (one block's tensors, every block's gradients); or of the optimizer
    step (the gradients, and on CUDA a temporary copy of them for the fused Adam update). A step that
    trains only the output layer keeps nothing in the blocks: its forward pass's working set counts."""
    b, t = shape.batch, padded_tokens(d, shape.tokens)
    keys = keys_per_query(d, shape.tokens)
    kept = b * t * block_activation_bytes(d, t, keys, device, precision, attention_dropout)
    mask = 1 if device == "cuda" else 4
    head = b * shape.n_out_tokens * d.width * 4
    around = b * t * d.width * (4 + 2 * mask) + head if d.grad_blocks else head  # embeddings, final norm, head
    if d.input_trained and shape.input_kind == "linear":
        around += b * shape.tokens * shape.d_in * 4
    n = d.grad_blocks
    per_block_grads = 4 * d.block_trainable / d.layers if d.layers else 0.0
    other_grads = 4 * (d.trainable - d.block_trainable)
    transient = b * t * block_transient_bytes(d, keys, device, precision, attention_dropout) if n else 0
    backward = around + transient + other_grads + (max(n * kept + per_block_grads, kept + n * per_block_grads)
                                                   if n else 0)
    update = 4 * d.trainable * (2 if device == "cuda" else 1)
    forward = 0 if n else forward_working_bytes(d, b, shape.tokens, device, precision, attention_dropout) + head
    cast = 2 * d.block_matrix_trained if precision in ("bf16", "fp16") else 0
    parts = {"parameters": 4 * d.params + cast, "optimizer": 8 * d.trainable, "gradients": 4 * d.trainable,
             "activations": int(around + n * kept), "transient": int(transient),
             "working": int(max(backward, forward, update))}
    return parts | {"peak": parts["parameters"] + parts["optimizer"] + parts["working"]}


def forward_working_bytes(d: Dims, batch: int, tokens: int, device: str, precision: str,
                          attention_dropout: float, training: bool = True) -> int:
    """Bytes alive in a forward pass that keeps nothing for a backward pass (evaluation, or a step that
    trains only the output layer): a block's input and output, and its widest intermediates (the MLP's
    two activations, three in T5 training with its dropout inside the MLP; or, without the fused kernel,
    the T x T scores, probabilities and dropped probabilities)."""
    act = 2 if precision in ("bf16", "fp16") else 4
    mask = 1 if device == "cuda" else 4
    t, keys = padded_tokens(d, tokens), keys_per_query(d, tokens)
    if d.family == "lstm":
        return int(batch * t * (2 * 4 * d.width * act + 2 * d.width * 4))  # gates of every step, layer in/out
    scores = 0 if fused_attention(d, device, attention_dropout) else d.heads * keys * (
        2 * act + (act + mask if attention_dropout else 0))
    mlp = d.ffn * (3 * act + mask if d.family == "t5" and training else 2 * act)
    return int(batch * t * (2 * d.width * 4 + max(mlp, scores)))


def eval_memory(d: Dims, shape, eval_batch: int, device: str = "cuda", precision: str = "fp32") -> int:
    """Peak bytes of an evaluation batch beyond the parameters (no dropout, nothing kept)."""
    return forward_working_bytes(d, eval_batch, shape.tokens, device, precision, 0.0, training=False)


def gib(n: float) -> float:
    return n / 2**30

