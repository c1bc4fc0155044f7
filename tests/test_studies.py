"""The studies behind notebooks 02-14: the configs of their rows, the paper numbers beside them, and
the analyses that need no training (convergence criterion, summary merging)."""
import dataclasses
import json

import pandas as pd
import pytest

from fptlib.groups import FPT_GROUPS
from fptlib.study import paper, plots, studies
from fptlib.study.base import Tables1And2
from fptlib.study.compute_time import schedule_seconds

ALL = [studies.BitInit, studies.StatsInit, studies.OutputOnly, studies.Ablation, studies.MoreParams, studies.FrozenLN,
       studies.Depth, studies.Backbones, studies.ModelSize, studies.LSTMVariants, studies.LRSweep, studies.Convergence,
       Tables1And2, studies.LSTMBaseline]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_rows_are_distinct_computations(cls):
    st = cls(scale="cpu", seeds=[0])
    runs = st.runs()
    assert runs, "a study with no runs"
    skipped = st.missing_weights()  # offline, a row whose pretrained weights are not on disk is not run
    assert {r.row for r in runs} == set(st.rows) - set(skipped)
    assert all("not in the Hugging Face cache" in why for why in skipped.values()), skipped
    for task in st.tasks_with_data:
        hashes = [r.config.hash() for r in runs if r.config.task == task]
        assert len(hashes) == len(set(hashes)), f"two rows of {cls.__name__} are the same run on {task}"


# Rows a study adds beyond the paper's table: they have no paper number to find.
BEYOND_THE_PAPER = {studies.MoreParams: {"+ Feedforward, lr 1e-4"},
                    studies.Depth: {"3 layers, pretrained", "3 layers, random"}}


@pytest.mark.parametrize("cls", [c for c in ALL if c not in (studies.LSTMVariants, studies.LRSweep)],
                         ids=lambda c: c.__name__)
def test_every_row_the_paper_has_finds_its_number(cls):
    st = cls(scale="paper" if cls in (studies.ModelSize, studies.Backbones) else "cpu")
    found = {r: [t for t in paper.TASK_COLUMNS if (ref := st.paper_ref(r)) and paper.lookup(*ref, t) is not None]
             for r in st.rows}
    without = {r for r, tasks in found.items() if not tasks}
    assert without == BEYOND_THE_PAPER.get(cls, set()), f"{cls.__name__}: rows without a paper number: {without}"
    assert set(st.rows) - without, f"{cls.__name__}: no row finds a paper number"


def test_shared_rows_are_the_same_runs_across_notebooks():
    """FPT and Random of Table 2 (01) are reused by 02, 03, 07 and 10: same config, same run."""
    t12 = {(r.row, r.config.task): r.config.hash() for r in Tables1And2(seeds=[0]).runs()}
    bit = {(r.row, r.config.task): r.config.hash() for r in studies.BitInit(seeds=[0]).runs()}
    stats = {(r.row, r.config.task): r.config.hash() for r in studies.StatsInit(seeds=[0]).runs()}
    for task in ("bit-xor", "mnist"):
        assert bit[("FPT", task)] == t12[("FPT", task)] == stats[("Pretrained", task)]
        assert bit[("Random", task)] == t12[("Random", task)] == stats[("Default random", task)]


def test_ablation_and_more_params_train_the_papers_groups(reliability):
    abl = {r.row: r.config for r in studies.Ablation(seeds=[0], tasks=["mnist"]).runs()}
    assert abl["Output only"].train == ("output",)
    assert set(abl["+ Layernorm"].train) == {"output", "layernorm"}
    assert set(abl["+ Input"].train) == {"output", "layernorm", "input"}
    assert set(abl["+ Positions"].train) == set(FPT_GROUPS)
    assert studies.Ablation(init="random").name == "table21_ablation_random"
    with pytest.raises(ValueError, match="init must be one of 'pretrained', 'random', got 'stats'"):
        studies.Ablation(init="stats")
    reliability.bad_input("Ablation(init='stats')", kind="parameter")
    more = {r.row: r.config for r in studies.MoreParams(tasks=["mnist"]).runs()}
    assert "attention_last" in more["+ Feedforward + last attention layer"].train
    assert {"feedforward", "attention"} <= set(more["+ Both"].train)
    slow = more["+ Feedforward, lr 1e-4"]  # ours: the same groups at a tenth of the learning rate
    assert slow.lr == 1e-4 and slow.train == more["+ Feedforward"].train and more["+ Feedforward"].lr == 1e-3


