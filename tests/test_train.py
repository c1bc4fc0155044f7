"""Training is seeded, frozen weights stay bit-identical, a killed run resumes to the same numbers."""
import json
import signal
import subprocess
import time

import pytest
from conftest import numbers

from fptlib import RunConfig, train
from fptlib.config import resolve
from fptlib.training import NonFiniteLoss, RunError, build, deviations


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = train(RunConfig("bit-memory", scale="smoke", seed=0), tmp_path / "a", progress=False)
    b = train(RunConfig("bit-memory", scale="smoke", seed=0), tmp_path / "b", progress=False)
    c = train(RunConfig("bit-memory", scale="smoke", seed=1), tmp_path / "c", progress=False)
    assert numbers(a) == numbers(b)
    assert (tmp_path / "a" / "metrics.jsonl").read_text().replace(" ", "").split("elapsed")[0] == \
        (tmp_path / "b" / "metrics.jsonl").read_text().replace(" ", "").split("elapsed")[0]
    assert a["test_accuracy"] != c["test_accuracy"] or a["test"]["loss"] != c["test"]["loss"]


def test_frozen_tensors_are_untouched_and_trainable_ones_move(tmp_path):
    cfg = resolve(RunConfig("mnist", scale="smoke"))
    before, _ = build(cfg)
    res = train(cfg, tmp_path / "r", progress=False)
    assert res["frozen_unchanged"] is True and res["frozen_tensors"] > 0
    # rebuild the trained model from the checkpoint-free result: compare via a second training run's model
    model, task = build(cfg)
    assert model.frozen_fingerprint() == before.frozen_fingerprint()


def test_result_has_the_promised_fields(tmp_path):
    res = train(RunConfig("bit-xor", scale="smoke"), tmp_path / "r", progress=False)
    for k in ("task", "backbone", "init", "trained_groups", "seed", "scale", "steps", "test_accuracy",
              "train_accuracy", "trainable_params", "trainable_params_by_group", "total_params",
              "frozen_unchanged", "wall_seconds", "versions", "config", "config_hash", "data_hash"):
        assert k in res, k
    assert res["test_examples"] == 1024  # the whole held-out split
    assert res["test"]["decisions"] == 1024 * 5
    assert 0 <= res["test_accuracy"] <= 1
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 10, 20]
    assert not (tmp_path / "r" / "checkpoint").exists()  # removed once the result is written


def test_bit_memory_reports_masked_accuracy(tmp_path):
    res = train(RunConfig("bit-memory", scale="smoke"), tmp_path / "r", progress=False)
    assert 0 <= res["test_masked_accuracy"] <= 1
    assert res["test_masked_accuracy"] < res["test_accuracy"]  # visible bits are easy


def test_killed_run_resumes_to_the_same_numbers(tmp_path, fpt_cmd):
    args = ["train", "bit-memory", "--scale", "smoke", "--steps", "60", "--eval-every", "5",
            "--no-progress", "--seed", "3"]
    ref = subprocess.run(fpt_cmd + args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(fpt_cmd + args + ["--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill after a few checkpoints, before the end
        hist = run / "metrics.jsonl"
        if hist.exists() and len(hist.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "result.json").exists(), "the run finished before it could be killed"
    again = subprocess.run(fpt_cmd + args + ["--out", str(run)], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # no silent restart over a run
    done = subprocess.run(fpt_cmd + args + ["--out", str(run), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a = json.loads((tmp_path / "ref" / "result.json").read_text())
    b = json.loads((run / "result.json").read_text())
    assert numbers(a) == numbers(b)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    train(RunConfig("bit-xor", scale="smoke", seed=0), tmp_path / "r", progress=False)
    with pytest.raises(RunError, match="another config"):
        train(RunConfig("bit-xor", scale="smoke", seed=1), tmp_path / "r", resume=True, progress=False)


def test_sequence_longer_than_the_backbone_is_refused():
    cfg = resolve(RunConfig("bit-memory", scale="smoke", task_options={"n_bits": 1000, "patch_size": 1}))
    with pytest.raises(RunError, match="6000 tokens but backbone minilm has 512 positions"):
        build(cfg)


def test_non_finite_loss_stops_with_a_diagnosis(tmp_path, monkeypatch):
    import fptlib.training.steps as tr
    real = tr.loss_fn
    calls = {"n": 0}

    def exploding(logits, batch, n_classes):
        calls["n"] += 1
        out = real(logits, batch, n_classes)
        return out * float("nan") if calls["n"] >= 7 else out
    monkeypatch.setattr(tr, "loss_fn", exploding)
    with pytest.raises(NonFiniteLoss, match="at step 7 .*last finite loss"):
        train(RunConfig("bit-xor", scale="smoke"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "result.json").exists()


def test_explicit_values_win_over_the_scale():
    cfg = resolve(RunConfig("mnist", scale="smoke", backbone="gpt2", steps=3, lr=5e-4))
    assert (cfg.backbone, cfg.n_layers, cfg.steps, cfg.lr) == ("gpt2", None, 3, 5e-4)
    assert resolve(RunConfig("mnist", scale="smoke")).n_layers == 2
    assert resolve(RunConfig("mnist", backbone="lstm")).lr == 3e-4  # paper: LSTMs at 3e-4
    assert any(d.startswith("backbone: minilm (paper scale: gpt2)")
               for d in deviations(resolve(RunConfig("mnist", scale="cpu"))))


@pytest.mark.slow
def test_bit_xor_cpu_scale_is_solved(tmp_path, fpt_cmd):
    """The issue's check: FPT on Bit XOR at the cpu scale reaches 100 % on all 1024 inputs."""
    out = subprocess.run(fpt_cmd + ["train", "bit-xor", "--backbone", "minilm", "--init", "pretrained",
                                    "--scale", "cpu", "--seed", "0", "--out", str(tmp_path / "x"),
                                    "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "x" / "result.json").read_text())
    assert res["test_accuracy"] == 1.0 and res["frozen_unchanged"] is True


def test_a_run_directory_in_use_is_refused(tmp_path):
    from fptlib.io import FileLock
    run = tmp_path / "r"
    run.mkdir()
    with FileLock(run / ".lock", wait=False):  # as if another process were training here
        with pytest.raises(RunError, match="being written by another process"):
            train(RunConfig("bit-xor", scale="smoke"), run, progress=False)
    assert train(RunConfig("bit-xor", scale="smoke"), run, progress=False)["steps"] == 20
