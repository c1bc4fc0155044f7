"""Training to convergence (notebook 01a): the runs' settings, how they stop, Table 6 from them, and a run
stopped by patience resuming after a kill to the same stopping step and numbers."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fptlib.config import PRESETS, RunConfig, converge_fields, resolve
from fptlib.study import Converged, Tables1And2

TIMEOUT = 600  # seconds a training subprocess may take before the test fails with its name

# A smoke run that stops by patience well before its cap (checked below, so a change that lets it run to its
# cap turns the test red rather than quietly testing a budget run)
CFG = {"task": "bit-xor", "scale": "smoke", "seed": 3, "steps": 400, "eval_every": 2, "patience": 3,
       "precision": "bf16"}
WORKER = """
import json, sys, torch
torch.set_num_threads(1)
from fptlib import RunConfig, resolve, train
train(resolve(RunConfig.from_dict(json.loads(sys.argv[1]))), sys.argv[2], resume=True, progress=False)
"""


def _train(run_dir, fault=None):
    env = {k: v for k, v in __import__("os").environ.items() if k != "FPT_FAULT"}
    if fault:
        env["FPT_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", WORKER, json.dumps(CFG), str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def _curve(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_seconds"} for x in lines if x.strip()]


WALL_CLOCK = {"wall_seconds", "run_seconds_this_process", "train_step_seconds", "epoch_step_seconds", "epoch_steps"}


def test_a_run_stopped_by_patience_resumes_after_a_kill_to_the_same_stop_and_numbers(tmp_path):
    whole = _train(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    ref = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert ref["stopped"] == "converged" and ref["steps"] < CFG["steps"], (ref["stopped"], ref["steps"])
    assert ref["steps"] >= 3 * CFG["eval_every"], "too short to be killed after a checkpoint and before the stop"
    # killed in the step before the last evaluation: a checkpoint from an earlier evaluation is on disk
    kill_at = ref["steps"] - 1
    killed = _train(tmp_path / "cut", fault=f"step:{kill_at}")
    assert killed.returncode == -signal.SIGKILL, f"the kill did not land (exit {killed.returncode})"
    cut = tmp_path / "cut"
    assert not (cut / "result.json").exists() and any(cut.glob("checkpoint*")), sorted(p.name for p in cut.iterdir())
    assert len(_curve(cut)) < len(_curve(tmp_path / "whole")), "the kill landed after the run had finished"
    resumed = _train(cut)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = json.loads((cut / "result.json").read_text())
    keys = ("stopped", "steps", "best_val_step")
    assert [got[k] for k in keys] == [ref[k] for k in keys]
    def numbers(res):
        return {k: v for k, v in res.items() if k not in WALL_CLOCK}
    assert numbers(got) == numbers(ref)
    assert _curve(cut) == _curve(tmp_path / "whole")


def test_converged_rows_carry_the_scales_stopping_settings_in_their_identity():
    st = Converged(scale="cpu")
    assert st.tasks == ["bit-memory", "bit-xor", "listops", "mnist"] and st.seeds == [0, 1, 2]
    conv = PRESETS["cpu"]["converge"]
    for r in st.planned_runs():
        c, want = r.config, conv["tasks"][r.config.task]
        assert (c.steps, c.eval_every, c.patience, c.precision) == (want["steps"], want["eval_every"],
                                                                     conv["patience"], "bf16")
    # the equal-budget rows are other runs: same task, seed and arm, another identity
    budget = {(r.row, r.config.task, r.config.seed): r.config.run_id() for r in Tables1And2(scale="cpu").planned_runs()}
    for r in st.planned_runs():
        key = (r.row, r.config.task, r.config.seed)
        assert key not in budget or budget[key] != r.config.run_id()
    # the LSTM row keeps its own learning rate and every parameter trained
    lstm = [r.config for r in st.planned_runs() if r.row == "LSTM"]
    assert lstm and all(c.lr == 3e-4 and c.backbone == "lstm" for c in lstm)


def test_the_paper_scale_converges_by_its_own_rule_so_its_rows_are_notebook_01s():
    assert converge_fields("paper", "mnist") == {}
    a = {r.config.run_id() for r in Converged(scale="paper").planned_runs() if r.row != "LSTM"}
    b = {r.config.run_id() for r in Tables1And2(scale="paper").planned_runs()}
    assert a == b


def test_unknown_task_has_no_convergence_settings():
    with pytest.raises(ValueError, match="no convergence settings"):
        converge_fields("cpu", "no-such-task")


def _stops(rows):
    return pd.DataFrame(rows, columns=["row", "task", "seed", "stopped", "steps", "cap", "best_val_step"])


def test_the_stopping_note_names_every_run_that_reached_its_cap(monkeypatch):
    st = Converged(scale="cpu", tasks=["mnist"], seeds=[0, 1])
    monkeypatch.setattr(Converged, "stops", lambda self: _stops(
        [("FPT", "mnist", 0, "converged", 900, 20000, 500), ("Random", "mnist", 1, "budget", 20000, 20000, 19900)]))
    note = st.stopping_note()
    assert "1 of 2 runs stopped by patience" in note and "cap reached at 20,000 steps: Random on MNIST (seed 1)" in note
    monkeypatch.setattr(Converged, "stops", lambda self: _stops([("FPT", "mnist", 0, "converged", 900, 20000, 500)]))
    assert st.stopping_note().endswith("all 1 runs stopped by patience")
    assert "not improved for 20 evaluations" in st.stopping_note() and "MNIST 100/20,000" in st.stopping_note()


def test_table6_from_converged_runs_is_a_study_table_the_glance_reads(tmp_path, monkeypatch):
    from fptlib.study.report import find_tables, glance, summary_table, table_titles
    st = Converged(scale="cpu", tasks=["mnist"], seeds=[0, 1, 2])
    conv = pd.DataFrame({"row": ["FPT"] * 3 + ["Random"] * 3, "task": ["mnist"] * 6, "seed": [0, 1, 2] * 2,
                         "steps_to_converge": [500, 600, 700, 5000, 6000, 7000],
                         "converged": [True] * 5 + [False], "best_val": [90.0] * 6, "budget": [2500] * 6,
                         "cap": [20000] * 6})
    s = st.steps_summary(conv)
    fpt, rnd = s[s.row == "FPT"].iloc[0], s[s.row == "Random"].iloc[0]
    assert (fpt["mean"], fpt["std"], fpt["n_seeds"]) == (600, 100, 3) and fpt["paper"] == 5e3
    assert rnd["capped"].startswith("cap reached at 20,000 steps (seeds 2)") and fpt["capped"] == ""
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(Converged, "stops", lambda self: _stops([]))
    paths = st.save_table6(conv)
    assert "Speed-up" in paths["md"].read_text() and "lower bound" in paths["md"].read_text()
    tables = [t for t in find_tables("cpu") if t.name == "table06_converged"]
    summary = summary_table("cpu", tables)
    claim = glance(summary, table_titles(tables))[0]
    assert claim.rows == ["FPT", "Random"] and claim.pairs == 1
    # FPT converges in fewer steps than Random, as in the paper, and 5,400 steps is far beyond 2 spreads
    assert claim.pairs_in_order == 1, claim.words


def test_converged_smoke_configs_resolve_for_every_task():
    for task in PRESETS["smoke"]["tasks"]:
        cfg = resolve(RunConfig(task=task, scale="smoke", **converge_fields("smoke", task)))
        assert cfg.patience >= 1 and cfg.precision == "bf16"


def test_the_two_views_of_tables_1_2_say_where_they_disagree():
    from fptlib.study.report import SUMMARY_COLUMNS, compare_views, views_markdown

    def line(table, row, task, mean, std=1.0, n=3):
        return {"table": table, "row": row, "task": task, "metric": "test_accuracy", "mean": mean, "std": std,
                "n_seeds": n, "protocol": "converged" if table == "table01_02_converged" else "budget"}
    rows = [line("table01_02", "FPT", "bit-xor", 100.0), line("table01_02", "Random", "bit-xor", 70.0),
            line("table01_02_converged", "FPT", "bit-xor", 100.0),
            line("table01_02_converged", "Random", "bit-xor", 99.5),
            line("table01_02", "FPT", "mnist", 86.0), line("table01_02", "Random", "mnist", 57.0),
            line("table01_02_converged", "FPT", "mnist", 95.0), line("table01_02_converged", "Random", "mnist", 85.0),
            line("table01_lstm", "FPT", "mnist", 86.0), line("table01_lstm", "LSTM", "mnist", 88.0),
            line("table01_02_converged", "LSTM", "mnist", 95.5)]
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    df = compare_views(summary).set_index(["task", "pair"])
    # spread 1 point: the band at 3 seeds each is 2 × 1 × √(2/3) = 1.6 points
    assert not df.loc[("bit-xor", "FPT vs Random"), "agree"]          # decided at budget, level at convergence
    assert df.loc[("bit-xor", "FPT vs Random"), "converged"].startswith("level (within noise)")
    assert df.loc[("mnist", "FPT vs Random"), "agree"]                # ahead, decided, in both views
    assert not df.loc[("mnist", "FPT vs LSTM"), "agree"]              # behind (decided) vs level (within noise)
    # each view by its own protocol's spread: budget lines 10 times as spread widen the budget band only (pooled
    # with them, the converged spread would be 7.6, a band of 12.4 over MNIST's 10-point FPT-Random gap)
    wide = summary.assign(std=[10.0 if p == "budget" else 1.0 for p in summary.protocol])
    df = compare_views(wide).set_index(["task", "pair"])
    assert df.loc[("mnist", "FPT vs LSTM"), "budget"].startswith("behind (within noise)")
    assert df.loc[("mnist", "FPT vs Random"), "converged"].startswith("ahead (decided)")
    assert df.loc[("bit-xor", "FPT vs Random"), "converged"].startswith("level (within noise)")
    md = views_markdown(compare_views(summary))
    assert "**disagree**" in md and "comparisons disagree" in md
    assert views_markdown(compare_views(summary[summary.table != "table01_02_converged"])).startswith("No task")


def test_reproduce_skips_a_notebook_run_on_request_unless_named(tmp_path, monkeypatch):
    from fptlib.study import notebooks as nbmod
    from fptlib.study.catalogue import on_request
    assert "fpt reproduce --only 15" in on_request("15_pretraining_sources", "cpu")
    assert on_request("15_pretraining_sources", "smoke") == "" and on_request("01_table1_table2", "cpu") == ""
    ran = []
    monkeypatch.setenv("FPT_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr("papermill.execute_notebook", lambda src, *a, **k: ran.append(Path(src).stem))
    s = nbmod.reproduce("cpu", only=None)
    assert "15_pretraining_sources" not in ran and "01a_table1_2_6_converged" in ran
    assert {e["notebook"]: e["status"] for e in s["notebooks"]}["15_pretraining_sources.ipynb"] == "skipped"
    assert s["failed"] == []
    ran.clear()
    nbmod.reproduce("cpu", only=["15"])
    assert ran == ["15_pretraining_sources"]
