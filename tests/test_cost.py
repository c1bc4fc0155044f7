"""The cost model on paper (fptlib.models.cost) and `fpt plan --gpu` (fptlib.study.pricing): FLOPs and
peak memory of a run checked against what this machine measures of a real training step, the GPU
catalogue, runs per GPU from the memory estimate, and the priced plan's table."""
from __future__ import annotations

import pytest

from fptlib.cli import main
from fptlib.config import RunConfig, resolve
from fptlib.models import cost
from fptlib.runs import PlannedRun, local, sizing
from fptlib.study import plan as plan_mod

# Tolerances of the model against the measurement (docs/performance.md, "The paper grid on a GPU, on paper").
FLOP_TOLERANCE = 0.10    # measured: 0.0 % for GPT-2, BERT, T5, ViT; +0.5 % LSTM; -3.5 % Longformer
MEMORY_TOLERANCE = 0.25  # measured: -1 % to +20 %

# Small real steps (random init, a block or two) whose tensors are large enough to measure: the plain
# attention kernel (attention dropout 0.1), weight gradients (full), the LSTM, a forward-only step (output).
CHECKED = {
    "minilm, FPT groups": dict(task="listops", backbone="minilm", n_layers=1, batch_size=8,
                               task_options={"min_len": 100, "max_len": 128}),
    "gpt2, full finetuning": dict(task="bit-memory", backbone="gpt2", init="random", n_layers=1, batch_size=4,
                                  train=("full",)),
    "lstm, full": dict(task="listops", backbone="lstm", init="random", lstm_width=128, batch_size=8, train=("full",),
                       task_options={"min_len": 16, "max_len": 32}),
    "t5-base, output only": dict(task="cifar10", backbone="t5-base", init="random", n_layers=1, batch_size=16,
                                 train=("output",)),
}


@pytest.fixture(scope="module")
def measured():
    return {name: plan_mod.measure_step(resolve(RunConfig(scale="smoke", **c))) for name, c in CHECKED.items()}


@pytest.mark.parametrize("name", list(CHECKED))
def test_the_flop_model_is_what_the_profiler_counts(measured, name):
    m = measured[name]
    assert m["flops_measured"] > 0
    assert abs(m["flops_model"] / m["flops_measured"] - 1) <= FLOP_TOLERANCE, m


@pytest.mark.parametrize("name", list(CHECKED))
def test_the_memory_model_is_the_measured_peak_of_a_step(measured, name):
    m = measured[name]
    assert m["working_measured"] > 2**20  # at least a MiB: a measurement, not noise
    assert abs(m["working_model"] / m["working_measured"] - 1) <= MEMORY_TOLERANCE, m


def _run(**kw) -> RunConfig:
    return resolve(RunConfig(scale="paper", **{"task": "listops", **kw}))


def test_trained_groups_grad_accum_and_truncation_change_the_flops_as_they_should():
    fpt, full, out = _run(), _run(train=("full",)), _run(train=("output",))
    d_fpt, d_full, s = sizing.run_dims(fpt), sizing.run_dims(full), sizing.step_shape(fpt)
    # full finetuning adds one weight-gradient product per trained block matrix: 2 FLOPs a weight a token
    extra = cost.step_flops(d_full, s)["step"] - cost.step_flops(d_fpt, s)["step"]
    assert extra == 2 * s.batch * s.tokens * d_full.block_matrix == 2 * s.batch * s.tokens * d_full.block_matrix_trained
    # only the output layer trains: no backward pass through the blocks, just the head's weight gradient
    f_out = cost.step_flops(sizing.run_dims(out), s)
    assert f_out["backward"] == 2 * s.batch * s.n_out_tokens * d_fpt.width * s.out_dim
    assert sizing.run_flops(_run(grad_accum=4))["train"] == 4 * sizing.run_flops(fpt)["train"]
    half = sizing.run_dims(_run(n_layers=6))
    assert half.layers == 6 and 2 * half.block_matrix == d_fpt.block_matrix


def test_a_feature_cache_costs_one_forward_pass_over_the_data_and_tiny_steps():
    cached = _run(task="mnist", train=("output",), cache_features=True)
    sizes = sizing.split_sizes(cached)
    assert (sizes["train"], sizes["val"], sizes["test"]) == (55_000, 5_000, 10_000)
    d, s = sizing.run_dims(cached), sizing.step_shape(cached)
    one = cost.forward_flops(d, cost.StepShape(1, s.tokens, s.d_in, s.input_kind, s.n_out_tokens, s.out_dim))
    f = sizing.run_flops(cached)
    assert f["eval"] == one * 70_000
    assert f["train"] == cached.steps * 4 * s.batch * d.width * s.out_dim


