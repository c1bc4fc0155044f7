"""Faults and bad input never lose a result and never produce a wrong number silently.

Each test says which protection it guards; removing that protection makes the test fail. Faults are
injected deterministically where possible: FPT_FAULT=point:n makes a training process SIGKILL
itself the n-th time it reaches a named point (see fptlib.training.FAULT_POINTS). The `reliability`
fixture counts every fault injected and bad input tried, once its handling has been checked; the totals
are printed at the end of the run.
"""
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import LONG_WAIT, SHORT_WAIT, curve, numbers, read_line

import fptlib.training.checkpoint as checkpoint
import fptlib.training.faults as faults
import fptlib.training.loop as loop
import fptlib.training.steps as steps
from fptlib import RunConfig, train
from fptlib.config import resolve
from fptlib.runs import PlannedRun, execute
from fptlib.study.base import Tables1And2, load_runs
from fptlib.study.render.markdown import markdown_table
from fptlib.study.results.tables import MixedResults, summarise
from fptlib.training import NUMERICS_VERSION, NonFiniteLoss, RunError, run_dir_for

# The modules that call faults.fault (each binds the name at import): a test that watches or
# replaces the fault hook patches it in all of them.
FAULT_CALLERS = (loop, checkpoint)

# Checkpoints at steps 2, 4 and 6; a run takes a second or two at the smoke scale (128 test
# examples instead of all 1024 keep the final evaluation short).
CFG = dict(task="bit-xor", scale="smoke", seed=0, steps=6, eval_every=2, task_options={"n_test": 128})

# A training process for the fault tests: resumes (or starts) CFG in a run directory. With
# "half-result" it is killed while result.json is half-written: the temporary file is cut to half
# its length and the process SIGKILLs itself just before the file would be renamed into place. With
# "count-steps:FILE" it appends a byte to FILE at each optimizer step it takes (after the backward
# pass, before the update): the test can see on disk that training is under way.
WORKER = r"""
import json, os, signal, sys
cfg, out, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if mode == "half-result":
    real_replace = os.replace
    def replace(src, dst, *a, **k):
        if os.path.basename(str(dst)) == "result.json":
            with open(src, "r+b") as f:
                f.truncate(os.path.getsize(src) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *a, **k)
    os.replace = replace
if mode.startswith("count-steps:"):  # each optimizer step this process takes appends a byte to that file
    import fptlib.training.checkpoint as checkpoint
    import fptlib.training.loop as loop
    log, real = open(mode.split(":", 1)[1], "ab", buffering=0), loop.fault
    def counting(point):
        if point == "step":
            log.write(b".")
        real(point)
    loop.fault = checkpoint.fault = counting
from fptlib import RunConfig, train
print("ready", flush=True)
train(RunConfig(**cfg), out, resume=True, progress=False)
"""


def _spawn(run_dir: Path, fault: str | None = None, mode: str = "plain", cfg: dict = CFG, **kw):
    env = {k: v for k, v in os.environ.items() if k != "FPT_FAULT"}
    if fault:
        env["FPT_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(cfg), str(run_dir), mode], env=env,
                            text=True, **kw)


def _state_step(ckpt: Path) -> int:
    return json.loads((ckpt / "trainer_state.json").read_text())["step"]


def _patch_fault(mp, hook) -> None:
    for module in FAULT_CALLERS:
        mp.setattr(module, "fault", hook)


def _leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name not in
                  {"config.json", "metrics.jsonl", "result.json", ".lock"})


