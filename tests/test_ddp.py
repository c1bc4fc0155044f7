"""One run spread over two processes (data parallel, gloo on CPU), launched as a user would:
`torchrun --standalone --nproc_per_node 2 -m fptlib.cli train ...`. Each process trains its half of
every batch; the main process alone writes the run directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TIME_SCALE, curve

from fptlib.training import RunError, result_without_timing
from fptlib.training.steps import check_shares, leave_launch, share

SMOKE = ["bit-xor", "--scale", "smoke", "--steps", "6", "--batch-size", "8", "--eval-every", "3", "--no-progress"]
TIMEOUT = 180 * TIME_SCALE


def fpt(args: list[str], processes: int, fault: str | None = None) -> subprocess.CompletedProcess:
    """`fpt train ARGS` in one process, or spread over `processes` by torchrun."""
    env = {k: v for k, v in os.environ.items() if k not in ("FPT_FAULT", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    if fault:
        env["FPT_FAULT"] = fault
    launch = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return subprocess.run([*launch, "-m", "fptlib.cli", "train", *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_each_process_takes_a_contiguous_share_of_the_global_batch():
    batch = {"x": torch.arange(24.0).reshape(8, 3), "y": torch.arange(8)}
    parts = [share(batch, r, 4) for r in range(4)]
    assert all(len(p["y"]) == 2 for p in parts)
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert share(batch, 0, 1) is batch  # one process: the batch itself, untouched


def test_a_launched_process_leaves_its_process_group_before_exit(tmp_path):
    # A gloo group still alive at interpreter exit aborts the process now and then (SIGABRT, "terminate
    # called without an active exception"): `fpt train` leaves it as it returns.
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        leave_launch()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_batch_size_not_divisible_by_processes_is_refused(tmp_path, reliability):
    with pytest.raises(RunError, match="batch size 6 cannot be split evenly over 4 processes"):
        check_shares(6, 4)
    reliability.bad_input("batch size 6 over 4 processes", kind="parameter")
    check_shares(6, 1)
    out = tmp_path / "odd"
    r = fpt([*SMOKE, "--batch-size", "7", "--out", str(out)], processes=2)
    assert r.returncode != 0
    assert "batch size 7 cannot be split evenly over 2 processes" in r.stderr
    assert not (out / "config.json").exists()
    reliability.bad_input("--batch-size 7 over 2 processes", kind="command line")


@pytest.fixture
def dropout_free_backbone(tmp_path):
    """A tiny BERT without dropout (saved with save_pretrained): with --input-dropout 0 a run draws no
    random numbers, so one process and two take the very same steps up to float rounding."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=256, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    path = tmp_path / "bert-no-dropout"
    BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


@pytest.mark.slow
def test_two_processes_train_the_same_run_as_one(tmp_path, dropout_free_backbone):
    args = [*SMOKE, "--backbone", str(dropout_free_backbone), "--input-dropout", "0"]
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = fpt([*args, "--out", str(one)], processes=1)
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = fpt([*args, "--out", str(two)], processes=2)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count("run directory:") == 1  # one report, from the main process

    # Measured: losses agree to ~1e-7 relative (the all-reduce sums the two halves' gradients in
    # another order), accuracies exactly.
    c1, c2 = curve(one), curve(two)
    assert [r["step"] for r in c1] == [r["step"] for r in c2] == [0, 3, 6]
    for a, b in zip(c1, c2):
        assert a["val_accuracy"] == b["val_accuracy"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
        assert (a["train_loss"] is None and b["train_loss"] is None) or \
            b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)

    res1, res2 = (json.loads((d / "result.json").read_text()) for d in (one, two))
    assert res2["test_accuracy"] == res1["test_accuracy"]
    assert res2["num_processes"] == 2 and "num_processes" not in res1
    assert res2["frozen_unchanged"] is True
    assert sorted(p.name for p in two.iterdir()) == [".lock", "config.json", "metrics.jsonl", "result.json"]


@pytest.mark.slow
def test_two_process_run_killed_midway_resumes_to_the_same_result(tmp_path, reliability):
    """With dropout on (MiniLM): the checkpoint keeps each process's random state."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    r = fpt([*SMOKE, "--out", str(whole)], processes=2)
    assert r.returncode == 0, r.stderr[-3000:]

    r = fpt([*SMOKE, "--out", str(cut)], processes=2, fault="step:4")
    assert r.returncode != 0
    assert (cut / "checkpoint" / "trainer_state.json").exists() and not (cut / "result.json").exists()
    assert json.loads((cut / "checkpoint" / "trainer_state.json").read_text())["step"] == 3
    assert {p.name for p in (cut / "checkpoint").iterdir()} >= {"random_states_0.pkl", "random_states_1.pkl"}

    r = fpt([*SMOKE, "--out", str(cut), "--resume"], processes=1)
    assert r.returncode == 2 and "resume it with the same number of processes" in r.stderr

    r = fpt([*SMOKE, "--out", str(cut), "--resume"], processes=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert curve(cut) == curve(whole)
    a, b = (json.loads((d / "result.json").read_text()) for d in (whole, cut))
    assert result_without_timing(a) == result_without_timing(b)
    assert b["frozen_unchanged"] is True and not (cut / "checkpoint").exists()
    reliability.fault("SIGKILL of a two-process run at its 4th step", kind="SIGKILL")
    reliability.bad_input("resuming a two-process checkpoint in one process", kind="wrong run directory")
