"""Golden runs: short runs of every task family and of each mechanism that decides numbers (LSTM,
cached features, stats and bit init, runs side by side in workers, the attention study's in-memory
training), whose exact metrics are committed in golden.json. tests/test_golden.py reruns them.

When a change alters these numbers on purpose, raise fptlib.training.result.NUMERICS_VERSION,
recompute the committed results it affects, and rewrite this file's record:

    .venv/bin/python tests/golden/runs.py --write

All at the smoke scale, with one torch thread.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
GOLDEN_FILE = HERE / "golden.json"

RUNS = {
    "bit-xor": {"task": "bit-xor"},
    "bit-memory": {"task": "bit-memory"},
    "mnist": {"task": "mnist"},
    "listops": {"task": "listops"},
    "cifar10": {"task": "cifar10", "task_options": {"n_val": 20}},      # fixture batches (tests/test_cifar.py)
    "cifar10-lra": {"task": "cifar10-lra", "task_options": {"n_val": 20}},
    "homology": {"task": "homology"},                                   # fixture LMDBs (tests/test_homology.py)
    "lstm": {"task": "bit-xor", "backbone": "lstm", "init": "random", "train": ("full",)},
    "cached-features": {"task": "mnist", "train": ("output",), "cache_features": True},
    "stats-init": {"task": "mnist", "init": "stats"},
    "bit-init": {"task": "bit-xor", "init": "bit"},
}
SPECIAL = ("side-by-side", "attention")
NAMES = tuple(RUNS) + SPECIAL


def machine() -> dict:
    """What decides the last bits of float results besides the code: the CPU kernels torch picks."""
    vendor = ""
    try:
        vendor = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("vendor_id"))
    except (OSError, StopIteration):
        pass
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_vendor": vendor,
            "torch": torch.__version__}


def _numbers(result: dict, run_dir: Path) -> dict:
    curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"test": result["test"], "train_accuracy": result["train_accuracy"], "data_hash": result["data_hash"],
            "extra_test": result.get("extra_test"), "frozen_unchanged": result["frozen_unchanged"],
            "trainable_params_by_group": result["trainable_params_by_group"],
            "curve": [[c["step"], c["train_loss"], c["val_accuracy"], c["val_loss"]] for c in curve]}


def _fixtures() -> None:
    sys.path.insert(0, str(HERE.parent))
    from test_cifar import write_fixture as cifar_fixture
    from test_homology import write_fixture as homology_fixture
    cifar_fixture()
    homology_fixture()


def measure(name: str, work: Path) -> dict:
    """Run golden run `name` in a fresh directory (its own results and data directories)."""
    from fptlib.config import RunConfig, resolve
    os.environ["FPT_RESULTS_DIR"] = str(work / "results")
    os.environ["FPT_DATA_DIR"] = str(work / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if name == "side-by-side":
            return _side_by_side()
        if name == "attention":
            return _attention()
        if name in ("cifar10", "cifar10-lra", "homology"):
            _fixtures()
        from fptlib.training import run_dir_for, train
        cfg = resolve(RunConfig(scale="smoke", **RUNS[name]))
        result = train(cfg, run_dir_for(cfg), progress=False)
        return _numbers(result, run_dir_for(cfg))
    finally:
        torch.set_num_threads(threads)


def _side_by_side() -> dict:
    """Two cpu-shaped runs trained at once in two spawned workers, one thread each."""
    from fptlib.config import RunConfig, resolve
    from fptlib.runs import PlannedRun, execute, local
    from fptlib.training import run_dir_for
    runs = [PlannedRun("FPT", resolve(RunConfig(task="bit-xor", scale="cpu", seed=s, steps=20, eval_every=10)))
            for s in (0, 1)]
    local.usable_cores, cores = (lambda: 2), local.usable_cores  # one thread per worker on any machine
    try:
        execute(runs, progress=False, workers=2)
    finally:
        local.usable_cores = cores
    out = {}
    for r in runs:
        d = run_dir_for(r.config)
        out[f"seed{r.config.seed}"] = _numbers(json.loads((d / "result.json").read_text()), d)
    return out


def _attention() -> dict:
    from fptlib.study.attention import attention_config, train_in_process
    _, _, info = train_in_process(attention_config("bit-xor", scale="smoke"), progress=False)
    return {k: info[k] for k in ("test_accuracy", "test_masked_accuracy", "final_train_loss", "frozen_digest",
                                 "frozen_unchanged")}


if __name__ == "__main__":
    import tempfile
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    from fptlib.training import NUMERICS_VERSION
    record = {"numerics_version": NUMERICS_VERSION, "machine": machine(), "runs": {}}
    for n in NAMES:
        with tempfile.TemporaryDirectory() as d:
            record["runs"][n] = measure(n, Path(d))
            print("measured", n, flush=True)
    GOLDEN_FILE.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN_FILE}")
