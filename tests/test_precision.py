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
