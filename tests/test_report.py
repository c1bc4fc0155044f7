"""The summary report (fptlib.study.report, notebook 00): built from result files only, every number
labelled with its scale and backbone, beside the paper's; absent tables and data said so, never a number."""
import base64
import json
import math
import re
import subprocess
from html import unescape

import pandas as pd
import papermill as pm
import pytest
from conftest import LONG_WAIT

from fptlib.config import PRESETS
from fptlib.paths import figures_dir, results_dir
from fptlib.study import report
from fptlib.study.catalogue import expected_tables

SCALE = "smoke"
CSV_COLUMNS = ["study", "row", "task", "metric", "mean", "std", "n_seeds", "seeds", "backbone", "steps", "scale",
               "provenance", "paper", "paper_source", "note"]
SOURCE = "Lu et al. 2021 (arXiv 2103.05247v2) Table 2, via shared/reference/paper.md §2.2, row 'FPT'"
ABSENT = "data not available offline: CIFAR-10 not in the data directory: run `fpt data fetch cifar10`"


def _line(row, task, metric="test_accuracy", mean=None, std=None, backbone="minilm", paper=None, note=""):
    measured = mean is not None
    return {"study": "table01_02", "row": row, "task": task, "metric": metric, "mean": mean, "std": std,
            "n_seeds": 3 if measured else None, "seeds": "0,1,2" if measured else None,
            "backbone": backbone if measured else None, "steps": 20 if measured else None, "scale": SCALE,
            "provenance": None, "paper": paper, "paper_source": SOURCE if measured else None, "note": note}


def fake_results(scale=SCALE) -> dict:
    """A results tree as notebook 01 would leave it (one study table, two figures), plus a CSV of
    another shape (notebook 08's speed-ups) and a figure no table claims."""
    tables, figs = results_dir(scale) / "tables", figures_dir(scale)
    tables.mkdir(parents=True)
    figs.mkdir(parents=True)
    lines = [_line("FPT", "bit-xor", mean=97.1234, std=1.2345, paper=93.7),
             _line("FPT", "bit-memory", metric="test_masked_accuracy", mean=61.4495, std=1.0082),
             _line("LSTM", "bit-xor", mean=88.4444, std=0.5555, backbone="lstm", paper=50.1),
             _line("FPT", "cifar10", note=ABSENT), _line("LSTM", "cifar10", note=ABSENT)]
    pd.DataFrame(lines, columns=CSV_COLUMNS).to_csv(tables / "table01_02.csv", index=False, float_format="%.4f")
    (tables / "table01_02.md").write_text(
        "Test accuracy (%), mean ± std over seeds [0, 1, 2]. Ours: scale `smoke`, backbone minilm.\n\n"
        "| | Bit XOR | CIFAR-10 |\n|---|---|---|\n"
        "| FPT | 97.1 ± 1.2 (paper 93.7) | data not available offline |\n"
        "| LSTM | 88.4 ± 0.6 (paper 50.1) | data not available offline |\n")
    pd.DataFrame({"task": ["mnist"], "seed": [0], "first_epoch_s": [4.0], "later_epoch_s": [0.5],
                  "speedup": [8.0]}).to_csv(tables / "table10_cache_speedup.csv", index=False)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = {}
    for name in ("table01_02_bars", "scratch_plot"):
        fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
        ax.plot([0, 1], [0, 1])
        paths[name] = figs / f"{name}.png"
        fig.savefig(paths[name])
        plt.close(fig)
    return paths


def _summary_row(html: str, row: str, task: str, metric: str = "test_accuracy") -> str:
    hits = [tr for tr in re.findall(r"<tr[^>]*>.*?</tr>", html, flags=re.S)
            if f"<td>{row}</td><td>{task}</td><td>{metric}</td>" in tr]
    assert len(hits) == 1, hits
    return hits[0]


