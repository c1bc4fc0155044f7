"""`fpt plan`: every run of a scale's notebooks, deduplicated as execution does, with its shape and,
calibrated, its cost; before anything trains."""
from __future__ import annotations

import pandas as pd
import pytest
from conftest import SHORT_WAIT

from fptlib.config import RunConfig, resolve
from fptlib.data import TASKS, make_task, task_class
from fptlib.study import plan as study_plan
from fptlib.study.catalogue import NOTEBOOKS


@pytest.fixture(scope="module")
def paper_plan():
    return study_plan.plan("paper")


def test_the_paper_plan_counts_every_run_once(paper_plan):
    assert paper_plan.run_id.is_unique
    assert len(paper_plan) == 436 and int(paper_plan.steps.sum()) == 16_040_000
    # of which notebook 15's: 8 arms x 4 tasks x (3 rates at seed 0 + 2 seeds), and a self-pretraining source
    # run per task, less the runs earlier notebooks compute (Language and Random at 1e-3 are Tables 1-2's, ...)
    sources = paper_plan[paper_plan.notebook == "15"]
    assert len(sources) == 120 and int(sources.steps.sum()) == 4_100_000
    assert len(sources[sources.row == "self-pretraining source"]) == 4
    # of which notebook 01c's offline tasks beyond the paper: 3 rows x 3 seeds x 2 tasks x 40,000 steps
    beyond = paper_plan[paper_plan.notebook == "01c"]
    assert len(beyond) == 18 and int(beyond.steps.sum()) == 720_000
    # 03 reuses 01; at the paper scale 01a's converged rows are 01's and 01b's runs (that scale stops by patience
    # already), counted under 01a, the first notebook in the catalogue to compute them
    assert set(paper_plan.notebook) == {nb.key for nb in NOTEBOOKS if nb.studies} - {"03", "01", "01b"}
    assert set(paper_plan.task) == set(TASKS)  # every dataset, present or not
    bits = paper_plan[paper_plan.init == "bit"]
    assert len(paper_plan[paper_plan.row == "Bit Memory source"]) == len(set(bits.seed))
    assert {"gpt2", "gpt2-medium", "gpt2-large", "bert-base-uncased", "t5-base", "allenai/longformer-base-4096",
            "vit-base", "lstm"} <= set(paper_plan.backbone)


def test_a_runs_shape_is_its_tasks(paper_plan):
    lra = paper_plan[(paper_plan.task == "cifar10-lra") & (paper_plan.backbone == "gpt2")].iloc[0]
    assert (lra.tokens, lra.d_in, lra.batch_size) == (1024, 1, 2)
    listops = paper_plan[paper_plan.task == "listops"]
    assert set(listops[listops.backbone != "bert-base-uncased"].tokens) == {1024}
    assert set(listops[listops.backbone == "bert-base-uncased"].tokens) == {512}  # cropped to BERT's positions


@pytest.mark.parametrize("task", ["mnist", "cifar10", "cifar10-lra", "fashion-mnist"])
def test_a_validation_pass_costs_less_than_the_training_before_it(task):
    """At the paper scale a validation pass scores n_val held-out training images every eval_every steps;
    those steps cost at least two forward passes (forward, backward through the frozen blocks) of each
    example they train on. CIFAR-10 LRA at 5,000 would score more than it trains (batch 2): it validates on 1,000."""
    cfg = resolve(RunConfig(task=task, scale="paper"))
    n_val = cfg.task_options.get("n_val", task_class(task).n_val)
    assert n_val < 2 * cfg.eval_every * cfg.batch_size * cfg.grad_accum


@pytest.mark.parametrize("task", ["bit-xor", "bit-memory", "mnist", "listops"])
def test_planned_shape_is_the_shape_the_task_has(task):
    cfg = resolve(RunConfig(task=task, scale="smoke"))
    t = make_task(task, **cfg.task_options)
    assert tuple(task_class(task).planned_shape(cfg.task_options)) == (
        t.seq_len, t.d_in, t.input_kind, t.n_out_tokens, t.out_dim, t.n_classes)


def test_planned_shape_of_the_dataset_tasks_matches_their_fixtures():
    from test_cifar import write_fixture as cifar_fixture
    from test_homology import write_fixture as homology_fixture
    cifar_fixture()
    homology_fixture()
    for task, opts in (("cifar10", {"n_val": 20}), ("cifar10-lra", {"n_val": 20}), ("homology", {"max_len": 64})):
        t = make_task(task, **opts)
        assert tuple(task_class(task).planned_shape(opts)) == (
            t.seq_len, t.d_in, t.input_kind, t.n_out_tokens, t.out_dim, t.n_classes), task


def test_calibration_times_each_shape_and_multiplies_by_the_budget():
    runs = study_plan.plan("smoke", only=["01"])
    cal = study_plan.calibrate(runs, n_steps=1, progress=False)
    assert (cal.step_seconds > 0).all()
    assert (cal.seconds == cal.step_seconds * cal.steps).all()
    same = cal.groupby(list(study_plan.SHAPE_KEYS)).step_seconds.nunique()
    assert (same == 1).all()
    t = study_plan.totals(cal)
    assert t.iloc[-1].notebook == "all" and t.iloc[-1].runs == len(cal)
    assert "hours of training" in study_plan.markdown(cal, "smoke")


def test_fpt_plan_writes_its_tables(fpt_cmd, tmp_path, monkeypatch):
    import subprocess
    r = subprocess.run(fpt_cmd + ["plan", "--scale", "cpu", "--only", "05"], capture_output=True, text=True,
                       timeout=SHORT_WAIT)
    assert r.returncode == 0, r.stderr[-2000:]
    from fptlib.paths import results_dir
    csv = pd.read_csv(results_dir("cpu") / "plan" / "plan.csv", dtype={"notebook": str})
    assert set(csv.notebook) == {"05"} and len(csv) == 8  # 2 tasks x 5 rows; "Frozen random transformer" is 01's Random
    assert "| all |" in (results_dir("cpu") / "plan" / "plan.md").read_text()


def test_a_run_that_stops_by_patience_is_expected_at_its_tasks_converged_median():
    # The cap only bounds a converging run: its expectation is the steps this scale's runs of its task took.
    import json

    from fptlib.paths import results_dir
    for i, (task, steps, stopped) in enumerate([("mnist", 4000, "converged"), ("mnist", 6000, "converged"),
                                                 ("mnist", 900, "budget")]):
        d = results_dir("cpu") / "runs" / f"run{i}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"task": task, "steps": steps, "stopped": stopped}))
    runs = study_plan.plan("cpu", only=["01a"])
    runs = study_plan.expected_steps(runs, study_plan.converged_steps("cpu"))
    mnist = runs[runs.task == "mnist"]
    assert set(mnist.expected_steps) == {5000} and set(mnist.steps) == {20000}
    listops = runs[runs.task == "listops"]
    assert (listops.expected_steps == listops.steps).all()  # none of its runs has converged here: the cap
    assert runs.attrs["converged_from"] == {"mnist": 2}
    md = study_plan.markdown(runs, "cpu")
    assert "expected_steps" in md and "(mnist 2 runs)" in md
