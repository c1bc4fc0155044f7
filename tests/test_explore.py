"""The JupyterLab front door, without a browser: the attention explorer (notebook 04) on tiny smoke-scale
analyses, and the run browser (notebook 00) on a few smoke runs written into a temporary results dir."""
import shutil

import numpy as np
import pandas as pd
import pytest

from fptlib.config import RunConfig, resolve
from fptlib.study import attention
from fptlib.study.attention import AttentionExplorer
from fptlib.study.report import RunBrowser
from fptlib.training import RunError, run_dir_for, train

N_EXAMPLES = 16
XOR_COLS = ("mass_pair", "mass_partner", "mass_self", "uniform_pair", "top1_partner", "top2_exact")
MEM_COLS = ("mass_pattern", "uniform_pattern", "mass_slot", "uniform_slot", "mass_query", "top1_slot")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("explore") / "results"


@pytest.fixture(scope="module")
def analyses(cache_root):
    """Bit XOR and Bit Memory, 5 training steps each, maps on 16 test examples (trained once per module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FPT_RESULTS_DIR", str(cache_root))
        return {t: attention.analyse(t, scale="smoke", steps=5, n_examples=N_EXAMPLES) for t in attention.TASKS}


@pytest.fixture
def explorer(analyses):
    return AttentionExplorer(analyses)


# ---- attention explorer ----------------------------------------------------------------------------------
def test_moving_the_layer_head_example_or_model_changes_the_map(explorer):
    explorer.select(task="bit-xor")
    base = explorer.current_map()
    assert base.shape == (10, 10)
    np.testing.assert_allclose(base.sum(-1), 1.0, atol=1e-5)  # a mean of attention rows
    shown = {}
    for change in ({"layer": 2}, {"head": 3}, {"head": 4}, {"example": 0}, {"model": "untrained"}):
        explorer.select(task="bit-xor", model="trained", layer=1, head=None, example=None)
        explorer.select(**change)
        shown[str(change)] = m = explorer.current_map()
        assert not np.allclose(m, base), change
    assert not np.allclose(shown["{'head': 3}"], shown["{'head': 4}"])
    an = explorer.an
    explorer.select(layer=2, head=3, example=5, model="untrained")
    np.testing.assert_array_equal(explorer.current_map(), an.maps["untrained"][1, 5, 2])


@pytest.mark.parametrize("task", attention.TASKS)
def test_shown_scores_match_the_module_table_for_that_layer(explorer, task):
    explorer.select(task=task)
    an, cols = explorer.an, XOR_COLS if task == "bit-xor" else MEM_COLS
    for model in ("trained", "untrained"):
        for layer in range(1, an.n_layers + 1):
            explorer.select(model=model, layer=layer, head=None, example=None, pattern=None)
            rows = explorer.layer_rows().set_index("model")
            assert list(rows.index) == ["trained", "untrained"] and (rows.layer == layer).all()
            pd.testing.assert_series_equal(rows.loc[model, list(cols)],
                                           an.table.set_index(["model", "layer"]).loc[(model, layer), list(cols)],
                                           check_names=False)
            shown = explorer.scores()
            for c in cols:  # the per-layer table is the mean of these per-token rows
                assert shown[c].mean() == pytest.approx(rows.loc[model, c], rel=1e-9), (model, layer, c)
    if task == "bit-xor":  # the rows are the module's own xor_alignment, heads numbered from 1
        explorer.select(model="trained", layer=1)
        own = attention.xor_alignment(an.maps["trained"][0])
        pd.testing.assert_frame_equal(explorer.scores(), own.assign(best_head=own.best_head + 1))


def test_one_head_scores_are_that_heads(explorer):
    explorer.select(task="bit-xor", model="trained", layer=1, head=7, example=None)
    shown = explorer.scores()
    own = attention.xor_alignment(explorer.an.maps["trained"][0][:, [6]])
    assert (shown["head"] == 7).all() and "best_head" not in shown
    np.testing.assert_allclose(shown.mass_pair, own.mass_pair)


def test_token_labels_mark_the_xor_inputs(explorer):
    explorer.select(task="bit-xor")
    labels, cells = explorer.token_labels(), explorer.marked_cells()
    assert labels == ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]
    # output token b_i (position 5+i) = a_i XOR b_i: its row marks exactly those two inputs
    for i in range(5):
        assert sorted(labels[col] for row, col in cells if row == 5 + i) == [f"a{i}", f"b{i}"]
    assert {row for row, _ in cells} == set(range(5, 10))
    # the red boxes drawn are the cells marked
    from matplotlib.patches import Rectangle
    ax = explorer.figure().axes[0]
    boxes = {(int(r.get_y() + 0.5), int(r.get_x() + 0.5)) for r in ax.patches if isinstance(r, Rectangle)}
    assert boxes == set(cells)
    assert [t.get_text() for t in ax.get_xticklabels()] == labels


def test_bit_memory_labels_patterns_and_the_query(explorer):
    explorer.select(task="bit-memory")
    an = explorer.an
    labels = explorer.token_labels()
    k = len(labels) // (an.n_patterns + 1)
    assert labels[0] == "p0.0" and labels[-k] == "q.0" and labels[-1] == f"q.{k - 1}"
    which = attention.query_patterns(an.x.numpy(), an.n_patterns)
    assert explorer.choice.pattern == which[0]  # opens like the static figures
    explorer.select(example=3)
    assert explorer.choice.pattern is None and explorer.current_pattern() == which[3]
    assert [(labels[r], labels[c]) for r, c in explorer.marked_cells()] == \
        [(f"q.{j}", f"p{which[3]}.{j}") for j in range(k)]
    explorer.select(example=None, pattern=None)
    assert explorer.marked_cells() == [] and len(explorer.examples()) == N_EXAMPLES


def test_explorer_refuses_choices_that_do_not_exist(explorer, reliability):
    for bad in ({"layer": 0}, {"layer": 3}, {"head": 13}, {"example": N_EXAMPLES}, {"model": "finetuned"},
                {"task": "mnist"}, {"run": "nope"}):
        with pytest.raises(ValueError):
            explorer.select(**bad)
        reliability.bad_input(str(bad), kind="parameter")
    with pytest.raises(ValueError, match="Bit Memory only"):
        explorer.select(task="bit-xor", pattern=1)
    reliability.bad_input("pattern on xor", kind="parameter")
    with pytest.raises(ValueError, match="no analysed run"):
        AttentionExplorer({})


def test_the_widget_follows_its_controls(explorer):
    w = explorer.widget
    c = explorer.controls
    assert w.children and explorer._widgets["image"].value[:4] == b"\x89PNG"
    c["task"].value = "bit-xor"
    c["layer"].value = 2
    c["head"].value = 5
    assert (explorer.choice.layer, explorer.choice.head) == (2, 5)
    np.testing.assert_allclose(explorer.current_map(), explorer.an.maps["trained"][1, :, 4].mean(0))
    c["examples"].value = ("example", 2)
    assert explorer.choice.example == 2
    c["task"].value = "bit-memory"
    assert explorer.an.task_name == "bit-memory" and explorer.choice.layer == 2
    assert "mass_pattern" in explorer._widgets["scores"].value
    explorer.select(layer=1)  # and the controls follow the API
    assert c["layer"].value == 1


def test_explorer_from_the_cache_loads_kept_models(analyses, cache_root, monkeypatch):
    monkeypatch.setenv("FPT_RESULTS_DIR", str(cache_root))
    ex = AttentionExplorer.from_cache("smoke", n_examples=N_EXAMPLES)
    assert sorted(ex.tasks) == sorted(attention.TASKS) and len(ex.runs()) == 2
    an = ex.an  # the first run, loaded when chosen
    assert an.info["cached"] is True
    np.testing.assert_allclose(an.maps["trained"], analyses[an.task_name].maps["trained"], atol=1e-6)


def test_analyse_cached_refuses_a_stale_config(analyses, cache_root, monkeypatch, reliability):
    monkeypatch.setenv("FPT_RESULTS_DIR", str(cache_root))
    info = attention.cached_runs("smoke")[0]
    with pytest.raises(RunError, match="no longer gives"):
        attention.analyse_cached(info | {"config_hash": "0" * 12})
    reliability.bad_input("stale cache entry", kind="wrong run directory")


def test_from_cache_refuses_an_empty_cache(reliability):
    with pytest.raises(ValueError, match="no trained model"):
        AttentionExplorer.from_cache("smoke")
    reliability.bad_input("explorer from an empty cache", kind="missing data")


# ---- run browser ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Three smoke runs of 4 steps: Bit XOR pretrained seeds 0 and 1, and one random-init run."""
    root = tmp_path_factory.mktemp("browse") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FPT_RESULTS_DIR", str(root))
        for kw in ({"seed": 0}, {"seed": 1}, {"seed": 1, "init": "random"}):
            cfg = resolve(RunConfig(task="bit-xor", scale="smoke", steps=4, **kw))
            train(cfg, run_dir_for(cfg), progress=False)
    return root