def test_report_has_our_number_the_papers_the_figure_and_what_is_absent():
    figs = fake_results()
    built = report.build(SCALE)
    assert built["html"] == results_dir(SCALE) / "report.html"
    html = built["html"].read_text()
    # header: the scale, what it means, which tables exist and which have not run yet
    assert f"scale <code>{SCALE}</code>" in html and PRESETS[SCALE]["about"] in html and "Generated " in html
    assert built["found"] == ["table01_02", "table10_cache_speedup"]
    assert "table09_stats_init" in built["absent"] and "table01_02" not in built["absent"]
    absent_row = re.search(r"<tr><td>07</td><td><code>table09_stats_init</code></td>.*?</tr>", html).group(0)
    assert "not run yet" in absent_row
    # the summary line: our mean ± std, the paper's number, labelled with scale and backbone
    fpt = _summary_row(html, "FPT", "bit-xor")
    assert "97.1 ± 1.2" in fpt and ">93.7<" in fpt and f"<td>{SCALE}</td><td>minilm</td>" in fpt
    lstm = _summary_row(html, "LSTM", "bit-xor")
    assert "88.4 ± 0.6" in lstm and ">50.1<" in lstm and f"<td>{SCALE}</td><td>lstm</td>" in lstm
    assert ">none<" in _summary_row(html, "FPT", "bit-memory", "test_masked_accuracy")  # the paper gives none
    # the table's Markdown rendered, then its figure embedded (not linked)
    assert "<td>97.1 ± 1.2 (paper 93.7)</td>" in html
    b64 = base64.b64encode(figs["table01_02_bars"].read_bytes()).decode()
    section = html[html.index('<section id="table01_02">'):]
    assert f"data:image/png;base64,{b64}" in section.split("</section>")[0]
    assert 'src="data:image/png;base64,' + base64.b64encode(figs["scratch_plot"].read_bytes()).decode() in html
    assert "Other figures" in html
    assert "file://" not in html and 'src="/' not in html and "<link" not in html  # self-contained
    # a CSV of another shape is shown in its own section, as a table
    assert '<section id="table10_cache_speedup">' in html and "first_epoch_s" in html


def test_report_opens_with_the_study_at_a_glance_then_the_key_figures():
    figs = fake_results()
    html = report.build(SCALE)["html"].read_text()
    marks = ['id="at-a-glance"', 'id="key-figures"', 'id="tables"', '<details id="summary">',
             '<section id="table01_02">']
    assert [html.index(m) for m in marks] == sorted(html.index(m) for m in marks)  # in this order
    glance = unescape(html[html.index(marks[0]):html.index(marks[1])])
    # one line per study table: its rows, the paper's numbers and ours task by task, a verdict in words
    assert '<a href="#table01_02">' in glance and "FPT / LSTM" in glance and "3 seeds per row" in glance
    assert "Bit XOR: 93.7 / 50.1" in glance and "Bit XOR: 97.1 / 88.4" in glance
    # 97.1 vs 88.4 over 3 seeds each, spread sqrt((1.2345² + 0.5555²) / 2) = 0.96: band 1.6, decided
    assert ">matches<" in glance and "1 of 1 pair of rows decided, in the paper's order." in glance
    assert "Ours for FPT: 3.4 points above the paper (Bit XOR)" in glance
    assert "table10_cache_speedup" not in glance  # not a study table
    key = html[html.index(marks[1]):html.index(marks[2])]
    assert base64.b64encode(figs["table01_02_bars"].read_bytes()).decode() in key
    assert "scratch_plot" not in key
    # a laptop screen: every table in a box of its own that scrolls sideways, never the page
    assert html.count("<table") == html.count('<div class="scroll"><table') > 3
    assert "max-width: 100%" in html and '<meta name="viewport"' in html


def _summary(lines) -> pd.DataFrame:
    """Summary lines from (table, row, task, mean, paper, note[, std, n_seeds]); one seed unless given."""
    rows = [{"table": t, "row": r, "task": k, "metric": "test_accuracy", "ours": "" if m is None else f"{m}",
             "mean": math.nan if m is None else m, "std": math.nan if not more else more[0],
             "n_seeds": 1.0 if not more else float(more[1]), "paper": math.nan if p is None else p,
             "scale": SCALE, "backbone": "minilm", "steps": "20", "seeds": "0", "note": note,
             "paper_source": ""} for t, r, k, m, p, note, *more in lines]
    return pd.DataFrame(rows, columns=report.SUMMARY_COLUMNS)


