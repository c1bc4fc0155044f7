"""The execution layer's interface (fptlib.runs): one registry of backends, each checking its own options,
and the run directory's one owner (training.RunDir)."""
from __future__ import annotations

import pytest

from fptlib import runs
from fptlib.config import RunConfig, resolve
from fptlib.training import RunDir, RunError, train


def test_every_backend_is_a_module_with_execute_and_its_options():
    for name in runs.EXECUTORS:
        module = runs.backend(name)
        assert callable(module.execute) and isinstance(module.OPTIONS, tuple)
    assert runs.backend("local").OPTIONS == ("workers",)
    assert set(runs.backend("slurm").OPTIONS) == {"slurm", "wait"}


def test_an_unknown_executor_or_option_is_refused_by_name(reliability):
    with pytest.raises(ValueError, match="unknown executor 'ssh'; choose one of local, slurm"):
        runs.execute([], executor="ssh")
    with pytest.raises(ValueError, match="executor 'local' takes no option wait; its options: workers"):
        runs.execute([], executor="local", wait=False)
    reliability.bad_input("executor ssh; local with wait=", kind="parameter")


def test_options_for_keeps_what_the_backend_takes():
    given = {"slurm": {"partition": "p"}, "wait": False, "workers": 2}
    assert runs.options_for("local", **given) == {"workers": 2}
    assert runs.options_for("slurm", **given) == {"slurm": {"partition": "p"}, "wait": False}


def test_local_execute_of_nothing_has_the_columns():
    df = runs.execute([], progress=False)
    assert tuple(df.columns) == runs.RUN_COLUMNS and len(df) == 0


def test_the_run_directory_says_what_it_holds_before_and_after_training(tmp_path):
    cfg = resolve(RunConfig("bit-xor", scale="smoke", steps=2, eval_every=1))
    d = RunDir(tmp_path / "r")
    assert not d.finished and not d.has_checkpoint
    train(cfg, d.path, progress=False)
    assert d.finished and not d.has_checkpoint  # the checkpoint goes once the result is written
    assert d.config_file.is_file() and d.metrics_file.is_file()
    assert d.read_result(cfg.hash())["config_hash"] == cfg.hash() == d.read_result()["config_hash"]
    with pytest.raises(RunError, match="belongs to config"):
        d.read_result("0" * 12)
    assert RunDir.of(cfg).path.name == cfg.run_id()
