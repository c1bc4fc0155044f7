"""Tiny models of each family saved with save_pretrained under the real names the paper scale asks
for, into a Hugging Face hub cache (models--<org>--<name>/refs/main, snapshots/<revision>/...), so
that `from_pretrained("gpt2")` with HF_HUB_OFFLINE=1 loads them as it would the real ones, and random
init takes its architecture from the same config.json."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

# name -> (family, tiny config); the sizes differ so that a table of sizes stays a table of sizes.
STANDINS = {
    # gpt2 as deep as the deepest cut of Tables 11-12 (6 blocks), narrow and one-headed so that its
    # 1,024-token tasks (ListOps, CIFAR-10 LRA) evaluate as fast as a 2 x 32 model would
    "gpt2": ("gpt2", dict(n_embd=16, n_layer=6, n_head=1, n_positions=1024)),
    "gpt2-medium": ("gpt2", dict(n_embd=24, n_layer=7, n_head=1, n_positions=1024)),
    "gpt2-large": ("gpt2", dict(n_embd=32, n_layer=8, n_head=2, n_positions=1024)),
    "bert-base-uncased": ("bert", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=512)),
    "t5-base": ("t5", dict(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)),
    "allenai/longformer-base-4096": ("longformer", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                        intermediate_size=64, attention_window=16,
                                                        max_position_embeddings=4098, pad_token_id=1,
                                                        type_vocab_size=1)),
    "google/vit-base-patch16-224": ("vit", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                intermediate_size=64)),
}


def _model(family: str, shape: dict):
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2Model,
        LongformerConfig,
        LongformerModel,
        T5Config,
        T5EncoderModel,
        ViTConfig,
        ViTModel,
    )
    cfg_cls, model_cls = {"gpt2": (GPT2Config, GPT2Model), "bert": (BertConfig, BertModel),
                          "t5": (T5Config, T5EncoderModel), "longformer": (LongformerConfig, LongformerModel),
                          "vit": (ViTConfig, ViTModel)}[family]
    return model_cls(cfg_cls(**shape))


def snapshot_dir(cache: Path, name: str) -> Path:
    """Where the hub keeps `name`: models--org--name/snapshots/<revision named by refs/main>."""
    repo = Path(cache) / ("models--" + name.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def write_hub_cache(cache: Path, names=None, seed: int = 0) -> dict[str, Path]:
    """Save each stand-in into the cache; returns name -> snapshot directory."""
    out = {}
    for name in names or STANDINS:
        family, shape = STANDINS[name]
        torch.manual_seed(seed)
        revision = hashlib.sha1(f"{name} {sorted(shape.items())} {seed}".encode()).hexdigest()
        repo = Path(cache) / ("models--" + name.replace("/", "--"))
        snap = repo / "snapshots" / revision
        _model(family, shape).save_pretrained(snap)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        out[name] = snap
    return out