def test_the_precision_picks_the_peak_and_hours_are_flops_over_it():
    h100 = cost.gpu("H100")
    fp32, bf16 = sizing.run_cost(_run(), h100), sizing.run_cost(_run(precision="bf16"), h100)
    assert fp32["hours_at_peak"] == pytest.approx(fp32["pflop"] * 1e15 / 67e12 / 3600)
    assert fp32["hours_at_utilisation"] == pytest.approx(fp32["hours_at_peak"] / sizing.UTILISATION)
    assert fp32["hours_at_peak"] / bf16["hours_at_peak"] == pytest.approx(989.5 / 67, rel=1e-3)
    assert sizing.run_cost(_run(tf32=True), h100)["hours_at_peak"] == pytest.approx(
        fp32["hours_at_peak"] * 67 / 494.5)


def test_an_unknown_gpu_is_refused_with_the_known_names(capsys):
    with pytest.raises(ValueError, match="unknown GPU 'v100'; known: h100, h100-pcie, h200, a100, a100-40gb"):
        cost.gpu("v100")
    assert main(["plan", "--scale", "smoke", "--only", "05", "--gpu", "v100"]) == 2
    assert "known: h100" in capsys.readouterr().err


def test_runs_per_gpu_is_what_fits_the_memory():
    h100 = cost.GPUS["h100"]
    usable = 80e9 * cost.USABLE_FRACTION
    ten = 10 * 2**30
    assert cost.runs_per_gpu(ten, h100) == int(usable // (ten + cost.CUDA_CONTEXT_BYTES)) == 6
    assert cost.runs_per_gpu(2**20, h100) == cost.MAX_RUNS_PER_GPU
    assert cost.runs_per_gpu(100 * 2**30, h100) == 0
    assert cost.runs_per_gpu(ten, cost.GPUS["a100-40gb"]) == 3


@pytest.mark.parametrize("device, key", [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H100 PCIe", "h100-pcie"),
                                         ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
                                         ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA H100 NVL", None),
                                         ("Tesla V100-SXM2-16GB", None)])
def test_a_device_name_finds_its_catalogue_entry(device, key):
    assert cost.gpu_for_device(device) == key


def test_the_default_runs_per_gpu_comes_from_the_largest_run(monkeypatch):
    runs = [_run(), _run(task="bit-xor"), _run(backbone="allenai/longformer-base-4096", task="cifar10")]
    peak = max(sizing.run_memory(c)["peak"] for c in runs)
    n, why = sizing.default_runs_per_gpu(runs, "NVIDIA A100-SXM4-40GB")
    assert n == cost.runs_per_gpu(peak, cost.GPUS["a100-40gb"]) < cost.MAX_RUNS_PER_GPU and "A100 SXM4 40GB" in why
    assert sizing.default_runs_per_gpu(runs, "NVIDIA GeForce RTX 2080 Ti")[0] == 1
    # the executor asks for it on a GPU machine when nobody set FPT_RUNS_PER_GPU, and obeys it when set
    todo = [PlannedRun("r", c) for c in runs]
    monkeypatch.delenv(local.RUNS_PER_GPU_ENV, raising=False)
    monkeypatch.setattr(sizing, "detected_gpu", lambda: "NVIDIA A100-SXM4-40GB")
    assert local.runs_per_gpu(todo) == n
    monkeypatch.setattr(sizing, "detected_gpu", lambda: "Tesla V100-SXM2-16GB")
    assert local.runs_per_gpu(todo) == 1
    monkeypatch.setenv(local.RUNS_PER_GPU_ENV, "5")
    assert local.runs_per_gpu(todo) == 5


def test_fpt_plan_gpu_prints_every_notebook_and_the_total(capsys):
    import pandas as pd

    from fptlib.paths import results_dir
    assert main(["plan", "--scale", "paper", "--gpu", "h100"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    notebooks = set(plan_mod.plan("paper").notebook)
    assert notebooks | {"all", "notebook"} == set(rows)
    assert "runs per GPU" in rows["notebook"] and "GPU-hours at peak" in rows["notebook"]
    assert "a bound from the peak" in out and "H100 SXM5 80GB" in out
    csv = pd.read_csv(results_dir("paper") / "plan" / "plan.csv", dtype={"notebook": str})
    total = float(rows["all"].split("|")[5])  # PFLOP
    assert total == pytest.approx(csv.pflop.sum(), abs=0.1) and (csv.runs_per_gpu >= 1).all()
