"""The `fpt` command: train one run, or reproduce the study's notebooks."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing

from .config import SCALES, RunConfig
from .data import TASKS


def _task_option(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option takes KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        v = json.loads(v)
    except json.JSONDecodeError:
        pass  # a bare string such as source=mlxtend
    return k, v


def _base_type(hint) -> type:
    """int for `int | None`, str for `tuple[str, ...]` (parsed by the config), and so on."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (types.UnionType, typing.Union) and args:
        return _base_type(args[0])
    return hint if hint in (int, float, str, bool) else str


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, its help and choices from the field's metadata (the one place
    each is written): --batch-size for batch_size; booleans are switches; the task is positional."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        meta, kind = dict(f.metadata), _base_type(hints[f.name])
        if f.default not in (None, dataclasses.MISSING) and f.default is not False and "default" not in meta["help"]:
            meta["help"] += f" (default: {','.join(f.default) if isinstance(f.default, tuple) else f.default})"
        flag = "--" + meta.get("flag", f.name).replace("_", "-")
        if f.name == "task":
            p.add_argument("task", help=f"{meta['help']}: {', '.join(TASKS)}")
        elif f.name == "task_options":
            p.add_argument(flag, dest=f.name, action="append", type=_task_option, default=[], metavar="KEY=VALUE",
                           help=meta["help"])
        elif f.name == "train":
            p.add_argument(flag, default=",".join(f.default), help=meta["help"])
        elif kind is bool:
            p.add_argument(flag, action="store_true", help=meta["help"])
        else:
            p.add_argument(flag, type=kind, default=f.default, choices=meta.get("choices"), help=meta["help"],
                           metavar=None if "choices" in meta else f.name.upper())


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    values["task_options"] = dict(values["task_options"])
    return RunConfig(**values)


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train one run and write config.json, metrics.jsonl, result.json",
                       description="Train one run. Every option is a field of fptlib.config.RunConfig; "
                       "an option left unset takes the scale's default.")
    add_config_arguments(t)
    t.add_argument("--out", default=None, help="run directory (default: results/SCALE/runs/RUN_ID)")
    t.add_argument("--resume", action="store_true", help="continue an unfinished run in --out from its "
                   "last checkpoint (a finished one is reported as it is)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _reproduce_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="execute the numbered notebooks with papermill",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--scale", default="cpu", choices=SCALES)
    r.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK",
                   help="notebook numbers or names, e.g. 01")
    r.add_argument("--results-dir", default=None, help="write results here instead of results/ "
                   "(sets FPT_RESULTS_DIR)")
    r.add_argument("--workers", type=int, default=None, help="runs trained side by side (sets FPT_WORKERS; "
                   "default: one per core, at most 4, without a GPU; 1 with one or at the smoke scale)")
    r.add_argument("--figures-dir", default=None, help="write figures here instead of figures/ "
                   "(sets FPT_FIGURES_DIR)")
    r.add_argument("--log-output", action="store_true", help="stream notebook output to the terminal")
    g = sub.add_parser("readme", help="rewrite the results gallery (docs/results.md: every table and figure "
                       "of a scale) from results/ and figures/; trains nothing",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("--scale", default="cpu", choices=SCALES)
    g.add_argument("--readme", default=None, help="the file to update (default: the repository's docs/results.md)")


def _plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="every run the notebooks of a scale would compute, its shape and its cost, "
                       "before anything trains; writes results/SCALE/plan/plan.{csv,md}",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", default="paper", choices=SCALES)
    p.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK", help="notebook keys, e.g. 01 01b")
    p.add_argument("--calibrate", action="store_true", help="time a few real training steps of each distinct "
                   "shape on this machine (the GPU if there is one) and multiply by the step budgets")
    p.add_argument("--calibrate-steps", type=int, default=3, help="timed steps per shape (after one warm-up)")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16"),
                   help="calibrate in this precision (default: each run's own, fp32)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="time our training step, evaluation and output-only training "
                       "against the original implementation's, in one run; writes results/bench/",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--backbones", nargs="+", default=["gpt2", "minilm"],
                   help="gpt2 (gpt2-small shape, random init: no download), minilm, or any fptlib backbone name")
    b.add_argument("--shapes", nargs="+", default=None, help="cifar10 mnist bit-memory cifar10-lra listops "
                   "(default: all)")
    b.add_argument("--reps", type=int, default=5, help="timed steps per implementation (median reported)")
    b.add_argument("--quick", action="store_true", help="tiny-gpt2 on two shapes, 2 reps: checks the "
                   "benchmark runs (seconds), measures nothing worth keeping")
    b.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    b.add_argument("--no-memory", action="store_true", help="skip the per-step peak-memory probes")
    b.add_argument("--no-cached", action="store_true", help="skip output-only training with cached features")
    b.add_argument("--side-by-side", action="store_true", help="instead: time short cpu-scale runs trained "
                   "one after another vs side by side in worker processes (what `fpt reproduce` does on a "
                   "CPU); writes side_by_side.{json,md}")
    b.add_argument("--out", default=None, help="output directory (default: results/bench)")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _data_parser(sub) -> None:
    d = sub.add_parser("data", help="download datasets (fetch) and list what is present (status)")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    df = dsub.add_parser("fetch", help="download one dataset from its canonical source, verify it and put it "
                         "where the task reads it")
    df.add_argument("task", help=f"one of: {', '.join(TASKS)}, or all")
    df.add_argument("--data-dir", default=None, help="data directory (default: FPT_DATA_DIR, else <repo>/data)")
    df.add_argument("--mirror", default=None, help="base URL of a mirror serving each file under its own name "
                    "(default: FPT_DATA_MIRROR, else the canonical URLs)")
    df.add_argument("--no-progress", action="store_true", help="hide download progress")
    df.add_argument("--hashes", default=None, metavar="FILE", help="JSON file {file name: 'md5:...' or "
                    "'sha256:...'} overriding the registry's checksums (a mirror with re-packed copies; tests)")
    ds = dsub.add_parser("status", help="list each dataset: present, missing, corrupt or generated, where, "
                         "and how to get it")
    ds.add_argument("--data-dir", default=None, help="data directory (default: FPT_DATA_DIR, else <repo>/data)")
    ds.add_argument("--json", action="store_true", help="print the rows as JSON")
    ds.add_argument("--hashes", default=None, metavar="FILE", help="checksum overrides, as for fetch")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fpt", description="Frozen Pretrained Transformers: train runs and "
                                "reproduce the paper's tables (Lu et al. 2021).")
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (_train_parser, _reproduce_parser, _plan_parser, _bench_parser, _data_parser):
        add(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "train":
        return _train(args)
    if args.cmd == "data":
        return _data(args)
    if args.cmd == "bench":
        return _bench(args)
    if args.cmd == "readme":
        return _readme(args)
    if args.cmd == "plan":
        return _plan(args)
    return _reproduce(args)


def _data(args) -> int:
    from .data import DataError
    from .data.download import fetch, format_status, load_hash_overrides, status, with_hashes
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    try:
        registry = with_hashes(load_hash_overrides(args.hashes)) if args.hashes else None
        if args.data_cmd == "status":
            rows = status(data_dir, registry=registry)
            print(json.dumps(rows, indent=2) if args.json else format_status(rows, data_dir))
            return 0
        result = fetch(args.task, data_dir, mirror=args.mirror, progress=not args.no_progress,
                       registry=registry)
    except (DataError, OSError) as e:
        msg = str(e)
        print(msg if msg.startswith("fpt data") else f"fpt data {args.data_cmd}: error: {msg}", file=sys.stderr)
        return 2
    for r in result.get("rows", [result]):
        where = f" in {r['path']}" if r.get("path") else ""
        print(f"{r['name']}: {r['action']}{where}: {r['detail']}")
    return 0


def _bench(args) -> int:
    from pathlib import Path

    import torch

    from .paths import PROJ_ROOT
    from .perf import bench
    if args.threads:
        torch.set_num_threads(args.threads)
    backbones = {b: bench.BACKBONES.get(b, "random") for b in args.backbones}
    shapes, reps = args.shapes, args.reps
    if args.quick:
        backbones, shapes, reps = bench.QUICK["backbones"], args.shapes or bench.QUICK["shapes"], bench.QUICK["reps"]
    out = Path(args.out) if args.out else PROJ_ROOT / "results" / "bench"
    if args.side_by_side:
        kw = {"steps": 4, "seeds": (0, 1), "tasks": ("bit-xor",), "scale": "smoke"} if args.quick else {}
        record = bench.side_by_side(out, **kw)
        print((out / "side_by_side.md").read_text())
        print(f"[fpt bench] {record['wall_seconds']:.0f} s; full record in {out / 'side_by_side.json'}")
        return 0
    try:
        record = bench.run(out, backbones, shapes, reps=reps, memory=not args.no_memory,
                           cached=not args.no_cached, progress=not args.no_progress)
    except ValueError as e:
        print(f"fpt bench: error: {e}", file=sys.stderr)
        return 2
    print((out / "bench.md").read_text())
    print(f"[fpt bench] {record['wall_seconds']:.0f} s; full record in {record['path']}")
    return 0


def _train(args) -> int:
    from .config import resolve
    from .training import RunError, run_dir_for, train
    try:
        cfg = resolve(config_from_args(args))
        out = args.out or run_dir_for(cfg)
        result = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, RunError) as e:
        print(f"fpt train: error: {e}", file=sys.stderr)
        return 2
    keys = ("task", "backbone", "init", "trained_groups", "seed", "scale", "steps", "test_accuracy",
            "test_masked_accuracy", "train_accuracy", "trainable_params", "trainable_params_by_group",
            "total_params", "frozen_unchanged", "wall_seconds")
    print(json.dumps({k: result[k] for k in keys if k in result}, indent=2))
    print(f"run directory: {out}")
    return 0