def test_glance_says_where_our_order_of_rows_differs_from_the_papers():
    summary = _summary([
        ("t1", "A", "bit-xor", 90.0, 80.0, ""), ("t1", "B", "bit-xor", 70.0, 85.0, ""),  # the other way round
        ("t1", "A", "mnist", 50.0, 60.0, ""), ("t1", "B", "mnist", 50.4, 60.0, ""),  # level in both
        ("t1", "C", "mnist", 40.0, None, ""),  # the paper gives no number: not compared
        ("t2", "A", "listops", 30.0, None, ""), ("t2", "B", "listops", 35.0, None, ""),
        ("t3", "A", "cifar10", None, None, "data not available offline: CIFAR-10"),
        # three seeds: the seed spread of Bit XOR (2: band 5.7 at one seed each) and MNIST (0.1: band 0.28)
        ("t4", "S", "bit-xor", 60.0, None, "", 2.0, 3), ("t4", "S", "mnist", 60.0, None, "", 0.1, 3)])
    tables = [report.TableFiles("t1", "Table one"), report.TableFiles("t2", "Table two")]
    t1, t2, t3, _ = report.glance(summary, report.table_titles(tables))
    assert (t1.title, t1.rows, t1.paper, t1.ours) == (
        "Table one", ["A", "B"], ["Bit XOR: 80 / 85", "MNIST: 60 / 60"], ["Bit XOR: 90 / 70", "MNIST: 50 / 50.4"])
    assert (t1.verdict, t1.pairs_in_order, t1.pairs, t1.pairs_against, t1.pairs_noise) == ("mostly", 1, 2, 1, 0)
    assert "2 of 2 pairs of rows decided, 1 in the paper's order, 1 against it (Bit XOR: paper A 80 < B 85, " \
           "ours 90 > 70)" in t1.words
    assert "Ours for A: level with the paper (mean over 2 tasks)" in t1.words
    assert "1 more row without the paper's number" in t1.meta
    assert (t2.verdict, t2.paper, t2.ours) == ("none", [], ["ListOps: 30 / 35"])
    assert "no number" in t2.words and "ListOps: B (35; over A 30: noise not measured)" in t2.words
    assert (t3.title, t3.verdict, t3.ours) == ("t3", "none", [])  # a table no catalogue entry names
    assert "Not measured here: data not available offline" in t3.words and not re.search(r"\d+\.\d", t3.words)
    html = unescape(report.render_html(SCALE, tables, summary))
    assert "1 of 2 decided pairs of rows come in the paper's order</strong>, 0 within noise, over the table" in html


def _noise_summary() -> pd.DataFrame:
    """Bit XOR's seed spread: two 3-seed lines, std 3 (X, also shown in a second table: the same runs) and
    std 2 (C): pooled sqrt((2·9 + 2·4) / 4) = 2.55, a band of 2 × 2.55 × √(1/1 + 1/1) = 7.2 between two
    1-seed rows and of 5.9 between a 1-seed and a 3-seed row. No line of ListOps has two seeds."""
    return _summary([
        ("t0", "X", "bit-xor", 60.0, None, "", 3.0, 3), ("t9", "X", "bit-xor", 60.0, None, "", 3.0, 3),
        ("t1", "A", "bit-xor", 90.0, 80.0, ""), ("t1", "B", "bit-xor", 88.0, 85.0, ""),  # against the paper by 2
        ("t1", "C", "bit-xor", 96.5, 90.0, "", 2.0, 3),  # 6.5 over A: decided only because C has 3 seeds
        ("t2", "A", "bit-xor", 90.0, 80.0, ""), ("t2", "B", "bit-xor", 86.0, 85.0, ""),  # against by 4 < 7.2
        ("t3", "A", "bit-xor", 90.0, 80.0, ""), ("t3", "B", "bit-xor", 70.0, 85.0, ""),  # against by 20 > 7.2
        ("t3", "A", "listops", 40.0, 38.0, ""), ("t3", "B", "listops", 30.0, 34.0, ""),
        ("t5", "A", "listops", 40.0, 38.0, ""), ("t5", "B", "listops", 30.0, 34.0, "")])


def test_seed_spread_pools_every_multi_seed_line_once():
    spread = report.seed_spread(_noise_summary())
    assert set(spread) == {"bit-xor"}  # ListOps: no line of two seeds or more
    assert spread["bit-xor"][0] == pytest.approx(math.sqrt(6.5))  # X counted once: with twice, sqrt(34 / 6)
    assert spread["bit-xor"][1] == [3]