def test_output_only_caches_exactly_where_a_fixed_training_set_exists():
    cfgs = {(r.row, r.config.task): r.config for r in studies.OutputOnly(tasks=["bit-xor", "mnist", "listops"]).runs()}
    assert cfgs[("Output only", "mnist")].cache_features and cfgs[("Output only", "listops")].cache_features
    assert not cfgs[("Output only", "bit-xor")].cache_features
    assert not cfgs[("FPT", "mnist")].cache_features


def test_depth_rows_truncate_the_backbone():
    rows = {r.row: r.config for r in studies.Depth(depths=[1, 3]).runs()}
    assert rows["1 layers, pretrained"].n_layers == 1 and rows["3 layers, random"].init == "random"
    assert set(rows["1 layers, random"].train) == {"output", "layernorm"}
    d12 = {r.row: r.config for r in studies.Depth(depths=[1], output_only=True).runs()}
    assert d12["1 layers, pretrained"].train == ("output",) and d12["1 layers, pretrained"].cache_features


def test_a_depth_that_keeps_every_block_is_the_untruncated_run():
    """6 of MiniLM's 6 blocks is the FPT config itself (one cached run), not a copy with n_layers=6."""
    fpt = {r.config.task: r.config.hash() for r in Tables1And2(seeds=[0], tasks=["mnist"]).runs() if r.row == "FPT"}
    size = {r.row: r.config for r in studies.ModelSize(tasks=["mnist"]).runs()}
    assert size["minilm 6 blocks FPT"].hash() == fpt["mnist"]
    assert size["minilm 2 blocks FPT"].n_layers == 2
    assert studies.keep_blocks("cpu", "", 6) is None and studies.keep_blocks("cpu", "gpt2", 6) == 6
    assert studies.keep_blocks("cpu", "gpt2", 12) is None
    # smoke cuts MiniLM to 2 blocks already: depth 2 is that default, depth 1 a further cut
    smoke = {r.row: r.config for r in studies.Depth(scale="smoke", depths=[1, 2]).runs()}
    assert smoke["2 layers, pretrained"].n_layers == 2 and smoke["1 layers, pretrained"].n_layers == 1


def test_empty_seeds_and_tasks_take_the_scales_grid():
    cpu, paper_scale = studies.Ablation(), studies.Ablation(scale="paper")
    assert cpu.tasks == studies.CPU_ABLATION_TASKS and cpu.seeds == [0]
    assert paper_scale.tasks == list(paper.TASK_COLUMNS)
    assert studies.Ablation(tasks=["bit-memory"]).tasks == ["bit-memory"]  # explicit values win
    assert studies.BitInit().seeds == [0] and studies.BitInit(scale="smoke").seeds == [0, 1, 2]
    assert Tables1And2().seeds == [0, 1, 2] and Tables1And2().tasks == list(paper.TASK_COLUMNS)
    assert studies.LRSweep().tasks == ["listops"] and studies.LRSweep(scale="paper").tasks == ["listops", "mnist"]
    assert studies.LRSweep().lrs == [1e-4, 1e-3] and studies.LRSweep(scale="smoke").lrs == [1e-4, 3e-4, 1e-3, 3e-3]
    # the cut is written under the table, and only where there is one
    assert "grid: tasks ['bit-xor', 'mnist', 'cifar10', 'cifar10-lra', 'homology'] (paper scale: " \
           "['bit-memory'," in cpu.scale_note() and "cut, to finish on two cores" in cpu.scale_note()
    assert "grid:" not in Tables1And2(seeds=[0, 1, 2]).scale_note()
    assert "cut" not in studies.Ablation(tasks=["mnist"]).scale_note()


def _curve(tmp_path, name, accs, step=100):
    d = tmp_path / name
    d.mkdir()
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": i * step, "val_accuracy": a}) + "\n"
                                             for i, a in enumerate(accs)))
    return str(d)


def test_convergence_criterion(tmp_path):
    runs = pd.DataFrame([
        {"row": "FPT", "task": "bit-xor", "seed": 0, "run_dir": _curve(tmp_path, "a", [0.5, 0.9, 0.995, 1.0, 1.0])},
        {"row": "Random", "task": "bit-xor", "seed": 0, "run_dir": _curve(tmp_path, "b", [0.5, 0.6, 0.7, 0.8, 0.9])},
    ])
    st = studies.Convergence(tasks=["bit-xor"], seeds=[0])
    conv = st.convergence(runs).set_index("row")
    assert conv.loc["FPT", "steps_to_converge"] == 200 and conv.loc["FPT", "converged"]
    assert conv.loc["Random", "steps_to_converge"] == 400 and not conv.loc["Random", "converged"]
    md = st.convergence_markdown(conv.reset_index())
    assert "| FPT | 200 (paper 5e2) |" in md and "| Random | >400 (paper 2e4) |" in md
    assert ">2.0×" in md  # a lower bound: Random was still improving


