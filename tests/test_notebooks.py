"""Notebooks run headlessly through `fpt reproduce` and write their runs, tables and figures."""
import json
import subprocess
from dataclasses import fields

import pandas as pd
import papermill as pm
import pytest

from fptlib.experiments import Table12


def test_parameters_cell_mirrors_the_study_dataclass(repo_root):
    params = pm.inspect_notebook(str(repo_root / "notebooks" / "01_table1_table2.ipynb"))
    defaults = Table12()
    assert list(params) == [f.name for f in fields(Table12)]
    for name, p in params.items():
        assert eval(p["default"]) == getattr(defaults, name), name


def test_notebooks_are_stored_without_outputs(repo_root):
    for nb in (repo_root / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert all(not c.get("outputs") and not c.get("execution_count") for c in cells if c["cell_type"] == "code"), nb


@pytest.mark.slow
def test_reproduce_smoke_writes_runs_tables_and_figures(fpt_cmd, tmp_path):
    res, fig = tmp_path / "res", tmp_path / "fig"
    r = subprocess.run(fpt_cmd + ["reproduce", "--scale", "smoke", "--results-dir", str(res),
                                  "--figures-dir", str(fig)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = list((res / "smoke" / "runs").glob("*/result.json"))
    assert len(runs) == 4 * 3 * 3  # tasks with data here x rows x seeds
    table = pd.read_csv(res / "smoke" / "tables" / "table01_02.csv")
    assert set(table.row) == {"FPT", "Random", "LSTM"}
    assert set(table.task) == {"bit-xor", "bit-memory", "listops", "mnist", "cifar10", "cifar10-lra", "homology"}
    measured = table[table.note.isna()]
    assert set(measured.task) == {"bit-xor", "bit-memory", "listops", "mnist"}
    assert (measured.n_seeds == 3).all()
    absent = table[table.note.notna()]
    assert absent["mean"].isna().all() and absent.note.str.contains("fpt data fetch").all()
    fpt_mnist = table[(table.row == "FPT") & (table.task == "mnist") & (table.metric == "test_accuracy")]
    assert fpt_mnist.paper.iloc[0] == 98.0
    md = (res / "smoke" / "tables" / "table01_02.md").read_text()
    assert "Scale `smoke`" in md and "(paper 98)" in md and "data not available offline" in md
    for name in ("table01_02_bars.png", "table01_02_curves.png"):
        assert (fig / "smoke" / name).stat().st_size > 10_000
    summary = json.loads((res / "smoke" / "reproduce_summary.json").read_text())
    assert summary["failed"] == []
    # a rerun computes nothing new: every run is cached by config
    before = {p: p.stat().st_mtime_ns for p in runs}
    r2 = subprocess.run(fpt_cmd + ["reproduce", "--scale", "smoke", "--results-dir", str(res),
                                   "--figures-dir", str(fig)], capture_output=True, text=True)
    assert r2.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in runs} == before


@pytest.mark.parametrize("kw, message", [
    ({"seeds": "0,1"}, "parameter 'seeds' of Table12 must be list, got str"),
    ({"steps": "100"}, "parameter 'steps' of Table12 must be int"),
    ({"scale": "gpu"}, "unknown scale 'gpu'"),
])
def test_wrong_parameter_types_are_named(kw, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Table12(**kw)