def test_a_one_seed_difference_within_the_seed_spread_is_within_noise_not_against_the_paper():
    claims = {c.table: c for c in report.glance(_noise_summary(), {})}
    t1, t2 = claims["t1"], claims["t2"]
    assert (t1.verdict, t1.pairs, t1.pairs_in_order, t1.pairs_against, t1.pairs_noise) == ("yes", 3, 2, 0, 1)
    assert t1.words.startswith("2 of 3 pairs of rows decided, both in the paper's order; 1 within noise (Bit XOR, "
                               "A vs B: 1-seed difference 2 < 7.2 noise band).")
    assert t1.meta.startswith("1 seed (A, B), 3 seeds (C); seed spread from 3-seed rows")
    # nothing decided: the verdict is "within noise", never "differs", and says so in its own colour
    assert (t2.verdict, t2.pairs_in_order, t2.pairs_against, t2.pairs_noise) == ("noise", 0, 0, 1)
    assert t2.words.startswith("0 of 1 pair of rows decided; 1 within noise (Bit XOR, A vs B: 1-seed difference "
                               "4 < 7.2 noise band).")
    html = unescape(report.render_html(SCALE, [], _noise_summary()))
    row = re.search(r'<tr><td class="claim"><a href="#t2">.*?</tr>', html).group(0)
    assert '<span class="v v-noise">within noise</span>' in row and ".v-noise {" in html
    assert "<strong>2 of 3 decided pairs of rows come in the paper's order</strong>, 2 within noise, " \
           "2 with noise not measured, over the 4 tables" in html


def test_a_difference_well_outside_the_band_is_decided_and_a_task_without_seeds_is_not_measured():
    claims = {c.table: c for c in report.glance(_noise_summary(), {})}
    t3, t5 = claims["t3"], claims["t5"]
    assert (t3.verdict, t3.pairs, t3.pairs_against, t3.pairs_noise, t3.pairs_unmeasured) == ("no", 2, 1, 0, 1)
    assert t3.words.startswith("1 of 2 pairs of rows decided, against the paper's order (Bit XOR: paper A 80 < "
                               "B 85, ours 90 > 70); 1 with noise not measured (ListOps: no line of two seeds")
    assert t3.meta.startswith("1 seed per row; seed spread from 3-seed rows")
    # a task no multi-seed line measures decides nothing, and its line says why
    assert (t5.verdict, t5.pairs_in_order, t5.pairs_against, t5.pairs_unmeasured) == ("noise", 0, 0, 1)
    assert "0 of 1 pair of rows decided; 1 with noise not measured (ListOps" in t5.words
    assert t5.meta.startswith("1 seed per row,") and "spread from" not in t5.meta


def test_seed_noise_is_pooled_within_a_protocol_only():
    """Seeds of runs stopped at a fixed budget spread by how fast each learns, seeds of converged runs by
    where each ends: neither protocol's spread judges the other's tables."""
    budget = _noise_summary()  # Bit XOR spread sqrt(6.5) = 2.55 from its 3-seed budget lines
    converged = _summary([("c1", "A", "bit-xor", 95.0, 80.0, "", 0.3, 3),
                          ("c1", "B", "bit-xor", 93.0, 85.0, "", 0.3, 3)]).assign(protocol="converged")
    both = pd.concat([budget.assign(protocol="budget"), converged], ignore_index=True)
    claims = {c.table: c for c in report.glance(both, {})}
    # the budget tables read exactly as without the converged lines
    assert all(claims[c.table] == c for c in report.glance(budget, {}))
    # the converged pair is judged by its own spread, 0.3: a band of 2 × 0.3 × √(2/3) = 0.49 < 2 points
    assert (claims["c1"].pairs, claims["c1"].pairs_against, claims["c1"].pairs_noise) == (1, 1, 0)
    assert "trained to convergence" in claims["c1"].meta and "convergence" not in claims["t1"].meta
    # pooled with the budget lines (spread 1.8, band 3.0) the same 2 points would be within noise
    mixed = {c.table: c for c in report.glance(both.assign(protocol="budget"), {})}
    assert mixed["c1"].pairs_noise == 1 and mixed["t1"] != claims["t1"]


def test_identical_rows_with_no_seed_spread_are_within_noise_and_say_so_exactly():
    # every seed of both rows at 100 (Bit XOR at convergence): spread 0, difference 0, which is not a decided order
    claim = report.glance(_summary([("c", "A", "bit-xor", 100.0, 100.0, "", 0.0, 3),
                                    ("c", "B", "bit-xor", 100.0, 100.0, "", 0.0, 3)]), {})[0]
    assert (claim.pairs, claim.pairs_noise) == (1, 1)
    assert "3-seed difference 0 ≤ 0 noise band" in claim.words


