"""Precision and device settings: fp32 is the default everywhere; bf16 autocast runs on CPU too; TF32
is off unless asked and leaves a config's identity alone when off."""
from __future__ import annotations

import math

from fptlib import RunConfig, resolve, train
from fptlib.config import PRESETS


def test_fp32_is_the_default_at_every_scale():
    for scale in PRESETS:
        assert resolve(RunConfig(task="mnist", scale=scale)).precision == "fp32"


def test_bf16_trains_on_cpu(tmp_path):
    fp32 = train(resolve(RunConfig(task="bit-xor", scale="smoke")), tmp_path / "fp32", progress=False)
    bf16 = train(resolve(RunConfig(task="bit-xor", scale="smoke", precision="bf16")), tmp_path / "bf16",
                 progress=False)
    assert bf16["config"]["precision"] == "bf16" and bf16["frozen_unchanged"]
    assert math.isfinite(bf16["test"]["loss"]) and bf16["test"]["loss"] != fp32["test"]["loss"]


def test_tf32_off_keeps_the_config_identity():
    a = RunConfig(task="mnist")
    assert a.hash() == RunConfig.from_dict({k: v for k, v in a.to_dict().items() if k != "tf32"}).hash()
    assert RunConfig(task="mnist", tf32=True).hash() != a.hash()


# ---- precision auto: bf16 where it is native -----------------------------------------------------------
def _cpu_with(monkeypatch, flags):
    from fptlib import hardware
    monkeypatch.setattr(hardware, "cpu", lambda: ("a test CPU", frozenset(flags)))


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    for flags, want in ((["avx2", "avx512f"], "fp32"), (["avx512f", "avx512_bf16"], "bf16"),
                        (["amx_tile", "amx_bf16"], "bf16")):
        _cpu_with(monkeypatch, flags)
        cfg = resolve(RunConfig(task="mnist", scale="cpu", precision="auto"))
        assert cfg.precision == want, flags
        # the concrete precision is the identity: an auto run is the same run as one asking for it
        assert cfg.run_id() == resolve(RunConfig(task="mnist", scale="cpu", precision=want)).run_id()


def test_a_precision_other_than_fp32_is_its_own_run_and_shows_in_its_name():
    fp32, bf16 = (resolve(RunConfig(task="mnist", scale="cpu", precision=p)) for p in ("fp32", "bf16"))
    assert fp32.hash() != bf16.hash() and "__bf16__" in bf16.run_id() and "fp32" not in fp32.run_id()
    # fp32 names are unchanged: notebook 01's committed FPT run on MNIST, seed 0, is still found under its name
    assert fp32.run_id() == "mnist__minilm__pretrained__input+output+layernorm+positions__s0__3467b0f83027"


def test_bf16_on_a_cpu_without_it_says_so(monkeypatch, tmp_path):
    import pytest
    _cpu_with(monkeypatch, ["avx2"])
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        train(resolve(RunConfig(task="bit-xor", scale="smoke", precision="bf16", steps=2)), tmp_path, progress=False)


def test_equivalence_decides_by_the_glance_noise_rule():
    import pandas as pd

    from fptlib.perf.equivalence import verdicts
    rows = [("fp32", "mnist", s, a) for s, a in enumerate((0.80, 0.82, 0.84))]
    rows += [("bf16", "mnist", s, a) for s, a in enumerate((0.81, 0.83, 0.85))]      # +1 point: level
    rows += [("fp32", "listops", s, a) for s, a in enumerate((0.30, 0.31, 0.32))]
    rows += [("bf16", "listops", s, a) for s, a in enumerate((0.40, 0.41, 0.42))]    # +10 points: decided
    df = pd.DataFrame(rows, columns=["row", "task", "seed", "test_accuracy"])
    out = {v["task"]: v for v in verdicts(df, {"mnist": (2.0, [3]), "listops": (2.0, [3])})}
    band = 2 * 2.0 * (2 / 3) ** 0.5
    assert out["mnist"]["band"] == out["listops"]["band"] == band
    assert out["mnist"]["verdict"].startswith("level") and abs(out["mnist"]["difference"] - 1.0) < 1e-9
    assert out["listops"]["verdict"] == "decided" and abs(out["listops"]["difference"] - 10.0) < 1e-9
    assert verdicts(df, {})[0]["verdict"] == "noise not measured"


def test_a_table_of_bf16_and_fp32_runs_says_so_and_can_be_refused():
    import pandas as pd
    import pytest

    from fptlib.study.results.tables import MixedResults, summarise
    runs = pd.DataFrame({"row": ["FPT"] * 4, "task": ["mnist"] * 4, "seed": [0, 1, 0, 1], "backbone": ["minilm"] * 4,
                         "steps": [600] * 4, "scale": ["cpu"] * 4, "test_accuracy": [0.8, 0.82, 0.81, 0.83],
                         "precision": ["fp32", "fp32", "bf16", "bf16"]})
    s = summarise(runs)
    assert s.provenance.str.contains("mixed precisions in one table: bf16 (2 runs), fp32 (2 runs)", regex=False).all()
    assert (summarise(runs[runs.precision == "bf16"]).provenance == "").all()
    with pytest.raises(MixedResults):
        summarise(runs, allow_mixed=False)
