"""Numbers guarded by golden runs: each golden run (tests/golden/runs.py) is rerun and must give the
metrics committed in tests/golden/golden.json."""
from __future__ import annotations

import json
import math

import pytest
from golden import runs as golden_runs

GOLDEN = json.loads(golden_runs.GOLDEN_FILE.read_text())
# Losses are sums of floats: another CPU instruction set (AVX2 vs AVX-512, another vendor) changes
# their last bits while every accuracy (a count of correct decisions) stays exact. On the machine
# kind that wrote the record everything must be exact.
SAME_MACHINE = {k: GOLDEN["machine"][k] for k in ("cpu_capability", "cpu_vendor")} == {
    k: golden_runs.machine()[k] for k in ("cpu_capability", "cpu_vendor")}
LOSS_RTOL = 0.0 if SAME_MACHINE else 1e-4


def differences(want, got, path="") -> list[str]:
    """Where got differs from want; a float under a loss key (or a curve's loss column) may differ
    by LOSS_RTOL, anything else must be equal."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [f"{path}: keys {sorted(set(want) ^ set(got))} differ"]
        return [d for k in want for d in differences(want[k], got[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} entries recorded, {len(got)} now"]
        if path.endswith(".curve") or ".curve[" in path:  # [step, train_loss, val_accuracy, val_loss]
            return [d for i, (w, g) in enumerate(zip(want, got))
                    for d in differences(dict(zip(("step", "train_loss", "val_accuracy", "val_loss"), w)),
                                         dict(zip(("step", "train_loss", "val_accuracy", "val_loss"), g)),
                                         f"{path}[{i}]")]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in differences(w, g, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, float) and "loss" in path.rsplit(".", 1)[-1]:
        return [] if math.isclose(want, got, rel_tol=LOSS_RTOL, abs_tol=0.0) else [f"{path}: {want!r} -> {got!r}"]
    return [] if want == got else [f"{path}: {want!r} -> {got!r}"]


def test_the_record_is_of_the_current_numerics_version():
    from fptlib.training import NUMERICS_VERSION
    assert GOLDEN["numerics_version"] == NUMERICS_VERSION, (
        f"NUMERICS_VERSION is {NUMERICS_VERSION} but tests/golden/golden.json records version "
        f"{GOLDEN['numerics_version']}: recompute the affected results and run `python tests/golden/runs.py --write`")


def test_every_golden_run_is_recorded():
    assert sorted(GOLDEN["runs"]) == sorted(golden_runs.NAMES)


@pytest.mark.parametrize("name", golden_runs.NAMES)
def test_golden_run_gives_its_recorded_numbers(name, tmp_path):
    from fptlib.training import NUMERICS_VERSION
    diffs = differences(GOLDEN["runs"][name], golden_runs.measure(name, tmp_path), name)
    assert not diffs, (
        f"golden run {name!r} no longer gives its recorded numbers ({len(diffs)} differences, first: "
        f"{'; '.join(diffs[:4])}). If this change alters numbers on purpose, raise "
        f"fptlib.training.result.NUMERICS_VERSION (now {NUMERICS_VERSION}), recompute the committed results it "
        "affects (delete their run directories, `make reproduce`), then rewrite the record with "
        "`.venv/bin/python tests/golden/runs.py --write`. If it should not alter numbers, it is a bug.")


def test_a_changed_number_is_reported_with_what_to_do():
    want = GOLDEN["runs"]["mnist"]
    got = json.loads(json.dumps(want))
    got["test"]["accuracy"] += 0.01
    got["curve"][1][2] += 0.01
    diffs = differences(want, got, "mnist")
    assert sorted(d.split(":")[0] for d in diffs) == ["mnist.curve[1].val_accuracy", "mnist.test.accuracy"]
    got = json.loads(json.dumps(want))
    got["curve"][1][3] *= 1 + 1e-9  # a loss's last bits: exact on the recording machine kind, tolerated elsewhere
    assert bool(differences(want, got, "mnist")) == SAME_MACHINE