@pytest.fixture
def browser(runs_root, tmp_path, monkeypatch):
    root = tmp_path / "browse-results"
    shutil.copytree(runs_root, root)
    monkeypatch.setenv("FPT_RESULTS_DIR", str(root))
    return RunBrowser("smoke")


def test_browser_reads_every_run_and_filtering_changes_the_table(browser):
    assert len(browser) == 3 and browser.options("init") == ["pretrained", "random"]
    assert browser.options("seed") == [0, 1]
    assert len(browser.table()) == 2
    browser.filter(init=["pretrained"])
    t = browser.table()
    assert len(t) == 1 and t.iloc[0]["init"] == "pretrained" and t.iloc[0].n_runs == 2
    browser.filter(seed=[0])
    assert browser.table().iloc[0].n_runs == 1 and len(browser.selection()) == 1
    browser.filter(init=None)
    assert len(browser.table()) == 1  # seed 0 has no random-init run
    browser.reset()
    assert len(browser.selection()) == 3


def test_browser_mean_and_std_are_over_the_selected_runs(browser):
    sel = browser.filter(init="pretrained").selection()
    acc = sel.test_accuracy.to_numpy() * 100
    row = browser.table().iloc[0]
    assert row["mean"] == pytest.approx(acc.mean()) and row["std"] == pytest.approx(acc.std(ddof=1))
    assert row["test accuracy (%)"] == f"{acc.mean():.1f} ± {acc.std(ddof=1):.1f}"
    assert row.seeds == "0,1" and row.variants == 1 and row.differs == ""
    one = browser.filter(init="random").table().iloc[0]
    assert one.n_runs == 1 and np.isnan(one["std"]) and one["test accuracy (%)"] == f"{one['mean']:.1f}"
    assert one.groups == "input+output+layernorm+positions"