@pytest.fixture
def steps_computed(monkeypatch):
    """Counts the optimizer steps this process takes (the 'step' fault point runs once per step)."""
    count = {"step": 0}
    real = faults.fault

    def counting(point):
        count[point] = count.get(point, 0) + 1
        real(point)
    _patch_fault(monkeypatch, counting)
    return count


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of CFG: the numbers every interrupted one must end with."""
    run, t = tmp_path_factory.mktemp("ref") / "run", time.time()
    res = train(RunConfig(**CFG), run, progress=False)
    return {"result": res, "seconds": time.time() - t, "dir": run}


# point -> (FPT_FAULT, worker mode, what the run directory holds after the kill, steps a resume redoes)
KILLS = {
    "mid-step": ("step:3", "plain", {"checkpoint": 2}, 4),
    "checkpoint-written": ("checkpoint-written:2", "plain", {"checkpoint": 2, ".checkpoint-4.tmp": 4}, 4),
    "between-renames": ("checkpoint-swap:1", "plain", {".checkpoint-old": 2, ".checkpoint-4.tmp": 4}, 4),
    "final-eval": ("final-eval:1", "plain", {"checkpoint": 6}, 0),
    "half-written-result": (None, "half-result", {"checkpoint": 6}, 0),
}


@pytest.fixture(scope="module")
def killed(request, tmp_path_factory):
    """One run directory per kill point this session tests (mid-step always: `interrupted` copies it), the
    killed processes started together (faster on 2 cores)."""
    root = tmp_path_factory.mktemp("killed")
    points = {"mid-step"} | {item.callspec.params["point"] for item in request.session.items
                             if getattr(item, "originalname", "") == KILL_TEST}
    procs = {name: _spawn(root / name, fault, mode, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for name, (fault, mode, _, _) in KILLS.items() if name in points}
    out = {}
    for name, p in procs.items():
        _, err = p.communicate(timeout=LONG_WAIT)
        out[name] = (root / name, p.returncode, err)
    return out


KILL_TEST = "test_kill_at_a_fault_point_then_resume_gives_the_uninterrupted_numbers"


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_at_a_fault_point_then_resume_gives_the_uninterrupted_numbers(
        point, killed, reference, steps_computed, tmp_path, reliability):
    # Guards, per point: mid-step - checkpoints restore model, optimizer and RNG exactly;
    # checkpoint-written - an unswapped (sealed but not renamed) checkpoint is never used and the
    # current one survives; between-renames - the .checkpoint-old fallback (without it the resume
    # would redo all 6 steps, not 4); final-eval - result.json is written only after everything else,
    # the checkpoint is removed only after it; half-written-result - the atomic write of result.json
    # (a half-written temporary file is never read back, and is cleaned up).
    fault, mode, holds, redo = KILLS[point]
    src, rc, err = killed[point]
    assert rc == -signal.SIGKILL, f"the fault did not fire (exit {rc}): {err}"
    run = tmp_path / "run"
    shutil.copytree(src, run)
    assert not (run / "result.json").exists()
    for name, step in holds.items():
        assert _state_step(run / name) == step, name
    if point == "half-written-result":
        half = [p for p in run.iterdir() if p.name.startswith(".result.json.") and p.name.endswith(".tmp")]
        assert len(half) == 1 and half[0].stat().st_size > 0
        with pytest.raises(ValueError):
            json.loads(half[0].read_text())  # really half a file
    seen_at_start = []
    counting = loop.fault  # the steps_computed fixture's counter

    def snapshot(p):  # what the resuming process finds once it is running
        if not seen_at_start:
            seen_at_start.append(_leftovers(run))
        counting(p)
    with pytest.MonkeyPatch.context() as mp:
        _patch_fault(mp, snapshot)
        res = train(RunConfig(**CFG), run, resume=True, progress=False)
    # leftovers of the killed process are removed before any work (kills in a row do not pile them up)
    assert not [n for n in seen_at_start[0] if n.endswith(".tmp") or n.startswith(".trash-")]
    assert steps_computed["step"] == redo  # at most the work since the last checkpoint is redone
    assert numbers(res) == numbers(reference["result"])
    assert numbers(json.loads((run / "result.json").read_text())) == numbers(reference["result"])
    assert curve(run) == curve(reference["dir"])  # the learning curve too, point by point
    assert _leftovers(run) == []  # unswapped checkpoints, trash and temporary files are cleaned up
    reliability.fault(f"SIGKILL at {point}", kind="SIGKILL")


RANDOM_KILLS, RANDOM_KILL_TRIES = 3, 15  # kills that must land mid-training; attempts allowed for them


def _first_step(p, log: Path) -> float | None:
    """When the worker took its first optimizer step (its step log is no longer empty), or None if it ended
    without taking one (a resume with no step left to take)."""
    deadline = time.time() + SHORT_WAIT
    while log.stat().st_size == 0:
        if p.poll() is not None:
            return None
        assert time.time() < deadline, "the worker took no training step in time"
        time.sleep(0.005)
    return time.time()


def _same_as_reference(run: Path, reference: dict) -> None:
    assert numbers(json.loads((run / "result.json").read_text())) == numbers(reference["result"])
    assert curve(run) == curve(reference["dir"])
    assert _leftovers(run) == []


def test_kills_at_random_moments_of_training_then_resume_gives_the_uninterrupted_numbers(
        tmp_path, reference, reliability):
    # Guards the same protections at points nobody enumerated (inside save_state, a rename, a metrics
    # write, an rmtree...): each worker is killed a seeded random delay after its first training step
    # (seen on disk in its step log), kills in a row on one run directory, then a resume. A kill counts
    # only if it landed mid-training: the worker had taken a step and had not written the result. A
    # worker that finishes first is a resume of its series (checked, then a new series starts).
    rng = random.Random(20210309)
    span = reference["seconds"]  # a first guess at how long a worker runs after its first step
    kills: list[tuple[str, int]] = []  # (run directory, steps the killed worker had begun)
    run, series = None, 0
    for attempt in range(1, RANDOM_KILL_TRIES + 1):
        if run is None:
            series += 1
            run = tmp_path / f"series{series}"
        log = tmp_path / f"steps-{attempt}"
        log.touch()
        p = _spawn(run, mode=f"count-steps:{log}", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert read_line(p.stdout).strip() == "ready"
            first = _first_step(p, log)
            if first is not None:
                time.sleep(rng.uniform(0, span))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            rc = p.wait(timeout=SHORT_WAIT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=SHORT_WAIT)
        if rc == -signal.SIGKILL and first is not None and not (run / "result.json").exists():
            kills.append((run.name, log.stat().st_size))
            if len(kills) == RANDOM_KILLS:
                break
            continue
        # it finished before the kill: a resume of this series, which must end as the uninterrupted run
        assert rc in (0, -signal.SIGKILL), f"the worker failed (exit {rc})"
        if first is not None:
            span = max(0.05, time.time() - first)
        _same_as_reference(run, reference)
        run = None
    assert len(kills) == RANDOM_KILLS, f"only {len(kills)} of {RANDOM_KILL_TRIES} workers were killed mid-training"
    res = train(RunConfig(**CFG), run, resume=True, progress=False)
    assert numbers(res) == numbers(reference["result"])
    _same_as_reference(run, reference)
    for name, begun in kills:
        reliability.fault(f"SIGKILL at a random moment ({name}, in its step {begun})", kind="SIGKILL")


# ---- damaged checkpoints and results are never read back as valid -----------------------------

@pytest.fixture
def interrupted(killed, tmp_path):
    """A copy of a run killed in step 3: checkpoint/ holds step 2."""
    run = tmp_path / "run"
    shutil.copytree(killed["mid-step"][0], run)
    return run


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json is missing"),
    (lambda c: _truncate(c / "trainer_state.json"), "trainer_state.json is unreadable"),
    (lambda c: _truncate(c / "model.safetensors"), "model.safetensors has .* bytes, not the"),
    (lambda c: _flip_a_byte(c / "optimizer.bin"), "optimizer.bin does not match the sha256"),
    (lambda c: (c / "random_states_0.pkl").unlink(), "random_states_0.pkl is missing"),
], ids=["seal-missing", "seal-truncated", "model-truncated", "optimizer-changed", "rng-state-missing"])
def test_a_damaged_checkpoint_is_refused_not_loaded(interrupted, damage, message, reliability):
    # Guards the checkpoint seal (sizes and sha256 in trainer_state.json, checked before loading):
    # without it a damaged file is loaded (or crashes deep in torch) instead of a clear refusal.
    damage(interrupted / "checkpoint")
    with pytest.raises(RunError, match=f"no usable checkpoint .*{message}.*delete"):
        train(RunConfig(**CFG), interrupted, resume=True, progress=False)
    assert not (interrupted / "result.json").exists()
    reliability.bad_input(message, kind="damaged checkpoint")


def test_a_damaged_checkpoint_falls_back_to_the_previous_good_one(interrupted, reference, reliability):
    # Guards the fallback order with the seal: checkpoint/ fails its seal, so .checkpoint-old/ (a good
    # checkpoint of the same run) is used, with a warning, and the numbers are still exact.
    shutil.copytree(interrupted / "checkpoint", interrupted / ".checkpoint-old")
    _flip_a_byte(interrupted / "checkpoint" / "model.safetensors")
    with pytest.warns(RuntimeWarning, match="skipping damaged checkpoint"):
        res = train(RunConfig(**CFG), interrupted, resume=True, progress=False)
    assert numbers(res) == numbers(reference["result"])
    assert curve(interrupted) == curve(reference["dir"])
    reliability.bad_input("damaged checkpoint with a good previous one", kind="damaged checkpoint")


def test_a_checkpoint_of_another_config_is_refused_even_without_config_json(interrupted, reliability):
    # Guards the config hash inside the checkpoint (a second line behind config.json): a checkpoint
    # is never continued under another config.
    (interrupted / "config.json").unlink()
    with pytest.raises(RunError, match="was made by config .*refusing to mix"):
        train(RunConfig(**{**CFG, "seed": 1}), interrupted, resume=True, progress=False)
    reliability.bad_input("checkpoint of another config", kind="damaged checkpoint")


def test_a_checkpoint_trained_on_other_frozen_weights_is_refused(interrupted, reliability):
    # Guards the frozen-weights check on resume: checkpoints hold only the trainable tensors, so a run
    # whose frozen weights are rebuilt differently (a source run trained again on another CPU) would
    # otherwise continue a model it never trained, and say so only at the end (frozen_unchanged).
    seal = interrupted / "checkpoint" / "trainer_state.json"
    state = json.loads(seal.read_text())
    name = sorted(state["frozen_fingerprint"])[0]
    state["frozen_fingerprint"][name] = "0" * 64
    seal.write_text(json.dumps(state))
    with pytest.raises(RunError, match=f"frozen weights built now differ .*1 of .* tensors, e.g. {name}.*delete"):
        train(RunConfig(**CFG), interrupted, resume=True, progress=False)
    assert not (interrupted / "result.json").exists()
    reliability.bad_input("checkpoint trained on other frozen weights", kind="damaged checkpoint")


def test_resume_with_another_config_is_refused_by_the_cli(interrupted, reliability, capsys):
    # Guards the config.json check: --resume with another config is refused, not mixed.
    from fptlib.cli import main
    rc = main(["train", "bit-xor", "--scale", "smoke", "--steps", "6", "--eval-every", "2", "--seed", "1",
               "--option", "n_test=128", "--no-progress", "--resume", "--out", str(interrupted)])
    assert rc == 2 and "holds a run of another config" in capsys.readouterr().err
    reliability.bad_input("--resume with another config", kind="wrong run directory")


@pytest.mark.parametrize("damage, message", [
    (lambda r: _truncate(r / "result.json"), "result.json is unreadable"),
    (lambda r: (r / "result.json").write_text(json.dumps({"config_hash": "0" * 12, "test_accuracy": 1.0})),
     "belongs to config 000000000000"),
    (lambda r: _truncate(r / "config.json"), "config.json is unreadable"),
], ids=["result-truncated", "result-of-another-config", "config-truncated"])
def test_a_damaged_result_or_config_is_refused_not_reported(tmp_path, reference, damage, message, reliability):
    # Guards the checks on reading a finished run back (readable, and of this config): a damaged or
    # foreign result.json is refused, never returned as this run's numbers.
    cfg = resolve(RunConfig(**CFG))
    run = run_dir_for(cfg)
    shutil.copytree(reference["dir"], run)
    damage(run)
    with pytest.raises(RunError, match=message):
        train(cfg, run, resume=True, progress=False)
    with pytest.raises(RunError, match=message):  # the study runner reads runs back the same way
        execute([PlannedRun("FPT", cfg)], progress=False)
    reliability.bad_input(message, kind="wrong run directory")


# ---- full disk --------------------------------------------------------------------------------

def _full_disk_on(monkeypatch, name: str, nth: int):
    real = loop.write_json_atomic
    seen = {"n": 0}

    def write(path, obj):
        if Path(path).name == name:
            seen["n"] += 1
            if seen["n"] == nth:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)
    for module in (loop, checkpoint):  # result.json and config.json; trainer_state.json
        monkeypatch.setattr(module, "write_json_atomic", write)


@pytest.mark.parametrize("name, nth, kept_step, redo", [
    ("trainer_state.json", 2, 2, 4),   # while writing the checkpoint of step 4
    ("result.json", 1, 6, 0),          # while writing the result
])
def test_a_full_disk_costs_only_the_work_since_the_last_checkpoint(
        tmp_path, monkeypatch, reference, name, nth, kept_step, redo, reliability):
    # Guards: the half-built checkpoint is removed (space given back) while the last complete one is
    # kept, the checkpoint is removed only after result.json is written, and the OSError becomes a
    # clear message saying how to continue.
    run = tmp_path / "run"
    _full_disk_on(monkeypatch, name, nth)
    with pytest.raises(RunError, match="No space left on device.*--resume"):
        train(RunConfig(**CFG), run, resume=True, progress=False)
    monkeypatch.undo()
    assert not (run / "result.json").exists()
    assert _state_step(run / "checkpoint") == kept_step
    assert not [p for p in run.iterdir() if p.name.startswith(".checkpoint-")]
    count = {"n": 0}
    real = faults.fault
    _patch_fault(monkeypatch, lambda p: (count.__setitem__("n", count["n"] + (p == "step")), real(p)))
    res = train(RunConfig(**CFG), run, resume=True, progress=False)
    assert count["n"] == redo
    assert numbers(res) == numbers(reference["result"])
    assert curve(run) == curve(reference["dir"])
    reliability.fault(f"ENOSPC writing {name}", kind="full disk")


# ---- numerical faults -------------------------------------------------------------------------

@pytest.mark.parametrize("poison, at, message", [
    (float("inf"), 3, r"loss became inf at step 3 .*last finite loss [0-9.e-]+\. No result"),
    (float("nan"), 1, r"loss became nan at step 1 .*last finite loss none \(the first step failed\)"),
])
def test_an_infinite_or_nan_loss_stops_with_a_diagnosis(tmp_path, monkeypatch, poison, at, message, reliability):
    # Guards the finiteness check of every training loss before a checkpoint or result is written.
    real, calls = steps.loss_fn, {"n": 0}

    def poisoned(logits, batch, n_classes):
        calls["n"] += 1
        out = real(logits, batch, n_classes)
        return out * poison if calls["n"] >= at else out
    monkeypatch.setattr(steps, "loss_fn", poisoned)
    with pytest.raises(NonFiniteLoss, match=message) as e:
        train(RunConfig(**CFG), tmp_path / "run", progress=False)
    assert "--lr" in str(e.value)  # the hint
    assert not (tmp_path / "run" / "result.json").exists()
    reliability.fault(f"{poison} loss at step {at}", kind="non-finite loss")


# ---- bad input: refused with a message naming the valid choices -------------------------------

def _write_idx(path: Path, shape, values):
    import struct

    import numpy as np
    arr = np.resize(np.asarray(values, dtype=np.uint8), shape)
    path.write_bytes(struct.pack(">HBB", 0, 8, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + arr.tobytes())


def _mnist_files(root: Path, corrupt: bool):
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(root / f"{split}-images-idx3-ubyte", (n, 28, 28), range(256))
        _write_idx(root / f"{split}-labels-idx1-ubyte", (n,), range(10))
    if corrupt:
        _truncate(root / "train-images-idx3-ubyte")


SMOKE = ["--scale", "smoke", "--no-progress"]
BAD_CLI = [
    (["cifar100"], "unknown task 'cifar100'; choose one of bit-xor, bit-memory, mnist"),
    (["bit-xor", "--backbone", "gpt-9"], "unknown backbone 'gpt-9'; choose one of"),
    (["bit-xor", "--init", "pretrainde"], "invalid choice: 'pretrainde' .choose from '?pretrained'?, '?random"),
    (["bit-xor", "--scale", "huge"], "invalid choice: 'huge' .choose from '?smoke'?, '?cpu'?, '?paper"),
    (["bit-xor", "--train", "input,attn"], "unknown parameter group.*choose from input, output"),
    (["bit-xor", "--option", "nbits=3"], r"unknown option\(s\) \['nbits'\] for task 'bit-xor'; valid:"),
    (["bit-xor", "--steps", "0"], "steps must be at least 1"),
    (["mnist", "--option", "patch_size=5"], "does not divide the 28x28 image"),
    (["bit-memory", "--option", "patch_size=7"], "patch_size=7 does not divide n_bits=100; choose a divisor"),
    (["bit-memory", "--option", "n_bits=1000", "--option", "patch_size=1"],
     "6000 tokens but backbone minilm has 512 positions; choose a larger patch size"),
    (["mnist", "--option", "source=idx"], "full MNIST needs .*`fpt data fetch mnist`"),
    (["mnist", "--option", "source=idx", "corrupt-mnist"], "truncated or corrupt.*`fpt data fetch mnist`"),
    (["bit-xor", "unwritable"], "cannot write to output directory"),
]


@pytest.mark.parametrize("argv, message", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_input_exits_2_with_a_message_naming_the_choices(tmp_path, monkeypatch, capsys, argv, message,
                                                             reliability):
    # Guards each validation (and the missing-data hint naming `fpt data fetch`): without it the run
    # fails later with a traceback, or silently computes something else.
    from fptlib.cli import main
    kind = ("corrupt data" if "corrupt-mnist" in argv else "missing data" if "source=idx" in argv
            else "wrong run directory" if "unwritable" in argv else "command line")
    what = " ".join(argv)
    out = tmp_path / "run"
    if "corrupt-mnist" in argv:
        argv = [a for a in argv if a != "corrupt-mnist"]
        _mnist_files(tmp_path / "data" / "mnist", corrupt=True)  # FPT_DATA_DIR is tmp_path/data
    if "unwritable" in argv:
        argv = [a for a in argv if a != "unwritable"]
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "run"
    try:
        rc = main(["train", *argv, *SMOKE, "--out", str(out)])
    except SystemExit as e:  # argparse's own choices
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (out / "result.json").exists()
    reliability.bad_input(what, kind=kind)


@pytest.mark.parametrize("kw, message", [
    ({"tasks": "mnist"}, "parameter 'tasks' of Tables1And2 must be list, got str 'mnist'"),
    ({"progress": "yes"}, "parameter 'progress' of Tables1And2 must be bool"),
    ({"steps": 2.5}, "parameter 'steps' of Tables1And2 must be int, got float"),
    ({"seeds": 0}, "parameter 'seeds' of Tables1And2 must be list, got int"),
])
def test_a_papermill_parameter_of_the_wrong_type_is_named(kw, message, reliability):
    # Guards check_parameter_types: a wrong literal from `papermill -p` is named at once.
    with pytest.raises(TypeError, match=message):
        Tables1And2(**kw)
    reliability.bad_input(f"papermill {kw}", kind="parameter")


def test_an_unknown_fault_point_names_the_valid_ones(monkeypatch, reliability):
    # Guards the fault hook's own validation: a misspelt FPT_FAULT would otherwise never fire and a
    # fault test would pass without injecting anything.
    monkeypatch.setenv("FPT_FAULT", "stpe:1")
    with pytest.raises(RunError, match="unknown point 'stpe'; choose one of step, checkpoint-written"):
        faults.fault("step")
    reliability.bad_input("FPT_FAULT=stpe:1", kind="parameter")


# ---- batch runs: fpt reproduce -----------------------------------------------------------------

def _notebook(path: Path, body: str):
    import nbformat
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('scale = "cpu"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_reproduce_runs_every_notebook_and_summarises_the_failures(tmp_path, fpt_cmd, reliability):
    # Guards reproduce's carry-on loop and its summary: one notebook raising does not stop the next,
    # the failure and its reason are listed at the end, and the exit status is 1.
    nbs, res = tmp_path / "nbs", tmp_path / "res"
    nbs.mkdir()
    _notebook(nbs / "01_fails.ipynb", 'raise RuntimeError(f"boom at scale {scale}")')
    _notebook(nbs / "02_works.ipynb", 'import os, pathlib\n'
              'pathlib.Path(os.environ["FPT_RESULTS_DIR"], "02_ran").write_text(scale)')
    env = {**os.environ, "FPT_NOTEBOOKS_DIR": str(nbs)}
    r = subprocess.run(fpt_cmd + ["reproduce", "--scale", "smoke", "--results-dir", str(res)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert (res / "02_ran").read_text() == "smoke"  # the notebook after the failing one ran
    tail = r.stdout[r.stdout.index("summary:"):]
    assert "1 of 2 notebook(s) ran; FAILED:" in tail
    assert "01_fails.ipynb: RuntimeError: boom at scale smoke (in cell [" in tail
    assert "failed: 01_fails.ipynb" in tail
    summary = json.loads((res / "smoke" / "reproduce_summary.json").read_text())
    assert [(e["notebook"], e["status"]) for e in summary["notebooks"]] == [
        ("01_fails.ipynb", "failed"), ("02_works.ipynb", "ok")]
    reliability.fault("a notebook raising", kind="failure inside a run")


def test_an_empty_notebooks_directory_is_refused(tmp_path, reliability):
    # Guards the check that there is something to run (else `fpt reproduce` "succeeds" doing nothing).
    from fptlib.study.notebooks import reproduce
    with pytest.raises(ValueError, match="no numbered notebooks"):
        reproduce("smoke", notebooks_dir=tmp_path)
    reliability.bad_input("empty notebooks directory", kind="parameter")


def test_a_rerun_computes_only_the_work_left(interrupted, reference, steps_computed):
    # Guards the study runner's cache and resume: a finished run is read back, an unfinished one
    # continues from its checkpoint (not from step 0), and nothing is recomputed the second time.
    cfg = resolve(RunConfig(**CFG))
    run = run_dir_for(cfg)
    run.parent.mkdir(parents=True)
    shutil.copytree(interrupted, run)  # killed in step 3: checkpoint at step 2
    first = execute([PlannedRun("FPT", cfg)], progress=False)
    assert steps_computed["step"] == 4
    stamp = (run / "result.json").stat().st_mtime_ns
    second = execute([PlannedRun("FPT", cfg)], progress=False)
    assert steps_computed["step"] == 4 and (run / "result.json").stat().st_mtime_ns == stamp
    assert first.equals(second)
    assert first.test_accuracy.iloc[0] == reference["result"]["test_accuracy"]
    assert curve(run) == curve(reference["dir"])
    # what the table's provenance check needs travels with each run
    assert first.versions.iloc[0] == reference["result"]["versions"]
    assert first.data_hash.iloc[0] == reference["result"]["data_hash"]
    assert first.task_options.iloc[0] == cfg.task_options


# ---- concurrency -------------------------------------------------------------------------------

STUDY_WORKER = r"""
import sys, time
from pathlib import Path
from fptlib.config import RunConfig, resolve
from fptlib.runs import PlannedRun, execute
runs = [PlannedRun("FPT", resolve(RunConfig("bit-xor", scale="smoke", seed=s, steps=4, eval_every=2,
                                      task_options={"n_test": 128}))) for s in (0, 1)]