def _plan(args) -> int:
    from dataclasses import replace

    from .study import plan as P
    try:
        runs = P.plan(args.scale, args.only)
    except ValueError as e:
        print(f"fpt plan: error: {e}", file=sys.stderr)
        return 2
    if args.precision:
        runs["precision"] = args.precision
        runs["config"] = [replace(c, precision=args.precision) for c in runs.config]
    if args.calibrate:
        runs = P.calibrate(runs, args.calibrate_steps, progress=not args.no_progress)
    paths = P.save(runs, args.scale)
    print(P.markdown(runs, args.scale))
    print(f"[fpt plan] {len(runs)} runs; every run in {paths['csv']}")
    return 0


def _readme(args) -> int:
    from pathlib import Path

    from .paths import PROJ_ROOT
    from .study.report import update_readme
    path = Path(args.readme) if args.readme else PROJ_ROOT / "docs" / "results.md"
    try:
        changed = update_readme(path, args.scale)
    except (OSError, ValueError) as e:
        print(f"fpt readme: error: {e}", file=sys.stderr)
        return 2
    print(f"[fpt readme] {path}: gallery of scale {args.scale} " + ("rewritten" if changed else "already current"))
    return 0


def _reproduce(args) -> int:
    if args.results_dir:
        os.environ["FPT_RESULTS_DIR"] = os.path.abspath(args.results_dir)
    if args.figures_dir:
        os.environ["FPT_FIGURES_DIR"] = os.path.abspath(args.figures_dir)
    if args.workers is not None:
        if args.workers < 1:
            print(f"fpt reproduce: error: --workers {args.workers}: give 1 or more runs to train at once",
                  file=sys.stderr)
            return 2
        os.environ["FPT_WORKERS"] = str(args.workers)
    from .study.notebooks import reproduce
    try:
        summary = reproduce(args.scale, args.only, log_output=args.log_output)
    except ValueError as e:
        print(f"fpt reproduce: error: {e}", file=sys.stderr)
        return 2
    print(f"[fpt reproduce] {len(summary['notebooks'])} notebook(s) in {summary['wall_seconds']} s; "
          f"failed: {', '.join(summary['failed']) or 'none'}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