def test_browser_curves_are_the_runs_validation_curves(browser):
    browser.filter(init="random")
    c = browser.curves()
    assert set(c.run_id) == set(browser.selection().run_id) and c.val_accuracy.between(0, 1).all()
    fig = browser.curves_figure()
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    assert len(lines) == 1 and len(lines[0].get_xdata()) == len(c)
    browser.filter(init=None)
    assert sum(len(ax.get_lines()) for ax in browser.curves_figure().axes) == 3


def test_browser_exports_the_selection_as_csv(browser):
    from fptlib.paths import results_dir
    path = browser.filter(seed=[1]).export()
    assert path == results_dir("smoke") / "exports" / "runs_selection.csv"
    out = pd.read_csv(path)
    assert sorted(out.init) == ["pretrained", "random"] and (out.seed == 1).all() and "config" not in out
    assert sorted(out.run_id) == sorted(browser.selection().run_id)
    grouped = pd.read_csv(browser.export("table.csv", grouped=True))
    assert len(grouped) == 2 and (grouped.n_runs == 1).all()
    assert not list(path.parent.glob(".*"))  # written atomically: no temporary file left behind


def test_browser_widget_filters_and_exports(browser):
    c = browser.controls
    assert set(c["seed"].value) == {0, 1}
    c["init"].value = ("random",)
    assert browser.chosen["init"] == ["random"] and len(browser.selection()) == 1
    assert "1 of 3 runs" in browser._widgets["count"].value
    c["export"].click()
    assert "wrote 1 lines" in browser._widgets["status"].value
    c["init"].value = ("pretrained", "random")
    assert browser.chosen["init"] is None


def test_browser_refuses_unknown_filter_values(browser, reliability):
    with pytest.raises(ValueError, match="matches no run"):
        browser.filter(task=["mnist"])
    reliability.bad_input("a task no run has", kind="parameter")
    with pytest.raises(ValueError, match="unknown filter"):
        browser.filter(lr=[0.1])
    reliability.bad_input("unknown filter", kind="parameter")


def test_browser_leaves_out_unreadable_and_unfinished_runs(browser):
    from fptlib.paths import results_dir
    runs = results_dir("smoke") / "runs"
    (runs / "unfinished").mkdir()
    damaged = sorted(runs.iterdir())[0]
    (damaged / "result.json").write_text("{ not json")
    b = RunBrowser("smoke")
    assert len(b) == 2 and list(b.skipped) == [damaged.name]