print("ready", flush=True)
deadline = time.time() + 300  # never wait for ever on a test that has gone
while not Path(sys.argv[1]).exists():
    assert time.time() < deadline, "no go from the test"
    time.sleep(0.01)
print(execute(runs, progress=False)[["run_dir", "test_accuracy", "wall_seconds", "config_hash"]].to_json())
"""


def test_two_processes_running_one_study_compute_each_run_once(tmp_path, reliability):
    # Guards the per-run-directory lock with wait_for_lock in execute(): without it both processes
    # train the same run at once (different wall_seconds, clobbered checkpoints).
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", STUDY_WORKER, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert read_line(p.stdout).strip() == "ready"
    go.write_text("")  # start both at once
    outs = [p.communicate(timeout=LONG_WAIT) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    a, b = (json.loads(o) for o, _ in outs)
    assert a == b  # same numbers and the same wall_seconds: each run was computed once, then reused
    runs = sorted((Path(os.environ["FPT_RESULTS_DIR"]) / "smoke" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert _leftovers(run) == [] and (run / "result.json").exists()
    reliability.fault("two processes running one study at once", kind="concurrent processes")


TABLE_WORKER = r"""
import sys, time
from pathlib import Path
import pandas as pd
import fptlib.study.render.markdown as r
out, tag, hold = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if hold != "-":  # pause between the CSV and the Markdown file, as a slow disk would
    real = r.write_text_atomic
    def slow(path, text):
        real(path, text)
        if str(path).endswith(".csv"):
            Path(hold + ".holding").write_text("")
            deadline = time.time() + 300  # never wait for ever on a test that has gone
            while not Path(hold + ".release").exists():
                assert time.time() < deadline, "no release from the test"
                time.sleep(0.01)
    r.write_text_atomic = slow
