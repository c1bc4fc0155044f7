"""Notebook 15's study (beyond the paper): each arm's learning rate chosen on validation at the first seed,
the other seeds at that rate, and the two questions answered against the seeds' noise."""
from __future__ import annotations

import json

import pandas as pd

from fptlib.study.results.compare import level_with
from fptlib.study.sources import ARMS, QUESTIONS, PretrainingSources
from fptlib.training import RunDir


def _finish(cfg, best_val: float) -> None:
    """A finished run's result.json with the one number the choice reads (the choice is what is tested)."""
    d = RunDir.of(cfg)
    d.path.mkdir(parents=True, exist_ok=True)
    d.result_file.write_text(json.dumps({"best_val_accuracy": best_val}))


def _study(**kw):
    return PretrainingSources(scale="smoke", tasks=["bit-xor"], seeds=[0, 1, 2], lrs=[1e-4, 3e-4, 1e-3],
                              progress=False, **kw)


def test_each_arm_chooses_its_rate_on_validation_and_its_other_seeds_run_at_it():
    st = _study()
    sel = st.selection_runs()
    assert len(sel) == len(ARMS) * 3 and {r.config.seed for r in sel} == {0}
    assert {r.config.lr for r in sel} == {1e-4, 3e-4, 1e-3}
    assert st.final_runs() == [] and len(st.planned_runs()) == len(ARMS) * (3 + 2)  # before any choice
    vals = {"Language": (0.7, 0.9, 0.8), "Random": (0.6, 0.6, 0.5)}  # Random: a tie, the first rate wins
    for row, kw in ARMS.items():
        for lr, v in zip(st.lrs, vals.get(row, (0.5, 0.5, 0.9))):
            if row != "Shuffled" or lr != 1e-3:  # Shuffled's last rate has not finished
                _finish(st.config("bit-xor", 0, **kw, lr=lr), v)
    chosen = st.chosen_lrs()
    assert chosen[("bit-xor", "Language")] == 3e-4 and chosen[("bit-xor", "Random")] == 1e-4
    assert chosen[("bit-xor", "No transformer")] == 1e-3 and ("bit-xor", "Shuffled") not in chosen
    final = st.final_runs()
    assert {(r.row, r.config.seed) for r in final} == {(row, s) for row in ARMS if row != "Shuffled" for s in (0, 1, 2)}
    assert all(r.config.lr == chosen[("bit-xor", r.row)] for r in final)
    seed0 = {r.config.run_id() for r in final if r.config.seed == 0}
    assert seed0 <= {r.config.run_id() for r in sel}  # the chosen selection run is the table's first seed
    planned = st.planned_runs()
    assert len(planned) == len({r.config.run_id() for r in planned}) == len(ARMS) * (3 + 2)
    table = st.lr_markdown()
    assert "90.0 *" in table and "| – |" in table.replace("–  |", "– |")


def test_the_study_trains_the_selection_before_the_other_seeds(monkeypatch):
    import fptlib.study.sources as sources
    calls = []

    def fake_execute(runs, **kw):
        calls.append(runs)
        return pd.DataFrame()
    monkeypatch.setattr(sources, "execute", fake_execute)
    st = _study()
    st.execute()
    # the self-pretrained arm first (its source's weights are not committed), selection then other seeds; then
    # the others; nothing chosen yet, so no other seed runs; the table's runs last
    assert [len(c) for c in calls] == [3, 0, (len(ARMS) - 1) * 3, 0, 0]
    assert {r.row for r in calls[0]} == {"Self-pretrained"} and "Self-pretrained" not in {r.row for r in calls[2]}
    for kw in ARMS.values():
        _finish(st.config("bit-xor", 0, **kw, lr=1e-3), 0.9)
        _finish(st.config("bit-xor", 0, **kw, lr=1e-4), 0.5)
        _finish(st.config("bit-xor", 0, **kw, lr=3e-4), 0.5)
    calls.clear()
    st.execute()
    assert [len(c) for c in calls] == [3, 3, (len(ARMS) - 1) * 3, (len(ARMS) - 1) * 3, len(ARMS) * 3]
    assert {r.row for r in calls[1]} == {"Self-pretrained"} and {r.config.seed for r in calls[1]} == {0, 1, 2}


def _lines(rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{"row": r, "task": "mnist", "metric": "test_accuracy", "mean": m, "std": 1.0,
                          "n_seeds": 3} for r, m in rows.items()])


def test_each_question_says_which_arms_are_level_with_language_within_noise():
    # spread 1.0 over 3 seeds each: the noise band is 2 x 1.0 x sqrt(2/3) = 1.63 points
    lines = _lines({"Language": 90.0, "Self-pretrained": 89.0, "Statistics": 85.0, "Random": 95.0})
    rel, words = level_with(lines, "Language", ["Self-pretrained", "Statistics", "Random", "Shuffled"])
    got = dict(zip(rel.row, rel.relation))
    assert got == {"Self-pretrained": "level (within noise)", "Statistics": "behind (decided)",
                   "Random": "ahead (decided)"}  # Shuffled did not run: no line
    assert words == ("MNIST (Language 90.0, 3 seeds): decided above: Random 95.0; decided below: Statistics 85.0; "
                     "within noise of it: Self-pretrained 89.0.")
    assert level_with(lines.iloc[:0], "Language", ["Random"])[1] == "not measured yet."
    one = lines.assign(n_seeds=1, std=float("nan"))
    assert "noise not measured: Random 95.0" in level_with(one, "Language", ["Random"])[1]
    for ref, rows in QUESTIONS.values():
        assert ref == "Language" and set(rows) < set(ARMS)
