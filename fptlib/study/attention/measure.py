"""Attention maps of the frozen pretrained transformer on Bit XOR and Bit Memory (paper §3).

The paper's demo trains FPT (GPT-2) on Bit XOR and shows the first layer's attention averaged over
its 12 heads: output token 5+i, which must XOR bits i and 5+i, puts its strongest attention on input
token i and on itself (two parallel diagonal stripes). This module measures that, rather than
assuming it, for whatever backbone a scale uses (cpu: MiniLM, a bidirectional BERT; paper: GPT-2):

- `trained_model(cfg)`: an FPT trained the way `fptlib.training.train` trains it (same `build`,
  seeding, batches, `train_step` and Adam, the full step budget, no early stopping), with eager
  attention so that the maps exist. A finished `train` run keeps only result.json, so here the
  trained tensors (input, output, layer norms, positions) are cached in
  results/<scale>/attention/<run id>.safetensors, beside a .json with the accuracies and a digest
  of the frozen tensors (checked when the cache is loaded).
- `attention_batch` / `attention_maps`: per layer, (heads, T, T) attention probabilities.
- `xor_alignment`: per output token 5+i, the attention mass on {i, 5+i} against uniform attention,
  and whether the two most attended positions are exactly {i, 5+i}; `memory_alignment` is the
  Bit Memory analogue (mass on the tokens of the stored pattern the query repeats).
- `analyse(task, ...)`: trained and untrained model (the same model before training: random input
  layer, frozen pretrained backbone), maps over test examples, a per-layer table, and figures
  (drawn by `figures`).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...config import RunConfig, resolve
from ...io import FileLock, read_json, sha256_file, write_bytes_atomic, write_json_atomic
from ...paths import figures_dir, results_dir
from ...training import RunError, build, evaluate, loop
from ..render.markdown import frame_markdown, save_table
from ..render.plots import save
from .figures import all_layers_figure, heads_figure, layer_figure, layers_figure, query_patterns

TASKS = ("bit-xor", "bit-memory")


FIGURE_PREFIX = {"bit-xor": "attention_xor", "bit-memory": "attention_bitmemory"}


FIGURE_KEYS = ("layer1", "heads", "layers", "all_layers")  # each task's figures: <prefix>_<key>.png


def attention_config(task: str, scale: str = "cpu", seed: int = 0, steps: int | None = None,
                     backbone: str | None = None) -> RunConfig:
    """The resolved config of an attention-study run: the scale's preset for the task, eager attention
    (sdpa returns no attention weights); steps 0 or None = the scale's default."""
    if task not in TASKS:
        raise ValueError(f"the attention study covers {', '.join(TASKS)}, not {task!r}")
    return resolve(RunConfig(task=task, backbone=backbone or None, scale=scale, seed=seed,
                             steps=steps or None, attn_implementation="eager"))


def cache_paths(cfg: RunConfig) -> tuple[Path, Path]:
    d = results_dir(cfg.scale) / "attention"
    return d / f"{cfg.run_id()}.safetensors", d / f"{cfg.run_id()}.json"