_SAYS_DECIDED = re.compile(r"decided|within noise|noise not measured|nothing to decide|Not measured here")


@pytest.mark.parametrize("source", ["synthetic", "committed cpu results"])
def test_every_glance_line_states_its_seeds_and_whether_it_is_decided(source, monkeypatch):
    if source == "synthetic":
        claims = report.glance(_noise_summary(), {})
    else:
        monkeypatch.delenv("FPT_RESULTS_DIR")
        monkeypatch.delenv("FPT_FIGURES_DIR")
        tables = report.find_tables("cpu")
        claims = report.glance(report.summary_table("cpu", tables), report.table_titles(tables))
    assert len(claims) >= 5
    for c in claims:
        assert re.search(r"\b\d+ seeds?\b|no seeds run", c.meta), c
        assert _SAYS_DECIDED.search(c.words), c
        assert c.pairs == c.pairs_in_order + c.pairs_against + c.pairs_noise + c.pairs_unmeasured
        if c.pairs:
            assert c.words.startswith(f"{c.pairs_in_order + c.pairs_against} of {c.pairs} pair"), c
            assert (c.verdict == "noise") == (2 * (c.pairs_in_order + c.pairs_against) < c.pairs), c


def test_summary_csv_has_one_line_per_table_row_task_metric():
    fake_results()
    built = report.build(SCALE)
    s = pd.read_csv(built["csv"], dtype={"note": str, "ours": str, "steps": str})  # steps: "400" or "400,800"
    assert list(s.columns) == report.SUMMARY_COLUMNS
    assert set(zip(s.table, s.row, s.task, s.metric)) == {
        ("table01_02", "FPT", "bit-xor", "test_accuracy"), ("table01_02", "FPT", "bit-memory", "test_masked_accuracy"),
        ("table01_02", "LSTM", "bit-xor", "test_accuracy"), ("table01_02", "FPT", "cifar10", "test_accuracy"),
        ("table01_02", "LSTM", "cifar10", "test_accuracy")}  # the speed-up CSV is not a study table
    fpt = s[(s.row == "FPT") & (s.task == "bit-xor")].iloc[0]
    assert (fpt["mean"], fpt["std"], fpt["paper"], fpt["ours"]) == (97.1234, 1.2345, 93.7, "97.1 ± 1.2")
    assert (fpt["scale"], fpt["backbone"], fpt["n_seeds"], str(fpt["steps"])) == (SCALE, "minilm", 3, "20")
    assert "Lu et al. 2021" in fpt["paper_source"] and "via" not in fpt["paper_source"]
    assert s.scale.eq(SCALE).all()
    assert built["summary"].equals(report.summary_table(SCALE))  # the DataFrame the notebook shows
    md = built["md"].read_text()
    assert "| table01_02 | FPT | bit-xor | test_accuracy | 97.1 ± 1.2 | 93.7 | smoke | minilm | 20 |" in md


def test_data_not_available_line_carries_no_number():
    fake_results()
    built = report.build(SCALE)
    s = pd.read_csv(built["csv"], dtype={"note": str, "ours": str, "steps": str})
    absent = s[s.task == "cifar10"]
    assert len(absent) == 2 and absent.note.str.startswith("data not available offline").all()
    assert absent[["mean", "std", "n_seeds", "paper", "ours", "steps", "backbone"]].isna().all().all()
    tr = _summary_row(built["html"].read_text(), "FPT", "cifar10")
    assert "not measured" in tr and "data not available offline" in tr
    assert not re.search(r"\d+\.\d", tr)  # no number of any kind on that line
    md_line = next(line for line in built["md"].read_text().splitlines() if "| FPT | cifar10 |" in line)
    assert "not measured" in md_line and not re.search(r"\d+\.\d", md_line)


def test_empty_results_dir_says_nothing_has_run():
    built = report.build(SCALE)  # neither results/ nor figures/ exist
    html = built["html"].read_text()
    assert "Nothing has run yet" in html
    assert built["found"] == [] and built["absent"] == [name for _, name, _ in expected_tables(SCALE)]
    assert html.count("not run yet") >= len(expected_tables(SCALE))
    assert built["summary"].empty and "<img" not in html
    assert pd.read_csv(built["csv"]).empty
    assert "Nothing has run yet" in built["md"].read_text()