summary = pd.DataFrame({"writer": [tag] * 50, "value": range(50)})
print("saving", flush=True)
r.save_table(summary, f"table written by {tag}\n", out, "table01_02")
"""


def test_two_processes_saving_one_table_leave_one_complete_pair(tmp_path, reliability):
    # Guards the table lock in save_table: without it writer B's CSV and Markdown land while writer A
    # is between its two files, and A's Markdown then pairs with B's CSV.
    out, hold = tmp_path / "tables", str(tmp_path / "a")
    a = subprocess.Popen([sys.executable, "-c", TABLE_WORKER, str(out), "A", hold], stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not Path(hold + ".holding").exists():
        assert a.poll() is None and time.time() < deadline
        time.sleep(0.02)
    b = subprocess.Popen([sys.executable, "-c", TABLE_WORKER, str(out), "B", "-"], stdout=subprocess.PIPE,
                         text=True)
    assert read_line(b.stdout).strip() == "saving"
    time.sleep(1.0)  # B would be done by now if nothing held it back
    Path(hold + ".release").write_text("")
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    csv = pd.read_csv(out / "table01_02.csv")
    md = (out / "table01_02.md").read_text()
    assert len(csv) == 50 and set(csv.writer) == {"B"} and md == "table written by B\n"
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    reliability.fault("two processes saving one table at once", kind="concurrent processes")


def test_run_ids_differ_whenever_the_config_differs():
    # Guards the config hash in run ids: two processes with different configs never share a directory.
    base = resolve(RunConfig(**CFG))
    changed = {"backbone": "lstm", "init": "random", "train": ("output",), "scale": "cpu", "seed": 1,
               "steps": 7, "batch_size": 3, "grad_accum": 2, "lr": 1e-4, "clip_norm": 0.5, "eval_every": 3,
               "patience": 2, "eval_batch_size": 8, "train_eval_examples": 9, "precision": "bf16",
               "n_layers": 1, "attn_implementation": "eager", "orth_gain": 1.0, "input_dropout": 0.0,
               "lstm_width": 8, "lstm_layers": 2, "lstm_residual": True, "lstm_positions": 4,
               "attention_dropout": 0.0, "cache_features": True, "save_backbone": True, "tf32": True,
               "bit_source_steps": 5, "keep": ("attention",), "pretrain_steps": 5, "objective": "masked",
               "task_options": {**base.task_options, "n_val": 32}, "task": "bit-memory"}
    assert set(changed) == {f.name for f in fields(RunConfig)}
    ids = {base.run_id()} | {replace(base, **{k: v}).run_id() for k, v in changed.items()}
    assert len(ids) == len(changed) + 1


# ---- integrity: provenance in every result, no silent mixing in a table ------------------------

def test_every_result_records_config_hash_data_hash_and_versions(reference):
    # Guards the provenance fields the table check relies on.
    res = reference["result"]
    assert res["config_hash"] == resolve(RunConfig(**CFG)).hash()
    assert len(res["data_hash"]) == 16
    assert {"fptlib", "numerics_version", "torch", "transformers"} <= set(res["versions"])
    assert res["versions"]["numerics_version"] == res["numerics_version"] == NUMERICS_VERSION


def _frame(versions=None, data_hashes=None, task_options=None):
    v = {"fptlib": "0.1.0", "numerics_version": 1, "torch": "2.13.0", "transformers": "5.24.0"}
    rows = []
    for i, (row, seed) in enumerate([(r, s) for r in ("FPT", "Random", "LSTM") for s in (0, 1)]):
        rows.append({"row": row, "task": "bit-xor", "seed": seed, "backbone": "minilm", "steps": 20,
                     "scale": "smoke", "test_accuracy": 0.5 + i / 100, "test_masked_accuracy": None,
                     "versions": {**v, **((versions or {}).get(i, {}))},
                     "data_hash": (data_hashes or {}).get(i, "d0"),
                     "task_options": (task_options or {}).get(i, {"n_val": 64})})
    return pd.DataFrame(rows)


def test_a_clean_table_carries_no_warning():
    # The clean case of the provenance check: one code and data version, no label, no warning.
    study = Tables1And2(scale="smoke", seeds=[0, 1], tasks=["bit-xor"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = study.summary(_frame())
    assert (s.provenance == "").all()
    assert "Warning" not in study.markdown(s)
    # results of other task options are other data, not a mix
    assert (summarise(_frame(data_hashes={5: "d1"}, task_options={5: {"n_val": 32}})).provenance == "").all()


def test_mixed_code_versions_are_labelled_loudly_or_refused(reliability):
    # Guards the provenance check of summarise: without it a table silently averages runs of
    # different code (here one run under another transformers, one under another numerics version).
    study = Tables1And2(scale="smoke", seeds=[0, 1], tasks=["bit-xor"], progress=False)
    runs = _frame(versions={1: {"transformers": "5.0.0"}, 4: {"numerics_version": 2}})
    with pytest.warns(RuntimeWarning, match="mixed code versions"):
        s = study.summary(runs)
    assert s.provenance.str.contains("transformers 5.0.0 \\(1 run\\), 5.24.0 \\(5 runs\\)").all()
    assert s.provenance.str.contains("numerics_version 1 \\(5 runs\\), 2 \\(1 run\\)").all()
    md = study.markdown(s)
    assert "**Warning: this table mixes results that are not comparable.**" in md
    assert md.index("Warning") < md.index("| FPT |")  # above the numbers, not in a footnote
    with pytest.raises(MixedResults, match="refusing to build one table from mixed code versions"):
        study.summary(runs, allow_mixed=False)
    reliability.bad_input("mixed code versions", kind="mixed results")


def test_mixed_data_versions_are_labelled_for_their_task(reliability):
    # Guards the data side of the check: runs of one task and options on different data.
    runs = pd.concat([_frame(data_hashes={2: "d1"}), _frame().assign(task="mnist")], ignore_index=True)
    with pytest.warns(RuntimeWarning, match="mixed data versions for bit-xor"):
        s = summarise(runs)
    assert s[s.task == "bit-xor"].provenance.str.contains("data_hash d0 \\(5 runs\\), d1 \\(1 run\\)").all()
    assert (s[s.task == "mnist"].provenance == "").all()
    md = markdown_table(s, rows=["FPT", "Random", "LSTM"], tasks=["bit-xor", "mnist"],
                        metric_titles={"test_accuracy": ""}, caption="c")
    assert "- mixed data versions for bit-xor" in md
    with pytest.raises(MixedResults):
        summarise(runs, allow_mixed=False)
    reliability.bad_input("mixed data versions", kind="mixed results")


def test_results_read_back_from_disk_are_checked_too(tmp_path, reference, reliability):
    # Guards the path notebooks use to rebuild a table from result files (load_runs): the versions
    # recorded in result.json reach the check.
    dirs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        d.mkdir()
        res = dict(reference["result"], seed=i)
        if i:
            res["versions"] = {**res["versions"], "torch": "1.0.0"}
        (d / "result.json").write_text(json.dumps(res))
        dirs.append(str(d))
    runs = load_runs(dirs, ["FPT", "FPT"])
    with pytest.raises(MixedResults, match="torch 1.0.0 \\(1 run\\)"):
        summarise(runs, allow_mixed=False)
    assert (summarise(load_runs(dirs[:1], ["FPT"]), allow_mixed=False).provenance == "").all()
    reliability.bad_input("result.json of another torch", kind="mixed results")