def frozen_digest(model) -> str:
    """One sha256 over the per-tensor fingerprints of every frozen tensor."""
    fp = model.frozen_fingerprint()
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def train_in_process(cfg: RunConfig, progress: bool) -> tuple:
    """`fptlib.training.train`'s own loop without a run directory (no checkpoints or validation along
    the way: the same build, seeds, batches, optimizer and steps); returns the trained model, its task
    and a summary."""
    if cfg.cache_features:
        raise RunError("the attention study trains the whole FPT path; cache_features does not apply")
    t0 = time.time()
    s = loop.start(cfg, run_dir=None, validate=False)
    digest_before = frozen_digest(s.acc.unwrap_model(s.model))
    loop.run_steps(s, progress)
    model = s.acc.unwrap_model(s.model)
    test = evaluate(model, s.task, "test", cfg.eval_batch_size, s.device)
    curve = torch.tensor(s.step_losses)  # float32, as the loss tensors were
    tail = curve[-max(1, len(curve) // 10):]
    info = {"run_id": cfg.run_id(), "config": cfg.to_dict(), "config_hash": cfg.hash(), "steps": cfg.steps,
            "test_accuracy": test["accuracy"], "test_masked_accuracy": test.get("masked_accuracy"),
            "final_train_loss": float(tail.mean()) if len(tail) else None,
            "frozen_digest": digest_before, "frozen_unchanged": frozen_digest(model) == digest_before,
            "train_seconds": round(time.time() - t0, 2)}
    s.acc.free_memory()
    return model.cpu().eval(), s.task, info


def trained_model(cfg: RunConfig, progress: bool = False) -> tuple:
    """(model, task, info) for a resolved config with eager attention, trained now or loaded from
    results/<scale>/attention/. The cache holds only the trained tensors; the frozen ones are rebuilt
    from the seed and must match the digest recorded when the model was trained."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    if cfg.attn_implementation != "eager":
        raise RunError("attention maps need attn_implementation='eager' (sdpa returns no attention "
                       "weights); use fptlib.study.attention.attention_config")
    weights, meta = cache_paths(cfg)
    with FileLock(weights.with_name(f".{weights.stem}.lock"), wait=True):
        if weights.is_file() and meta.is_file():
            info = read_json(meta)
            if info.get("config_hash") != cfg.hash() or info.get("sha256") != sha256_file(weights):
                raise RunError(f"{weights} or {meta} is damaged or belongs to another config; delete both "
                               "to train the model again")
            model, task = build(cfg)
            if frozen_digest(model) != info["frozen_digest"]:
                raise RunError(f"the frozen tensors rebuilt for {cfg.run_id()} differ from those it was "
                               f"trained with (another backbone file or library version); delete {weights} "
                               "and its .json to train again")
            state = st_load(weights.read_bytes())
            names = {n for n, p in model.named_parameters() if p.requires_grad}
            if set(state) != names:
                raise RunError(f"{weights} holds {len(state)} tensors, not the {len(names)} trainable ones; "
                               "delete it and its .json to train again")
            model.load_state_dict(state, strict=False)
            return model.eval(), task, info | {"cached": True}
        model, task, info = train_in_process(cfg, progress)
        write_bytes_atomic(weights, st_save(trainable_state(model)))
        info["sha256"] = sha256_file(weights)
        write_json_atomic(meta, info)  # written last: its presence marks a complete cache entry
        return model, task, info | {"cached": False}


def untrained_model(cfg: RunConfig) -> tuple:
    """The same FPT before any step: random (orthogonal) input layer, frozen pretrained backbone."""
    model, task = build(cfg)
    return model.eval(), task


@torch.inference_mode()
def attention_batch(model, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    batch_size: int = 64) -> np.ndarray:
    """Attention probabilities for a batch of inputs: float32 array (layers, B, heads, T, T).
    The model is evaluated in eval mode (no dropout)."""
    was = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            m = None if attention_mask is None else attention_mask[i:i + batch_size]
            _, attn = model(x[i:i + batch_size], m, output_attentions=True)
            if attn is None or any(a is None for a in attn):
                raise ValueError("the backbone returned no attention weights; build it with "
                                 "attn_implementation='eager'")
            out.append(torch.stack([a.float() for a in attn]).cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out, axis=1)


def attention_maps(model, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[np.ndarray]:
    """One example (T, d_in), or (T,) token ids -> per layer a (heads, T, T) array whose rows sum to 1."""
    a = attention_batch(model, x[None], None if attention_mask is None else attention_mask[None])
    return [layer[0] for layer in a]


def is_causal(maps: np.ndarray, atol: float = 1e-6) -> bool:
    """True when no query attends to a later position (GPT-2), False for bidirectional (BERT)."""
    a = np.asarray(maps)
    return bool(np.abs(np.triu(a.reshape(-1, a.shape[-2], a.shape[-1]).max(0), 1)).max() <= atol)


def _as_batch(maps) -> np.ndarray:
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"expected maps of shape (heads, T, T) or (examples, heads, T, T), got {a.shape}")
    return a


def xor_alignment(maps, n_bits: int = 5, causal: bool | None = None) -> pd.DataFrame:
    """How much each output token of Bit XOR attends to the two bits it must combine.

    maps: one layer, (heads, T, T) for one example or (examples, heads, T, T); T = 2 n_bits.
    One row per output token 5+i (for n_bits=5): `mass_pair`, the attention on {i, 5+i} (mean over
    heads and examples), split into `mass_partner` (token i) and `mass_self` (5+i); `uniform_pair`,
    what uniform attention over the positions the token can see would give (2/T bidirectional,
    2/(5+i+1) causal); `top2_exact`, the fraction of examples whose head-averaged row has exactly
    {i, 5+i} as its two largest entries (1.0 or 0.0 for one example), `top1_partner` the fraction
    whose largest entry is token i; `best_head` and
    `best_head_mass_pair`, the head with the most mass on the pair.
    """
    a = _as_batch(maps)
    B, H, T, _ = a.shape
    if T != 2 * n_bits:
        raise ValueError(f"Bit XOR with n_bits={n_bits} has {2 * n_bits} tokens, the maps have {T}")
    if causal is None:
        causal = is_causal(a)
    rows = []
    for i in range(n_bits):
        q = n_bits + i
        r = a[:, :, q, :]                       # (B, H, T): what output token q attends to
        pair = r[..., i] + r[..., q]            # (B, H)
        avg = r.mean(1)                         # (B, T) head-averaged row
        top2 = np.argsort(-avg, axis=-1, kind="stable")[:, :2]
        exact = np.sort(top2, axis=-1) == np.array([i, q])
        per_head = pair.mean(0)
        visible = q + 1 if causal else T
        rows.append({"out_token": q, "partner": i, "mass_pair": pair.mean(), "mass_partner": r[..., i].mean(),
                     "mass_self": r[..., q].mean(), "uniform_pair": 2 / visible,
                     "top1_partner": (avg.argmax(-1) == i).mean(), "top2_exact": exact.all(-1).mean(),
                     "best_head": int(per_head.argmax()),
                     "best_head_mass_pair": per_head.max()})
    return pd.DataFrame(rows)


def memory_alignment(maps, x, n_patterns: int = 5, causal: bool | None = None) -> pd.DataFrame:
    """Bit Memory analogue of `xor_alignment`: the query's j-th token must read the j-th token of the
    stored pattern it repeats. maps: one layer, (examples, heads, T, T); x: the inputs (examples, T, d).

    One row per query token: `mass_pattern`, the attention on all tokens of the repeated pattern,
    against `uniform_pattern` (k/T for k tokens per pattern); `mass_slot`, on the pattern's j-th token,
    against `uniform_slot`; `mass_query`, on the query's own tokens; `top1_slot`, the fraction of
    examples whose head-averaged row peaks at that token; `best_head` / `best_head_mass_pattern`.
    """
    a = _as_batch(maps)
    B, H, T, _ = a.shape
    if T % (n_patterns + 1):
        raise ValueError(f"{T} tokens do not split into {n_patterns + 1} patterns")
    k = T // (n_patterns + 1)
    which = query_patterns(x, n_patterns)
    if len(which) != B:
        raise ValueError(f"{B} maps but {len(which)} inputs")
    if causal is None:
        causal = is_causal(a)
    rows = []
    ex = np.arange(B)
    for j in range(k):
        q = n_patterns * k + j
        r = a[:, :, q, :]                                           # (B, H, T)
        tokens = which[:, None] * k + np.arange(k)[None]           # (B, k) the repeated pattern
        pattern = np.take_along_axis(r, tokens[:, None, :].repeat(H, 1), axis=-1).sum(-1)  # (B, H)
        slot = r[ex, :, which * k + j]                              # (B, H)
        visible = q + 1 if causal else T
        # under causal attention every stored pattern precedes the query, so all k tokens are visible
        per_head = pattern.mean(0)
        rows.append({"query_token": q, "mass_pattern": pattern.mean(), "uniform_pattern": k / visible,
                     "mass_slot": slot.mean(), "uniform_slot": 1 / visible,
                     "mass_query": r[..., n_patterns * k:].sum(-1).mean(),
                     "top1_slot": (r.mean(1).argmax(-1) == which * k + j).mean(),
                     "best_head": int(per_head.argmax()), "best_head_mass_pattern": per_head.max()})
    return pd.DataFrame(rows)


@dataclass
class Analysis:
    """Trained and untrained FPT on one task, their maps over test examples, and per-layer numbers."""

    task_name: str
    cfg: RunConfig
    info: dict                          # the trained model: accuracy, steps, cache
    untrained_accuracy: dict
    x: torch.Tensor                     # the examples the maps are taken on
    maps: dict = field(repr=False)      # "trained" / "untrained" -> (layers, B, heads, T, T)
    table: pd.DataFrame = field(repr=False, default=None)
    n_patterns: int = 5                 # Bit Memory: stored patterns before the query
    seconds: float = 0.0

    @property
    def n_layers(self) -> int:
        return self.maps["trained"].shape[0]

    @property
    def name(self) -> str:
        return FIGURE_PREFIX[self.task_name]

    def head_mean(self, which: str, layer: int, examples=None) -> np.ndarray:
        a = self.maps[which][layer]
        if examples is not None:
            a = a[examples]
        return a.mean(axis=(0, 1))

    def save_tables(self) -> dict[str, Path]:
        return save_table(self.table, self.markdown(), results_dir(self.cfg.scale) / "tables", self.name)

    def caption(self) -> str:
        c, i = self.cfg, self.info
        acc = (f"test accuracy {100 * i['test_accuracy']:.1f} % trained, "
               f"{100 * self.untrained_accuracy['accuracy']:.1f} % untrained")
        if i.get("test_masked_accuracy") is not None:
            acc += (f"; masked bits {100 * i['test_masked_accuracy']:.1f} % trained, "
                    f"{100 * self.untrained_accuracy.get('masked_accuracy', float('nan')):.1f} % untrained")
        return (f"Attention of FPT on {c.task}, scale `{c.scale}`: backbone {c.backbone}"
                f"{'' if c.n_layers is None else f' cut to {c.n_layers} blocks'}, {c.steps} steps, seed {c.seed} "
                f"({acc}). Maps over {len(self.x)} test examples, eval mode; layer 1 = the first block. "
                "`untrained`: the same model before training (random input layer, frozen pretrained backbone).")

    def markdown(self) -> str:
        return f"{self.caption()}\n\n{frame_markdown(self.table, float_digits=3)}\n\n{self.verdict()}\n"

    def verdict(self) -> str:
        return xor_verdict(self.table) if self.task_name == "bit-xor" else memory_verdict(self.table)

    def figures(self, directory: Path | None = None) -> dict[str, Path]:
        """Write the figures of this task into figures/<scale>/; returns name -> path."""
        import matplotlib.pyplot as plt

        d = Path(directory) if directory is not None else figures_dir(self.cfg.scale)
        out = {}
        makers = {"layer1": lambda: layer_figure(self, 0), "heads": lambda: heads_figure(self, 0),
                  "layers": lambda: layers_figure(self), "all_layers": lambda: all_layers_figure(self)}
        for key in FIGURE_KEYS:
            fig = makers[key]()
            out[key] = save(fig, d / f"{self.name}_{key}.png")
            plt.close(fig)
        return out


def eval_examples(task, n: int, seed: int = 0) -> dict:
    """A fixed random subset of n test examples (the whole test split if it is smaller)."""
    data = next(task.eval_batches("test", task.split_size("test")))
    g = torch.Generator().manual_seed(1_000_003 + seed)
    idx = torch.randperm(len(data["y"]), generator=g)[:n]
    return {k: v[idx] for k, v in data.items()}


def layer_table(task_name: str, maps: dict, x, n_patterns: int = 5) -> pd.DataFrame:
    """One row per (model, layer): the alignment numbers averaged over output tokens."""
    rows = []
    for which, a in maps.items():
        for layer in range(a.shape[0]):
            if task_name == "bit-xor":
                n_bits = a.shape[-1] // 2
                per_tok = xor_alignment(a[layer], n_bits)
                per_head = (a[layer][:, :, n_bits:, :n_bits].diagonal(axis1=-2, axis2=-1).sum(-1)
                            + a[layer][:, :, n_bits:, n_bits:].diagonal(axis1=-2, axis2=-1).sum(-1)).mean(0) / n_bits
                rest = per_tok[per_tok.partner > 0]
                row = {"model": which, "layer": layer + 1,
                       **{c: per_tok[c].mean() for c in ("mass_pair", "mass_partner", "mass_self", "uniform_pair")},
                       "ratio_to_uniform": per_tok.mass_pair.mean() / per_tok.uniform_pair.mean(),
                       # BERT-family models pour attention onto the first token whatever it holds (a
                       # "sink"), which is output token 5's partner: the pair mass without that token
                       "mass_pair_i>0": rest.mass_pair.mean(), "uniform_pair_i>0": rest.uniform_pair.mean(),
                       "top1_partner": per_tok.top1_partner.mean(), "top2_exact": per_tok.top2_exact.mean(),
                       "heads_over_half": int((per_head >= 0.5).sum()),
                       "best_head": int(per_head.argmax()) + 1, "best_head_mass_pair": per_head.max()}
            else:
                per_tok = memory_alignment(a[layer], x, n_patterns)
                row = {"model": which, "layer": layer + 1,
                       **{c: per_tok[c].mean() for c in ("mass_pattern", "uniform_pattern", "mass_slot",
                                                          "uniform_slot", "mass_query", "top1_slot")},
                       "ratio_to_uniform": per_tok.mass_pattern.mean() / per_tok.uniform_pattern.mean()}
            rows.append(row)
    return pd.DataFrame(rows)


def analyse(task: str, scale: str = "cpu", seed: int = 0, steps: int = 0, n_examples: int = 256,
            backbone: str | None = None, progress: bool = False) -> Analysis:
    """Train (or load) the FPT of `task` at `scale`, take the attention maps of it and of the untrained
    model on `n_examples` test examples, and tabulate the alignment per layer."""
    t0 = time.time()
    cfg = attention_config(task, scale, seed, steps, backbone)
    model, task_obj, info = trained_model(cfg, progress=progress)
    base, _ = untrained_model(cfg)
    base_acc = evaluate(base, task_obj, "test", cfg.eval_batch_size, torch.device("cpu"))
    ex = eval_examples(task_obj, n_examples, seed)
    maps = {"trained": attention_batch(model, ex["x"]), "untrained": attention_batch(base, ex["x"])}
    n_patterns = getattr(task_obj, "n_patterns", 5)
    an = Analysis(task, cfg, info, base_acc, ex["x"], maps, n_patterns=n_patterns)
    an.table = layer_table(task, maps, ex["x"].numpy(), n_patterns)
    an.seconds = round(time.time() - t0, 1)
    return an


def xor_verdict(table: pd.DataFrame, factor: float = 1.5) -> str:
    """What the per-layer numbers say, as text (computed from the table, never written by hand)."""
    t = table.set_index(["model", "layer"])
    lines = []
    for which in ("trained", "untrained"):
        sub = t.loc[which]
        strong = [int(layer) for layer, r in sub.iterrows() if r.mass_pair >= factor * r.uniform_pair]
        best = int(sub.mass_pair.idxmax())
        r1 = sub.loc[1]
        lines.append(
            f"- {which}: output token 5+i attends to {{i, 5+i}} most in layer {best} ({sub.mass_pair[best]:.3f} "
            f"against {sub.uniform_pair[best]:.3f} for uniform attention, "
            f"{sub.mass_pair[best] / sub.uniform_pair[best]:.2f}x); "
            f"layers with at least {factor}x uniform: {strong or 'none'}. Layer 1: {r1.mass_pair:.3f} "
            f"({r1.mass_partner:.3f} on the partner bit i, {r1.mass_self:.3f} on itself; {r1['mass_pair_i>0']:.3f} "
            f"without output token 5, whose partner is the first token); the head-averaged row peaks at the "
            f"partner in {100 * r1.top1_partner:.0f} % of rows, its top two are exactly {{i, 5+i}} in "
            f"{100 * r1.top2_exact:.0f} %; {int(r1.heads_over_half)} head(s) put at least half their attention on "
            f"the pair (best: head {int(r1.best_head)}, {r1.best_head_mass_pair:.3f}).")
    tr, un = t.loc["trained"], t.loc["untrained"]
    gain = tr.mass_pair - un.mass_pair
    g = int(gain.idxmax())
    lines.append(f"- training moves the pair mass most in layer {g} ({un.mass_pair[g]:.3f} -> {tr.mass_pair[g]:.3f}); "
                 "the query and key weights are frozen, so this comes from what training changed below them: the "
                 "input layer, the positional embeddings and the layer norms.")
    return "\n".join(lines)


def memory_verdict(table: pd.DataFrame) -> str:
    t = table.set_index(["model", "layer"])
    lines = []
    for which in ("trained", "untrained"):
        sub = t.loc[which]
        best = sub.mass_pattern.idxmax()
        lines.append(f"- {which}: query tokens put the most attention on the repeated pattern in layer {best} "
                     f"({sub.mass_pattern[best]:.3f} vs {sub.uniform_pattern[best]:.3f} uniform; on its "
                     f"matching token {sub.mass_slot[best]:.3f} vs {sub.uniform_slot[best]:.3f}, peak there in "
                     f"{100 * sub.top1_slot[best]:.0f} % of rows).")
    return "\n".join(lines)


def cached_runs(scale: str) -> list[dict]:
    """The trained models kept in results/<scale>/attention/ (a complete entry: weights and its .json),
    each as its .json's info plus `weights`, the path of its tensors; sorted by run id."""
    d = results_dir(scale) / "attention"
    out = []
    for meta in sorted(d.glob("*.json")) if d.is_dir() else ():
        weights = meta.with_suffix(".safetensors")
        if not weights.is_file():
            continue
        try:
            info = read_json(meta)
        except ValueError:
            continue
        if isinstance(info, dict) and isinstance(info.get("config"), dict):
            out.append(info | {"weights": weights})
    return out


def analyse_cached(info: dict, n_examples: int = 256, progress: bool = False) -> Analysis:
    """`analyse` of a `cached_runs` entry: its config rebuilt the way `analyse` builds it, so that the
    kept tensors are loaded, never trained again; RunError when the scale's preset no longer gives the
    config the entry was trained with."""
    c = info["config"]
    for backbone in (None, c.get("backbone")):
        cfg = attention_config(c["task"], c["scale"], c.get("seed", 0), c.get("steps") or 0, backbone)
        if cfg.hash() == info.get("config_hash"):
            return analyse(cfg.task, scale=cfg.scale, seed=cfg.seed, steps=cfg.steps, n_examples=n_examples,
                           backbone=backbone, progress=progress)
    raise RunError(f"{info.get('run_id')}: the `{c['scale']}` preset no longer gives the config it was "
                   "trained with; delete its files or analyse the task again to train a new one")