def test_report_never_trains_and_writes_only_its_three_files(monkeypatch):
    import fptlib
    import fptlib.runs.local
    import fptlib.training
    import fptlib.training.loop

    def forbidden(*a, **k):
        raise AssertionError("the report must not train")
    monkeypatch.setattr(fptlib.training, "train", forbidden)
    monkeypatch.setattr(fptlib.training.loop, "train", forbidden)
    monkeypatch.setattr(fptlib.runs.local, "train", forbidden)
    monkeypatch.setattr(fptlib, "train", forbidden)
    fake_results()
    roots = [results_dir(SCALE).parent, figures_dir(SCALE).parent]
    before = {p: p.read_bytes() for r in roots for p in r.rglob("*") if p.is_file()}
    built = report.build(SCALE)
    after = {p: p.read_bytes() for r in roots for p in r.rglob("*") if p.is_file()}
    assert set(after) - set(before) == {built["html"], built["csv"], built["md"]}  # no runs: no compute_time
    assert all(after[p] == data for p, data in before.items())  # every input left as it was
    assert not (results_dir(SCALE) / "runs").exists()
    report.build(SCALE)  # a rebuild replaces the summary, which is never read as a study table
    assert "summary" not in report.build(SCALE)["found"]


def test_malformed_table_and_figure_are_reported_not_fatal(reliability):
    fake_results()
    tables, figs = results_dir(SCALE) / "tables", figures_dir(SCALE)
    (tables / "table10_cache_speedup.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    (figs / "table01_02_curves.png").write_text("not a png")
    md = (tables / "table01_02.md").read_text()
    (tables / "table01_02.md").write_text(md + "\n<script>alert(1)</script>\n")
    html = report.build(SCALE)["html"].read_text()
    assert "table10_cache_speedup.csv could not be read" in html
    assert "table01_02_curves.png is not a PNG file" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "97.1 ± 1.2" in html  # the rest of the report is intact
    reliability.bad_input("an unreadable table CSV", kind="corrupt data")
    reliability.bad_input("a figure that is not a PNG", kind="corrupt data")
    reliability.bad_input("a table holding a <script>", kind="corrupt data")


def test_notebook_00_parameters_and_storage(repo_root):
    nb_path = repo_root / "notebooks" / "00_summary.ipynb"
    assert list(pm.inspect_notebook(str(nb_path))) == ["scale"]
    cells = json.loads(nb_path.read_text())["cells"]
    assert [c["id"] for c in cells] == [f"cell-{i:02d}" for i in range(len(cells))]
    assert cells[1]["metadata"]["tags"] == ["parameters"]
    assert "".join(cells[1]["source"]).startswith('scale: str = "cpu"')


@pytest.mark.slow
def test_notebook_00_runs_through_fpt_reproduce_on_a_fake_tree(fpt_cmd, tmp_path, monkeypatch):
    res, fig = tmp_path / "res", tmp_path / "fig"
    monkeypatch.setenv("FPT_RESULTS_DIR", str(res))
    monkeypatch.setenv("FPT_FIGURES_DIR", str(fig))
    fake_results()
    r = subprocess.run(fpt_cmd + ["reproduce", "--scale", SCALE, "--only", "00", "--results-dir", str(res),
                                  "--figures-dir", str(fig)], capture_output=True, text=True, timeout=LONG_WAIT)
    assert r.returncode == 0, r.stdout + r.stderr
    html = (res / SCALE / "report.html").read_text()
    assert "97.1 ± 1.2" in html and "data:image/png;base64," in html
    assert not (res / SCALE / "runs").exists()  # nothing trained
    executed = json.loads((res / SCALE / "executed" / "00_summary.ipynb").read_text())
    text = json.dumps([c.get("outputs", []) for c in executed["cells"]], ensure_ascii=False)
    assert "report.html" in text and "97.1 ± 1.2" in text
    assert json.loads((res / SCALE / "reproduce_summary.json").read_text())["failed"] == []


def _result(run_dir, wall, build=None):
    run_dir.mkdir(parents=True)
    r = {"wall_seconds": wall} | ({"feature_cache": {"build_seconds": build}} if build else {})
    (run_dir / "result.json").write_text(json.dumps(r))


def test_compute_time_counts_a_shared_run_once_in_the_first_notebook_that_needs_it():
    from fptlib.study import studies
    from fptlib.study.base import Tables1And2
    from fptlib.study.compute_time import compute_times
    from fptlib.training import run_dir_for
    fpt_mnist = next(r.config for r in Tables1And2(scale=SCALE, tasks=["mnist"], seeds=[0]).runs() if r.row == "FPT")
    _result(run_dir_for(fpt_mnist), 100.0)  # notebook 01's, reused by 02, 07, 10, ...
    cached = next(r.config for r in studies.OutputOnly(scale=SCALE, tasks=["mnist"]).runs() if r.row == "Output only")
    _result(run_dir_for(cached), 2.0, build=30.0)
    times = compute_times(SCALE).set_index("notebook")
    assert times.loc["01", "train_seconds"] == 100.0 and times.loc["01", "computed"] == 1
    assert times.loc["07", "computed"] == 0 and times.loc["07", "runs"] > times.loc["07", "new_runs"]
    assert times.loc["08", "train_seconds"] == 32.0  # the cache build counts: it is part of the run
    assert times.loc["01", "side_by_side_seconds"] == 100.0  # one run: no one to share the cores with
    md = report.compute_time_markdown(times.reset_index(), SCALE)
    assert "| 01 | " in md and "| all |  | " in md
    built = report.build(SCALE)
    assert "compute_time" in built["found"]
    assert "| 08 | " in (results_dir(SCALE) / "tables" / "compute_time.md").read_text()


def test_gallery_shows_each_table_then_its_figures_with_repository_links(tmp_path):
    paths = fake_results()
    md = report.gallery_markdown(SCALE, base=tmp_path)
    head = md.index("#### Tables 1-2")
    assert md.index("97.1 ± 1.2 (paper 93.7)") > head
    assert "![table01_02_bars](figures/smoke/table01_02_bars.png)" in md
    assert md.index("table01_02_bars.png") > md.index("97.1 ± 1.2")
    assert paths["scratch_plot"].exists() and "scratch_plot" not in md  # no table: not in the gallery


def test_readme_gallery_block_is_replaced_and_a_readme_without_one_is_refused(tmp_path, reliability):
    fake_results()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n{report.README_START}\nold numbers\n{report.README_END}\n\n## after\n")
    assert report.update_readme(readme, SCALE)
    text = readme.read_text()
    assert "old numbers" not in text and "97.1 ± 1.2" in text and text.endswith("## after\n")
    assert text.startswith("# x\n\nintro\n")
    assert not report.update_readme(readme, SCALE)  # already current: untouched
    bare = tmp_path / "BARE.md"
    bare.write_text("# no block\n")
    with pytest.raises(ValueError, match="has no gallery block"):
        report.update_readme(bare, SCALE)
    reliability.bad_input("a README without its gallery block", kind="parameter")


def test_the_committed_results_page_shows_the_committed_cpu_results(repo_root, monkeypatch):
    """docs/results.md's gallery is what `fpt readme` makes of results/cpu and figures/cpu as
    committed: a number changed in one and not the other fails here."""
    monkeypatch.delenv("FPT_RESULTS_DIR")
    monkeypatch.delenv("FPT_FIGURES_DIR")
    page = repo_root / "docs" / "results.md"
    assert report.readme_gallery_block(page) == report.gallery_markdown("cpu", base=page.parent)


def test_the_report_answers_notebook_15s_questions_against_the_seeds_noise():
    # MNIST spread 1.0 over 3 seeds: the band between two 3-seed arms is 2 × 1 × √(2/3) = 1.63 points
    name = "pretraining_sources"
    lines = [(name, r, "mnist", m, None, "", 1.0, 3) for r, m in
             (("Language", 90.0), ("Self-pretrained", 89.5), ("Random", 80.0), ("Attention pretrained", 93.0))]
    html = unescape(report.render_html(SCALE, [], _summary(lines)))
    section = re.search(r'<section id="gain-sources">.*?</section>', html, flags=re.S).group(0)
    assert ("<strong>Is it language? Other sources of the same weights against language</strong>: MNIST (Language "
            "90.0, 3 seeds): decided below: Random 80.0; within noise of it: Self-pretrained 89.5.") in section
    assert "decided above: Attention pretrained 93.0." in section
    assert 'id="gain-sources"' not in unescape(report.render_html(SCALE, [], _noise_summary()))
