"""Training is seeded, frozen weights stay bit-identical, a killed run resumes to the same numbers."""
import json
import signal
import subprocess
import time

import pytest
import torch
from conftest import LONG_WAIT, SHORT_WAIT, curve, numbers

from fptlib import RunConfig, train
from fptlib.config import resolve
from fptlib.training import NonFiniteLoss, RunError, build, deviations
from fptlib.training.checkpoint import find_checkpoint


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = train(RunConfig("bit-memory", scale="smoke", seed=0), tmp_path / "a", progress=False)
    b = train(RunConfig("bit-memory", scale="smoke", seed=0), tmp_path / "b", progress=False)
    c = train(RunConfig("bit-memory", scale="smoke", seed=1), tmp_path / "c", progress=False)
    assert numbers(a) == numbers(b)
    # the whole learning curve: every point's step, training loss, validation accuracies and loss
    ca, cb = curve(tmp_path / "a"), curve(tmp_path / "b")
    assert [p["step"] for p in ca] == [0, 5, 10]
    assert {"train_loss", "val_accuracy", "val_loss", "val_masked_accuracy"} <= set(ca[-1])
    assert ca == cb
    assert a["test_accuracy"] != c["test_accuracy"] or a["test"]["loss"] != c["test"]["loss"]
    assert curve(tmp_path / "c") != ca


def test_frozen_tensors_are_untouched_and_trainable_ones_move(tmp_path):
    """The trained model itself, read after training, against a fresh build of the same config: every
    frozen tensor (parameters and buffers) bit-identical, every tensor of every trained group changed."""
    from fptlib.training.loop import finish, run_steps, start
    cfg = resolve(RunConfig("mnist", scale="smoke"))
    fresh, _ = build(cfg)
    s = start(cfg, tmp_path / "r")  # what train() runs, in this process so the trained model is at hand
    run_steps(s)
    res = finish(s)
    trained = s.acc.unwrap_model(s.model)
    owner = trained.groups()
    was, now = fresh.state_dict(), trained.state_dict()
    assert set(was) == set(now)
    moving = {n for n, p in trained.named_parameters() if p.requires_grad}
    frozen = sorted(set(now) - moving)
    assert {owner[n] for n in frozen if n in owner} == {"attention", "feedforward", "token_type", "unused"}
    changed = [n for n in frozen if not torch.equal(was[n], now[n])]
    assert not changed, f"frozen tensors changed by training: {changed[:5]}"
    assert {owner[n] for n in moving} == set(cfg.train)  # the configured groups, and only they, trained
    still = [n for n in moving if torch.equal(was[n], now[n])]
    assert not still, f"trainable tensors training left unchanged: {still[:5]}"
    assert res["frozen_unchanged"] is True
    assert res["frozen_tensors"] == sum(1 for _, p in trained.named_parameters() if not p.requires_grad)


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


def test_killed_run_resumes_to_the_same_numbers(tmp_path, fpt_cmd, reliability):
    args = ["train", "bit-memory", "--scale", "smoke", "--steps", "60", "--eval-every", "5",
            "--no-progress", "--seed", "3"]
    ref = subprocess.run(fpt_cmd + args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True,
                         timeout=LONG_WAIT)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(fpt_cmd + args + ["--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + LONG_WAIT
    while time.time() < deadline:  # kill after a few checkpoints, before the end
        hist = run / "metrics.jsonl"
        if hist.exists() and len(hist.read_text().splitlines()) >= 4:
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=SHORT_WAIT) == -signal.SIGKILL
    assert not (run / "result.json").exists(), "the run finished before it could be killed"
    ckpt, _ = find_checkpoint(run)
    assert ckpt is not None, "no sealed checkpoint: the kill landed before training had begun"
    assert 10 <= json.loads((ckpt / "trainer_state.json").read_text())["step"] < 60  # mid-training
    again = subprocess.run(fpt_cmd + args + ["--out", str(run)], capture_output=True, text=True, timeout=SHORT_WAIT)
    assert again.returncode == 2 and "--resume" in again.stderr  # no silent restart over a run
    done = subprocess.run(fpt_cmd + args + ["--out", str(run), "--resume"], capture_output=True, text=True,
                          timeout=LONG_WAIT)
    assert done.returncode == 0, done.stderr
    a = json.loads((tmp_path / "ref" / "result.json").read_text())
    b = json.loads((run / "result.json").read_text())
    assert numbers(a) == numbers(b)
    assert curve(run) == curve(tmp_path / "ref") and len(curve(run)) == 13
    reliability.fault("SIGKILL of fpt train after its third checkpoint", kind="SIGKILL")
    reliability.bad_input("fpt train over an unfinished run without --resume", kind="command line")


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, reliability):
    train(RunConfig("bit-xor", scale="smoke", seed=0), tmp_path / "r", progress=False)
    with pytest.raises(RunError, match="another config"):
        train(RunConfig("bit-xor", scale="smoke", seed=1), tmp_path / "r", resume=True, progress=False)
    reliability.bad_input("--resume of a run directory of another config", kind="wrong run directory")


def test_sequence_longer_than_the_backbone_is_refused(reliability):
    cfg = resolve(RunConfig("bit-memory", scale="smoke", task_options={"n_bits": 1000, "patch_size": 1}))
    with pytest.raises(RunError, match="6000 tokens but backbone minilm has 512 positions"):
        build(cfg)
    reliability.bad_input("6000 tokens for a 512-position backbone", kind="parameter")


def test_non_finite_loss_stops_with_a_diagnosis(tmp_path, monkeypatch, reliability):
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
    reliability.fault("NaN loss at step 7", kind="non-finite loss")


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
                                    "--no-progress"], capture_output=True, text=True, timeout=LONG_WAIT)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "x" / "result.json").read_text())
    assert res["test_accuracy"] == 1.0 and res["frozen_unchanged"] is True


def test_a_run_directory_in_use_is_refused(tmp_path, reliability):
    from fptlib.io import FileLock
    run = tmp_path / "r"
    run.mkdir()
    with FileLock(run / ".lock", wait=False):  # as if another process were training here
        with pytest.raises(RunError, match="being written by another process"):
            train(RunConfig("bit-xor", scale="smoke"), run, progress=False)
    assert train(RunConfig("bit-xor", scale="smoke"), run, progress=False)["steps"] == 20
    reliability.bad_input("a run directory locked by another process", kind="wrong run directory")