def test_lr_sweep_table_sets_rothermel_beside_ours():
    st = studies.LRSweep(tasks=["mnist"], lrs=[1e-3])
    summary = pd.DataFrame([{"row": f"{s}, lr 0.001", "task": "mnist", "metric": "test_accuracy", "mean": 90.0,
                             "std": float("nan")} for s in st.SETTINGS])
    md = st.markdown(summary)
    assert "| Frozen pretrained | 90.0 | 90.0 | 98.5 |" in md
    assert st.grid(summary).shape == (4, 1)


def test_runs_handed_out_in_order_to_workers():
    assert schedule_seconds([], 2) == 0.0
    assert schedule_seconds([10, 10, 10, 10], 2) == 20  # two pairs
    assert schedule_seconds([30, 10, 10, 10], 2) == 30  # the long one, beside three short ones
    assert schedule_seconds([10, 10, 30], 2) == 40  # in order: the long one comes last
    assert schedule_seconds([5, 7], 1) == 12


def test_depth_points_put_ours_beside_the_papers_deeper_rows():
    st = studies.Depth(depths=[1, 6], output_only=True)
    summary = pd.DataFrame([{"row": r, "task": "listops", "metric": m, "mean": v, "std": 1.0}
                            for r, v in zip(st.rows, (21.0, 17.0, 28.0, 21.0))
                            for m in ("test_accuracy", "train_accuracy")])
    pts = st.by_depth(summary).set_index(["source", "init", "depth"])["mean"]
    assert pts[("ours", "pretrained", 6)] == 28.0 and pts[("ours", "random", 1)] == 17.0
    assert len(pts.loc["ours"]) == 4  # train accuracy is not a point
    # the paper's Table 12 rows, including depths MiniLM does not have
    assert pts[("paper", "pretrained", 12)] == 33 and pts[("paper", "random", 24)] == 17
    fig = plots.by_depth(st.by_depth(summary), title="t")
    lines = fig.axes[0].get_lines()
    assert {tuple(ln.get_xdata()) for ln in lines if ln.get_linestyle() == "-"} == {(1, 6)}


def test_a_partial_reproduce_keeps_the_record_of_the_others(tmp_path):
    from fptlib.study.notebooks import _merged
    (tmp_path / "reproduce_summary.json").write_text(json.dumps({"notebooks": [
        {"notebook": "01_a.ipynb", "status": "ok", "wall_seconds": 5},
        {"notebook": "02_b.ipynb", "status": "failed", "error": "x"}]}))
    m = _merged(tmp_path, {"notebooks": [{"notebook": "02_b.ipynb", "status": "ok", "wall_seconds": 3}],
                           "failed": []})
    assert [e["notebook"] for e in m["notebooks"]] == ["01_a.ipynb", "02_b.ipynb"]
    assert m["failed"] == [] and m["this_invocation"] == ["02_b.ipynb"]


def test_every_study_parameter_has_its_doc_in_the_field():
    """notebooks/_make.py writes each parameter's comment from the field's metadata: none may lack one."""
    import dataclasses

    from fptlib.study import Converged
    missing = [(cls.__name__, f.name) for cls in [*ALL, Converged] for f in dataclasses.fields(cls)
               if not f.metadata.get("doc")]
    assert not missing, missing


@pytest.mark.parametrize("cls, param, value, name, table", [
    (studies.Ablation, "init", "pretrained", "table15_ablation_pretrained", "table15"),
    (studies.Ablation, "init", "random", "table21_ablation_random", "table21"),
    (studies.Depth, "output_only", False, "table11_depth", "table11"),
    (studies.Depth, "output_only", True, "table12_depth_output_only", "table12"),
])
def test_a_declared_variant_names_its_table(cls, param, value, name, table):
    st = cls(scale="cpu", **{param: value})
    assert (st.name, st.paper_table) == (name, table) and table[5:] in st.title
    assert dataclasses.replace(st, **{param: value}).name == name  # what the notebooks do for the second table


def test_rows_that_follow_from_the_parameters():
    assert studies.Depth(scale="cpu", depths=[2]).rows == ["2 layers, pretrained", "2 layers, random"]
    assert studies.LRSweep(scale="cpu", lrs=[1e-3]).rows == [f"{s}, lr 0.001" for s in studies.LRSweep.SETTINGS]
