"""Notebooks run headlessly through `fpt reproduce` and write their runs, tables and figures."""
import json
import subprocess
from dataclasses import fields

import pandas as pd
import papermill as pm
import pytest
from conftest import LONG_WAIT, REPRODUCE_WAIT

from fptlib.study.base import Tables1And2
from fptlib.study.catalogue import NOTEBOOKS


@pytest.mark.parametrize("notebook", [nb for nb in NOTEBOOKS if nb.studies], ids=lambda nb: nb.stem)
def test_parameters_cell_mirrors_the_study_dataclass(repo_root, notebook):
    """The parameters cell names the study's fields in order, and its defaults make the same study."""
    cls = notebook.studies[0][0]
    params = pm.inspect_notebook(str(repo_root / "notebooks" / f"{notebook.stem}.ipynb"))
    assert list(params) == [f.name for f in fields(cls)]
    assert cls(**{name: eval(p["default"]) for name, p in params.items()}) == cls()


def test_notebooks_are_stored_without_outputs(repo_root):
    for nb in (repo_root / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert all(not c.get("outputs") and not c.get("execution_count") for c in cells if c["cell_type"] == "code"), nb


@pytest.fixture(scope="session")
def smoke_reproduction(tmp_path_factory):
    """`fpt reproduce --scale smoke` over every notebook, once for the whole session."""
    import sys
    base = tmp_path_factory.mktemp("smoke")
    res, fig = base / "res", base / "fig"
    cmd = [sys.executable, "-m", "fptlib.cli", "reproduce", "--scale", "smoke", "--results-dir", str(res),
           "--figures-dir", str(fig)]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FPT_")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=REPRODUCE_WAIT)
    return {"res": res / "smoke", "fig": fig / "smoke", "proc": r, "cmd": cmd, "env": env}


def SMOKE_REPRODUCTION(test):
    """Slow, and whichever of these runs first also pays for the session's smoke reproduction."""
    return pytest.mark.slow(pytest.mark.timeout(2400)(test))  # REPRODUCE_WAIT and a margin


# notebook -> (tables it writes, figures it writes)
# What each notebook writes, from the one catalogue: (tables, figures) by notebook stem
WRITES = {nb.stem: nb.outputs("smoke") for nb in NOTEBOOKS}


def test_every_notebook_is_listed(repo_root):
    assert sorted(p.stem for p in (repo_root / "notebooks").glob("[0-9][0-9]*.ipynb")) == sorted(WRITES)


@SMOKE_REPRODUCTION
def test_reproduce_smoke_runs_every_notebook(smoke_reproduction):
    r = smoke_reproduction["proc"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((smoke_reproduction["res"] / "reproduce_summary.json").read_text())
    assert summary["failed"] == []
    order = [line.split()[2] for line in r.stdout.splitlines() if line.endswith("...")]
    assert order[-1] == "00_summary.ipynb"  # the summary reads what the others wrote: it runs last
    assert sorted(e["notebook"].removesuffix(".ipynb") for e in summary["notebooks"]) == sorted(WRITES)


@SMOKE_REPRODUCTION
@pytest.mark.parametrize("notebook", sorted(WRITES))
def test_each_notebook_writes_its_tables_and_figures(smoke_reproduction, notebook):
    tables, figures = WRITES[notebook]
    for t in tables:
        assert (smoke_reproduction["res"] / "tables" / f"{t}.csv").stat().st_size > 0, t
        md = smoke_reproduction["res"] / "tables" / f"{t}.md"
        assert md.exists() or t.endswith(("_convergence", "_cache_speedup")), t
    for f in figures:
        assert (smoke_reproduction["fig"] / f).stat().st_size > 5_000, f


@SMOKE_REPRODUCTION
def test_smoke_table01_02_content(smoke_reproduction):
    res = smoke_reproduction["res"]
    runs = list((res / "runs").glob("*/result.json"))
    table = pd.read_csv(res / "tables" / "table01_02.csv")
    assert set(table.row) == {"FPT", "Random"}
    lstm = pd.read_csv(res / "tables" / "table01_lstm.csv")
    assert set(lstm.row) == {"FPT", "LSTM"}
    # 01b reuses 01's FPT runs: the same numbers in both tables
    key = ["task", "metric", "mean"]
    assert table[table.row == "FPT"][key].dropna().equals(lstm[lstm.row == "FPT"][key].dropna())
    lstm_xor = lstm[(lstm.row == "LSTM") & (lstm.task == "bit-xor") & (lstm.metric == "test_accuracy")]
    assert lstm_xor.paper.iloc[0] == 50.1
    assert set(table.task) == {"bit-xor", "bit-memory", "listops", "mnist", "cifar10", "cifar10-lra", "homology"}
    measured = table[table.note.isna()]
    assert set(measured.task) == {"bit-xor", "bit-memory", "listops", "mnist"}
    assert (measured.n_seeds == 1).all()  # the smoke scale runs one seed
    absent = table[table.note.notna()]
    assert absent["mean"].isna().all() and absent.note.str.contains("fpt data fetch").all()
    fpt_mnist = table[(table.row == "FPT") & (table.task == "mnist") & (table.metric == "test_accuracy")]
    assert fpt_mnist.paper.iloc[0] == 98.0
    md = (res / "tables" / "table01_02.md").read_text()
    assert "Scale `smoke`" in md and "(paper 98)" in md and "data not available offline" in md
    bit = pd.read_csv(res / "tables" / "table02_bit.csv")
    assert {"FPT", "Random", "Bit"} <= set(bit.row)
    assert bit[(bit.row == "Bit") & (bit.task == "listops") & (bit.metric == "test_accuracy")].paper.iloc[0] == 35.4
    src = [json.loads(p.read_text()) for p in runs]
    bit_runs = [r for r in src if r["init"] == "bit"]
    assert bit_runs and all(r["init_source"]["task"] == "bit-memory" for r in bit_runs)


@SMOKE_REPRODUCTION
def test_smoke_rerun_computes_nothing(smoke_reproduction):
    res = smoke_reproduction["res"]
    runs = list((res / "runs").glob("*/result.json"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    r2 = subprocess.run(smoke_reproduction["cmd"] + ["--only", "01", "03"], capture_output=True, text=True,
                        env=smoke_reproduction["env"], timeout=LONG_WAIT)
    assert r2.returncode == 0, r2.stdout[-2000:]
    assert {p: p.stat().st_mtime_ns for p in runs} == before
    # a partial run keeps the record of the notebooks it did not run
    summary = json.loads((res / "reproduce_summary.json").read_text())
    assert summary["this_invocation"] == ["01_table1_table2.ipynb", "03_table6_7_convergence_fit.ipynb"]
    assert len(summary["notebooks"]) == len(WRITES)


@pytest.mark.parametrize("notebook", [nb.stem for nb in NOTEBOOKS if not nb.by_hand])
def test_study_notebook_parameters_mirror_their_dataclass(repo_root, notebook):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_nb", repo_root / "notebooks" / "_make.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    src = json.loads((repo_root / "notebooks" / f"{notebook}.ipynb").read_text())
    want = json.loads(json.dumps(mk.build()[notebook]))
    def text(cells):
        return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
    assert text(src["cells"]) == text(want["cells"]), \
        "notebook differs from notebooks/_make.py: run python notebooks/_make.py"


@pytest.mark.parametrize("kw, message", [
    ({"seeds": "0,1"}, "parameter 'seeds' of Tables1And2 must be list, got str"),
    ({"steps": "100"}, "parameter 'steps' of Tables1And2 must be int"),
    ({"scale": "gpu"}, "unknown scale 'gpu'"),
])
def test_wrong_parameter_types_are_named(kw, message, reliability):
    with pytest.raises((TypeError, ValueError), match=message):
        Tables1And2(**kw)
    reliability.bad_input(f"Tables1And2({kw})", kind="parameter")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # LONG_WAIT and a margin
def test_a_notebook_trains_its_runs_side_by_side_inside_the_kernel(tmp_path):
    # Worker processes are spawned from the papermill kernel (its __main__ is ipykernel's launcher):
    # the path a `cpu` reproduction takes on a machine without a GPU, here at the smoke scale.
    import os
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPT_")}
    r = subprocess.run([sys.executable, "-m", "fptlib.cli", "reproduce", "--scale", "smoke", "--only", "01",
                        "--workers", "2", "--results-dir", str(tmp_path / "res"), "--figures-dir",
                        str(tmp_path / "fig")], capture_output=True, text=True, env=env, timeout=LONG_WAIT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    executed = (tmp_path / "res" / "smoke" / "executed" / "01_table1_table2.ipynb").read_text()
    assert "run(s) in up to 2 processes side by side" in executed
    table = pd.read_csv(tmp_path / "res" / "smoke" / "tables" / "table01_02.csv")
    assert table[table.note.isna()]["mean"].notna().all() and set(table.row) == {"FPT", "Random"}
    assert len(list((tmp_path / "res" / "smoke" / "runs").glob("*/result.json"))) == 8
