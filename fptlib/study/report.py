"""The summary report of one scale: every table the notebooks wrote, in one self-contained HTML file.

Reads only what the notebooks left in `results/<scale>/tables/` (NAME.csv, NAME.md) and
`figures/<scale>/` (*.png); it never trains, evaluates or reruns anything. It writes:

- `results/<scale>/report.html`, one self-contained file (PNG embedded as base64) that fits a laptop
  screen's width (no sideways scrolling at 1,280 px; wide tables scroll in their own box): a header (the
  scale and what it means, when the report was made), *the study at a glance* (`glance`: one line per
  study table, the paper's numbers beside ours task by task and whether our rows come in the paper's
  order, each pair of rows decided or within noise against its task's seed spread, `seed_spread`, and
  each line with the seeds it rests on), the key figures (`KEY_FIGURES`), the index of every expected
  table (found or not run yet), the summary table (collapsed), then every table's Markdown rendered to
  HTML in notebook order, each followed by its figures;
- `results/<scale>/tables/summary.csv` and `summary.md`: the summary table, one line per
  (table, row, task, metric) with our mean ± std beside the paper's number, each line labelled
  with the scale and the backbone it ran at. A line the notebook could not measure (its `note`
  says why, e.g. "data not available offline") carries that note and no number;
- `results/<scale>/tables/compute_time.csv` and `.md` (once any run exists): what each notebook
  costs to compute, from the runs' result files (`compute_time.compute_times`).

`gallery_markdown` and `update_readme` put every table and figure of a scale into docs/results.md
(`fpt readme`).

Notebook 00 calls `build(scale)`; `fpt reproduce` runs it after all the others.
"""
from __future__ import annotations

import base64
import html
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import PRESETS
from ..io import write_text_atomic
from ..paths import PROJ_ROOT, figures_dir, portable, results_dir
from .attention import FIGURE_PREFIX
from .base import Tables1And2
from .catalogue import SUMMARY_TABLE, expected_tables
from .compute_time import compute_times
from .paper import TASK_TITLES
from .studies import LSTMBaseline

# Columns a study table's CSV has (study.base.Study.summary); other CSVs are shown, not summarised.
STUDY_COLUMNS = {"study", "row", "task", "metric", "mean"}
SUMMARY_COLUMNS = ["table", "row", "task", "metric", "ours", "mean", "std", "n_seeds", "paper", "scale",
                   "backbone", "steps", "seeds", "note", "paper_source"]


@dataclass
class TableFiles:
    name: str
    title: str
    notebook: str = ""          # "" for a table no notebook is known to write
    csv: Path | None = None
    md: Path | None = None
    figures: list[Path] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.csv is not None or self.md is not None


def _tables_dir(scale: str) -> Path:
    return results_dir(scale) / "tables"


def find_tables(scale: str) -> list[TableFiles]:
    """Every expected table (found or not) in notebook order, then any other table found, each with
    its files and its figures. Figures belong to the table whose name is the longest prefix of theirs
    (`table01_02_bars.png` -> table01_02); figures no table claims go to a last entry named ''."""
    tdir = _tables_dir(scale)
    on_disk = {} if not tdir.is_dir() else {
        p.stem: p.parent for p in sorted(tdir.iterdir())
        if p.suffix in (".csv", ".md") and not p.name.startswith(".") and p.stem != SUMMARY_TABLE and p.is_file()}
    tables = [TableFiles(name, title, nb) for nb, name, title in expected_tables(scale)]
    known = {t.name for t in tables}
    tables += [TableFiles(name, name) for name in sorted(on_disk) if name not in known]
    for t in tables:
        csv, md = tdir / f"{t.name}.csv", tdir / f"{t.name}.md"
        t.csv = csv if csv.is_file() else None
        t.md = md if md.is_file() else None
    fdir = figures_dir(scale)
    pngs = sorted(p for p in fdir.glob("*.png") if not p.name.startswith(".")) if fdir.is_dir() else []
    other = TableFiles("", "Other figures")
    by_name = {t.name: t for t in tables}
    for p in pngs:
        owners = [n for n in by_name if p.stem == n or p.stem.startswith(n + "_")]
        (by_name[max(owners, key=len)] if owners else other).figures.append(p)
    return tables + ([other] if other.figures else [])


# ---- the summary table ------------------------------------------------------------------------

def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _num(v, metric: str = "") -> str:
    if _blank(v):
        return ""
    v = float(v)
    return f"{v:.1f}" if "accuracy" in metric or metric == "" else f"{v:.4g}"


def _ours(mean, std, n_seeds, metric) -> str:
    if _blank(mean):
        return ""
    if _blank(std) or (not _blank(n_seeds) and float(n_seeds) < 2):
        return _num(mean, metric) + ("" if _blank(n_seeds) else f" ({int(float(n_seeds))} seed)")
    return f"{_num(mean, metric)} ± {_num(std, metric)}"


def _short_source(src) -> str:
    """'Lu et al. 2021 (arXiv ...) Table 2, via docs/paper.md §2.2, row 'FPT'' ->
    'Lu et al. 2021 (arXiv ...) Table 2, row 'FPT''."""
    return "" if _blank(src) else re.sub(r", via [^,]*", "", str(src))


def _int_text(v) -> str:
    if _blank(v):
        return ""
    try:
        return str(int(float(v)))
    except (TypeError, ValueError):
        return str(v)


def _read_study_csv(path: Path) -> pd.DataFrame | None:
    """A study table's CSV, or None when the CSV has another shape (per-run tables, speed-ups)."""
    df = pd.read_csv(path, dtype={"seeds": str, "note": str, "backbone": str, "provenance": str})
    return df if STUDY_COLUMNS <= set(df.columns) else None


def summary_table(scale: str, tables: list[TableFiles] | None = None) -> pd.DataFrame:
    """One line per (table, row, task, metric) of every study table found, in notebook order: our
    mean ± std (`ours`, and `mean`, `std`, `n_seeds` as numbers), the paper's number (`paper`, empty
    where it gives none), and the `scale` and `backbone` of our runs. Lines that were not measured
    carry their `note` (e.g. 'data not available offline: ...') and no number at all."""
    tables = find_tables(scale) if tables is None else tables
    out = []
    for t in tables:
        if t.csv is None:
            continue
        try:
            df = _read_study_csv(t.csv)
        except Exception:  # noqa: BLE001 - an unreadable table is shown as such in the report
            continue
        if df is None:
            continue
        for r in df.to_dict("records"):
            metric = "" if _blank(r.get("metric")) else str(r["metric"])
            note = "" if _blank(r.get("note")) else str(r["note"])
            prov = "" if _blank(r.get("provenance")) else str(r["provenance"])
            measured = not note and not _blank(r.get("mean"))
            if not measured and not note:
                note = "no result"
            if prov:
                note = (note + "; " if note else "") + f"mixed versions: {prov}"
            out.append({
                "table": t.name, "row": str(r.get("row", "")), "task": str(r.get("task", "")), "metric": metric,
                "ours": _ours(r.get("mean"), r.get("std"), r.get("n_seeds"), metric) if measured else "",
                "mean": float(r["mean"]) if measured else math.nan,
                "std": float(r["std"]) if measured and not _blank(r.get("std")) else math.nan,
                "n_seeds": float(r["n_seeds"]) if measured and not _blank(r.get("n_seeds")) else math.nan,
                "paper": float(r["paper"]) if measured and not _blank(r.get("paper")) else math.nan,
                "scale": "" if _blank(r.get("scale")) else str(r["scale"]),
                "backbone": "" if _blank(r.get("backbone")) else str(r["backbone"]),
                "steps": _int_text(r.get("steps")) if measured else "",
                "seeds": "" if not measured or _blank(r.get("seeds")) else str(r["seeds"]),
                "note": note,
                "paper_source": _short_source(r.get("paper_source")) if measured else "",
            })
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _paper_text(row) -> str:
    if row["note"] and _blank(row["mean"]):
        return "–"  # not measured: nothing to compare
    return "none" if _blank(row["paper"]) else f"{row['paper']:g}"


def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def summary_markdown(summary: pd.DataFrame, scale: str) -> str:
    lines = [f"Summary at scale `{scale}` ({PRESETS.get(scale, {}).get('about', 'unknown scale')}). "
             "Ours: mean ± std over seeds (test accuracy in %, unless the metric says otherwise), at the "
             "scale and backbone of its line; paper: Lu et al. 2021 (GPT-2 base unless the source says "
             "otherwise), `none` where the paper gives no number; `–` where we have no number to compare.", ""]
    if summary.empty:
        return "\n".join(lines + [f"Nothing has run yet at scale `{scale}`: no tables in "
                                  f"{portable(str(_tables_dir(scale)))}.", ""])
    lines += ["| table | row | task | metric | ours | paper | scale | backbone | steps | note |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        ours = r["ours"] or ("not measured" if r["note"] else "")
        lines.append("| " + " | ".join(_md_cell(v) for v in (
            r["table"], r["row"], r["task"], r["metric"], ours, _paper_text(r), r["scale"] or "–",
            r["backbone"] or "–", r["steps"] or "–", r["note"])) + " |")
    return "\n".join(lines) + "\n"


# ---- the study at a glance --------------------------------------------------------------------

# The figures shown under "Key figures", in this order, those that exist: Tables 1-2 and Table 1's bars,
# then notebook 04's layer-1 attention maps.
KEY_FIGURES = tuple(Path(st().figure_name("bars")).stem for st in (Tables1And2, LSTMBaseline)) + tuple(
    f"{FIGURE_PREFIX[t]}_layer1" for t in ("bit-xor", "bit-memory"))
TIE_POINTS = 1.0  # two decided accuracies (in %) this close are level: their order is not a claim
NOISE_BAND = 2.0  # our two means differ beyond the seeds' noise when by more than 2 spreads × √(1/n₁ + 1/n₂)
_VERDICT_WORDS = {"yes": "matches", "mostly": "mostly", "partly": "partly", "no": "differs",
                  "noise": "within noise", "none": "ours only"}
_PAIR_STATUS = ("order", "against", "noise", "unmeasured")


@dataclass
class Claim:
    """One line of the study at a glance: a study table's rows, per task the paper's numbers and ours
    (rows joined by ' / ' in `rows` order), and whether our rows come in the paper's order where our seeds
    decide it: a pair of rows whose difference is within its task's seed noise decides nothing."""
    table: str
    title: str
    rows: list[str]
    paper: list[str]            # "Task: a / b" per task; [] when the paper gives no number here
    ours: list[str]
    verdict: str                # over the decided pairs: "yes", "mostly", "partly", "no"; "noise" when under half
    words: str                  # is decided; "none" when there is nothing to compare
    meta: str = ""              # our seeds per row (and where the seed spread comes from), backbones, ...
    pairs_in_order: int = 0     # pairs of rows (per task) decided, in the paper's order
    pairs: int = 0              # the pairs that have both numbers, decided or not
    pairs_against: int = 0      # decided, against the paper's order
    pairs_noise: int = 0        # within the seed noise of their task: not decided
    pairs_unmeasured: int = 0   # on a task no line of two seeds or more measures the noise of: not decided


@dataclass
class _Numbers:
    """One table's numbers for the glance, per (row, task): ours, the paper's and our seeds; per task the
    seed spread (`seed_spread`); and the metric."""
    ours: dict
    paper: dict
    seeds: dict
    spread: dict
    metric: str


@dataclass
class _Pair:
    task: str
    a: str
    b: str
    status: str                 # one of _PAIR_STATUS: decided in the paper's order or against it, within
    diff: float                 # noise, or noise not measured; diff: |ours a - ours b|
    band: float                 # the noise band diff is held against (nan where not measured)
    how: str = ""               # for "against": the paper's order and ours, in words


def _task_title(task: str) -> str:
    return TASK_TITLES.get(task, task)


def _tie(metric: str, a: float, b: float) -> float:
    return TIE_POINTS if "accuracy" in metric or metric == "" else 0.01 * max(abs(a), abs(b))


def _relation(metric: str, a: float, b: float) -> str:
    d = a - b
    return "≈" if abs(d) <= _tie(metric, a, b) else (">" if d > 0 else "<")


def _primary_metric(lines: pd.DataFrame) -> str:
    metrics = list(lines.metric)
    return "test_accuracy" if "test_accuracy" in metrics else max(metrics, key=metrics.count)


def _n(v: float, metric: str) -> str:
    """A number for the glance: one decimal, none when it is whole (100, 38.4)."""
    text = _num(v, metric)
    return text[:-2] if text.endswith(".0") else text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def seed_spread(summary: pd.DataFrame, metric: str = "test_accuracy") -> dict[str, tuple[float, list[int]]]:
    """Per task, how far one seed's `metric` strays at this scale: (the standard deviation over seeds pooled
    over every line of every table with two seeds or more, variance sum((n - 1) std²) / sum(n - 1); the
    seed counts of the lines pooled). A line shown in several tables (same row, task, mean, std and seeds)
    is the same runs and counts once. A task with no such line is absent: its noise is not measured."""
    m = summary[(summary.metric == metric) & (summary.n_seeds >= 2) & summary["std"].notna()
                & summary["mean"].notna()]
    m = m.assign(m4=m["mean"].round(4), s4=m["std"].round(4)).drop_duplicates(["row", "task", "m4", "s4", "n_seeds"])
    out = {}
    for task, g in m.groupby("task", sort=False):
        dof = g.n_seeds - 1
        out[task] = (math.sqrt(float((dof * g["std"] ** 2).sum() / dof.sum())), sorted({int(n) for n in g.n_seeds}))
    return out


def _decide(nums: _Numbers, task: str, a: str, b: str) -> tuple[str, float, float]:
    """('decided', 'noise' or 'unmeasured', |ours a - ours b|, the noise band) for our rows a and b on `task`:
    decided when the difference is over NOISE_BAND × the task's seed spread × √(1/n_a + 1/n_b)."""
    diff = abs(nums.ours[a, task] - nums.ours[b, task])
    if task not in nums.spread:
        return "unmeasured", diff, math.nan
    band = NOISE_BAND * nums.spread[task][0] * math.sqrt(1 / nums.seeds[a, task] + 1 / nums.seeds[b, task])
    return ("decided" if diff > band else "noise"), diff, band


def _pairs(nums: _Numbers, rows: list[str], tasks: list[str]) -> list[_Pair]:
    """Per task, every pair of rows with our number and the paper's for both: decided in the paper's order
    (the same relation, >, < or ≈ within TIE_POINTS), decided against it, within noise, or noise not measured."""
    out, m = [], nums.metric
    for task in tasks:
        have = [r for r in rows if (r, task) in nums.ours and (r, task) in nums.paper]
        for i, a in enumerate(have):
            for b in have[i + 1:]:
                status, diff, band = _decide(nums, task, a, b)
                p, o = (nums.paper[a, task], nums.paper[b, task]), (nums.ours[a, task], nums.ours[b, task])
                rp, ro = _relation(m, *p), _relation(m, *o)
                how = f"paper {a} {_n(p[0], m)} {rp} {b} {_n(p[1], m)}, ours {_n(o[0], m)} {ro} {_n(o[1], m)}"
                if status == "decided":
                    status = "order" if rp == ro else "against"
                out.append(_Pair(task, a, b, status, diff, band, how if status == "against" else ""))
    return out


def _level(ours: dict, paper: dict, row: str, tasks: list[str], metric: str) -> str:
    """How our first compared row stands against the paper's, on average over its tasks."""
    diffs = [(t, ours[row, t] - paper[row, t]) for t in tasks if (row, t) in ours and (row, t) in paper]
    if not diffs or "accuracy" not in metric:
        return ""
    mean = sum(d for _, d in diffs) / len(diffs)
    where = _task_title(diffs[0][0]) if len(diffs) == 1 else f"mean over {len(diffs)} tasks"
    if abs(mean) <= TIE_POINTS:
        return f" Ours for {row}: level with the paper ({where})."
    return f" Ours for {row}: {abs(mean):.1f} points {'below' if mean < 0 else 'above'} the paper ({where})."


def _pairs_words(pairs: list[_Pair], nums: _Numbers) -> str:
    """'3 of 4 pairs of rows decided, 2 in the paper's order, 1 against it (...); 1 within noise (...)'."""
    by = {s: [p for p in pairs if p.status == s] for s in _PAIR_STATUS}
    ok, bad = len(by["order"]), len(by["against"])
    words = f"{ok + bad} of {_plural(len(pairs), 'pair')} of rows decided"
    if ok + bad:
        every = "" if ok + bad == 1 else "both " if ok + bad == 2 else "all "
        words += (f", {every}in the paper's order" if not bad else f", {every}against the paper's order" if not ok
                  else f", {ok} in the paper's order, {bad} against it")
    if bad:
        firsts = [next(p for p in by["against"] if p.task == t) for t in dict.fromkeys(p.task for p in by["against"])]
        more = f"; {len(firsts) - 2} more task(s)" if len(firsts) > 2 else ""
        words += " (" + "; ".join(f"{_task_title(p.task)}: {p.how}" for p in firsts[:2]) + more + ")"
    if by["noise"]:
        p, m = max(by["noise"], key=lambda q: q.diff), nums.metric
        seeds = sorted({nums.seeds[p.a, p.task], nums.seeds[p.b, p.task]})
        words += (f"; {len(by['noise'])} within noise ({'largest: ' if len(by['noise']) > 1 else ''}"
                  f"{_task_title(p.task)}, {p.a} vs {p.b}: {'/'.join(map(str, seeds))}-seed difference "
                  f"{_n(p.diff, m)} < {_n(p.band, m)} noise band)")
    if by["unmeasured"]:
        tasks = ", ".join(_task_title(t) for t in dict.fromkeys(p.task for p in by["unmeasured"]))
        words += f"; {len(by['unmeasured'])} with noise not measured ({tasks}: no line of two seeds or more)"
    return words + "."


def _highest(nums: _Numbers, rows: list[str], tasks: list[str]) -> str:
    """Per task our highest row, and whether it is decided over the next."""
    out, m = [], nums.metric
    for t in tasks:
        ranked = sorted((r for r in rows if (r, t) in nums.ours), key=lambda r, t=t: -nums.ours[r, t])
        text = f"{_task_title(t)}: {ranked[0]} ({_n(nums.ours[ranked[0], t], m)}"
        if len(ranked) == 1:
            text += "; the only row: nothing to decide"
        else:
            status = _decide(nums, t, ranked[0], ranked[1])[0]
            text += (f"; over {ranked[1]} {_n(nums.ours[ranked[1], t], m)}: "
                     + {"decided": "decided", "noise": "within noise", "unmeasured": "noise not measured"}[status])
        out.append(text + ")")
    return "; ".join(out)


def _verdict(nums: _Numbers, rows: list[str], tasks: list[str]) -> tuple[str, str, list[_Pair]]:
    """(verdict, in words, the pairs compared): do our rows come in the paper's order, task by task, pair by
    pair of rows, where the seeds decide it. The verdict counts the decided pairs only: 'noise' if fewer than
    half the pairs are decided."""
    if not nums.paper:
        highest = _highest(nums, rows, tasks)
        return "none", f"The paper gives no number for what ran here. Highest of ours: {highest}.", []
    pairs = _pairs(nums, rows, tasks)
    level = _level(nums.ours, nums.paper, rows[0], tasks, nums.metric)
    if not pairs:
        return "none", f"Only one row has the paper's number: no pair of rows to decide.{level}", []
    ok = sum(p.status == "order" for p in pairs)
    decided = ok + sum(p.status == "against" for p in pairs)
    # fewer than half the pairs decided: the seeds cannot say whether the order holds, whatever the few say
    verdict = ("noise" if 2 * decided < len(pairs) else "yes" if ok == decided else "mostly" if 2 * ok >= decided
               else "partly" if ok else "no")
    return verdict, _pairs_words(pairs, nums) + level, pairs


def _seeds_text(nums: _Numbers, rows: list[str], tasks: list[str]) -> str:
    """Our seeds per row ('3 seeds per row', '1 seed (FPT, Random), 3 seeds (LSTM)') and, where a row has
    one seed, the seed counts of the lines its tasks' seed spread comes from."""
    groups: dict[int, list[str]] = {}
    for r in rows:
        for n in sorted({nums.seeds[r, t] for t in tasks if (r, t) in nums.seeds}):
            groups.setdefault(n, []).append(r)
    if not groups:
        return ""
    text = (f"{_plural(next(iter(groups)), 'seed')} per row" if len(groups) == 1 else ", ".join(
        f"{_plural(n, 'seed')} ({', '.join(g) if len(g) <= 3 else f'{len(g)} rows'})"
        for n, g in sorted(groups.items())))
    spread_from = sorted({n for t in tasks if t in nums.spread for n in nums.spread[t][1]})
    if min(groups) < 2 and spread_from:
        text += f"; seed spread from {'/'.join(map(str, spread_from))}-seed rows"
    return text


def _claim(name: str, title: str, lines: pd.DataFrame, spreads: dict) -> Claim:
    measured = lines[lines["mean"].notna()]
    if measured.empty:
        note = next((n for n in lines.note if n), "no result")
        return Claim(name, title, [], [], [], "none", f"Not measured here: {note}.", "no seeds run")
    metric = _primary_metric(measured)
    measured = measured[measured.metric == metric]
    nums = _Numbers({(r.row, r.task): r.mean for r in measured.itertuples()},
                    {(r.row, r.task): r.paper for r in measured.itertuples() if not _blank(r.paper)},
                    {(r.row, r.task): 1 if _blank(r.n_seeds) else int(r.n_seeds) for r in measured.itertuples()},
                    spreads.get(metric, {}), metric)
    all_rows = list(dict.fromkeys(measured.row))
    rows = [r for r in all_rows if any(k[0] == r for k in nums.paper)] or all_rows
    tasks = [t for t in dict.fromkeys(measured.task) if any((r, t) in (nums.paper or nums.ours) for r in rows)]

    def cells(numbers: dict) -> list[str]:
        return [f"{_task_title(t)}: " + " / ".join(_n(numbers[r, t], metric) if (r, t) in numbers else "–"
                                                  for r in rows) for t in tasks]
    verdict, words, pairs = _verdict(nums, rows, tasks)
    left = len(all_rows) - len(rows)
    meta = ", ".join(x for x in (
        _seeds_text(nums, rows, tasks), " and ".join(sorted(set(measured.backbone) - {""})),
        "" if metric == "test_accuracy" else metric,
        f"{left} more row{'s' if left > 1 else ''} without the paper's number" if left else "") if x)
    count = {s: sum(p.status == s for p in pairs) for s in _PAIR_STATUS}
    return Claim(name, title, rows, cells(nums.paper) if nums.paper else [], cells(nums.ours), verdict, words, meta,
                 count["order"], len(pairs), count["against"], count["noise"], count["unmeasured"])


def glance(summary: pd.DataFrame, tables: list[TableFiles]) -> list[Claim]:
    """One Claim per study table in the summary, in notebook order: the study at a glance. Every pair of
    rows is held against its task's seed spread measured over the whole summary (`seed_spread`)."""
    titles = {t.name: t.title for t in tables}
    spreads = {m: seed_spread(summary, m) for m in dict.fromkeys(summary.metric)}
    return [_claim(name, titles.get(name, name), summary[summary.table == name], spreads)
            for name in dict.fromkeys(summary.table)]


# ---- two views of Tables 1-2 -------------------------------------------------------------------
# What each arm reaches in the same fixed budget (notebooks 01, 01b: learning speed, Table 6's question)
# against what it reaches trained to convergence (notebook 01a: the paper's question for Tables 1-2).
# (table, rows) of each view; a pair is compared where both views have both rows
VIEW_BUDGET = {"table01_02": ("FPT", "Random"), "table01_lstm": ("FPT", "LSTM")}
VIEW_CONVERGED = "table01_02_converged"
VIEW_PAIRS = (("FPT", "Random"), ("FPT", "LSTM"))
VIEW_COLUMNS = ("task", "pair", "budget", "converged", "agree")


def _view_means(summary: pd.DataFrame, tables) -> dict:
    s = summary[summary.table.isin(tables) & (summary.metric == "test_accuracy") & summary["mean"].notna()]
    return {(r.row, r.task): (float(r.mean), int(r.n_seeds) if not math.isnan(r.n_seeds) else 1)
            for r in s.itertuples()}


def view_relation(a: tuple[float, int], b: tuple[float, int], spread: float | None) -> str:
    """'ahead', 'behind' or 'level' (within TIE_POINTS), and whether the seeds decide it."""
    d = a[0] - b[0]
    word = "level" if abs(d) <= TIE_POINTS else "ahead" if d > 0 else "behind"
    if spread is None:
        return f"{word} (noise not measured)"
    band = NOISE_BAND * spread * math.sqrt(1 / a[1] + 1 / b[1])
    return f"{word} ({'decided' if abs(d) > band else 'within noise'})"


def compare_views(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task and pair of rows, FPT's relation to the other row in each view, and whether they agree: the
    same word where both are decided, or both within noise; a decided order against a within-noise one
    disagrees. The seed spread is the glance's (pooled over every line of 2+ seeds of the task)."""
    spread = seed_spread(summary)
    budget = {}
    for table, rows in VIEW_BUDGET.items():
        for k, v in _view_means(summary, [table]).items():
            if k[0] in rows:
                budget.setdefault(k, v)
    conv = _view_means(summary, [VIEW_CONVERGED])
    out = []
    for task in dict.fromkeys(t for _, t in conv):
        for a, b in VIEW_PAIRS:
            if {(a, task), (b, task)} <= set(budget) and {(a, task), (b, task)} <= set(conv):
                sp = spread.get(task, (None,))[0]
                x = view_relation(budget[a, task], budget[b, task], sp)
                y = view_relation(conv[a, task], conv[b, task], sp)
                out.append({"task": task, "pair": f"{a} vs {b}",
                            "budget": f"{x}: {budget[a, task][0]:.1f} vs {budget[b, task][0]:.1f}",
                            "converged": f"{y}: {conv[a, task][0]:.1f} vs {conv[b, task][0]:.1f}",
                            "agree": _settled(x) == _settled(y)})
    return pd.DataFrame(out, columns=VIEW_COLUMNS)


def _settled(rel: str) -> str:
    """What a relation claims: its order where decided, else nothing."""
    return rel.split(" ")[0] if "(decided)" in rel else "undecided"


def views_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return ("No task has both views yet: the equal-budget runs of notebooks 01/01b and the converged runs "
                "of notebook 01a.\n")
    lines = ["FPT against each other row of Tables 1-2, test accuracy (%), in the same fixed budget (notebooks "
             "01, 01b) and trained to convergence (01a); decided or within noise by the glance's rule.", "",
             "| task | pair | same budget | at convergence | the views |", "|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {_task_title(r.task)} | {r.pair} | {r.budget} | {r.converged} | "
                     f"{'agree' if r.agree else '**disagree**'} |")
    n = int((~df.agree).sum())
    lines += ["", f"{n} of {len(df)} comparisons disagree." if n else f"All {len(df)} comparisons agree."]
    return "\n".join(lines) + "\n"


# ---- HTML -------------------------------------------------------------------------------------

_CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.2em auto; max-width: 74em;
       padding: 0 1.2em; color: #222; line-height: 1.4; overflow-wrap: break-word; }
h1 { font-size: 1.45em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.3em; margin: 0.6em 0 0.4em; }
p { margin: 0.5em 0; }
nav { background: #f6f8fa; border: 1px solid #ddd; padding: 0.3em 0.7em; font-size: 0.92em; }
nav a { margin-right: 0.4em; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.8em 0; }
.scroll > table { margin: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.absent td { color: #777; font-style: italic; }
td.num { text-align: right; white-space: nowrap; }
table.glance { width: 100%; font-size: 0.86em; }
table.glance td.claim { width: 25%; }
table.glance td.nums { width: 21%; }
table.glance td.nums div { padding-left: 1em; text-indent: -1em; }
table.glance td.verdict { width: 33%; }
.v { font-weight: bold; white-space: nowrap; }
.v-yes { color: #1a7f37; } .v-mostly { color: #4d7c0f; } .v-partly { color: #9a6700; }
.v-no { color: #cf222e; } .v-noise { color: #57606a; } .v-none { color: #666; }
.missing { color: #a00; }
.meta { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: 0.5em 0; }
figure { margin: 1em 0; }
figcaption { color: #555; font-size: 0.85em; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 28em), 1fr)); gap: 0 1.5em; }
.figures figure { margin: 0.5em 0; }
code { background: #f5f5f5; padding: 0 0.2em; overflow-wrap: anywhere; }
pre { overflow-x: auto; }
section { border-top: 2px solid #ddd; margin-top: 2em; }
section#at-a-glance { border-top: none; margin-top: 0.8em; }
details > summary { cursor: pointer; font-size: 1.3em; font-weight: bold; margin: 0.8em 0; }
"""


def markdown_to_html(text: str) -> str:
    """Markdown (pipe tables included) to HTML with mistune (installed with nbconvert); any raw HTML
    in the text is escaped. Without mistune the text is shown as preformatted."""
    try:
        import mistune
    except ImportError:  # pragma: no cover - mistune comes with jupyterlab's nbconvert
        return f"<pre>{html.escape(text)}</pre>"
    return mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])(text)


def _scroll(table_html: str) -> str:
    """Every <table> in `table_html` inside a box that scrolls sideways itself, so the page never does."""
    return re.sub(r"(<table\b.*?</table>)", r'<div class="scroll">\1</div>', table_html, flags=re.S)


def _e(v) -> str:
    return html.escape("" if _blank(v) else str(v))


def _png_figure(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        return f'<p class="missing">figure {_e(path.name)} could not be read: {_e(err)}</p>'
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return f'<p class="missing">figure {_e(path.name)} is not a PNG file; not embedded</p>'
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{_e(path.name)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{_e(path.name)}</figcaption></figure>")


def _mtime(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))


def _glance_html(claims: list[Claim], summary: pd.DataFrame, scale: str, absent: int) -> str:
    backbones = " and ".join(sorted(set(summary.backbone) - {""})) or "–"
    out = ['<section id="at-a-glance"><h2>The study at a glance</h2>']
    if not claims:
        return "\n".join(out + ["<p>No study table has run yet: nothing to compare.</p></section>"])
    compared = [c for c in claims if c.pairs]
    count = ""
    if compared:
        ok, bad = sum(c.pairs_in_order for c in compared), sum(c.pairs_against for c in compared)
        noise, unmeasured = sum(c.pairs_noise for c in compared), sum(c.pairs_unmeasured for c in compared)
        tables_text = "the table" if len(compared) == 1 else f"the {len(compared)} tables"
        count = (f"<strong>{ok} of {_plural(ok + bad, 'decided pair')} of rows come in the paper's order</strong>, "
                 f"{noise} within noise" + (f", {unmeasured} with noise not measured" if unmeasured else "")
                 + f", over {tables_text} where the paper has numbers for two rows of a task or more. ")
    out.append(f"<p>{count}One line per table that ran: the rows named under its title, per task the paper's "
               f"numbers (GPT-2 base unless the table says otherwise) and ours (mean over seeds, scale "
               f"<code>{_e(scale)}</code>, backbone {_e(backbones)}), test accuracy in % unless noted. Two of our "
               f"rows are decided when they differ by over {NOISE_BAND:g} × their task's seed spread (std over seeds, "
               "pooled over all lines of 2+ seeds) × √(1/n₁ + 1/n₂), n their seeds; else within noise, counting "
               f"neither way; a table with fewer than half its pairs decided is within noise as a whole. Decided "
               f"numbers within {TIE_POINTS:g} point are level. "
               + (f"{absent} expected table(s) have not run yet (see <a href=\"#tables\">Every table</a>). "
                  if absent else "") + "</p>")
    out.append('<div class="scroll"><table class="glance"><thead><tr><th>table and rows</th><th>paper</th>'
               "<th>ours</th><th>verdict</th></tr></thead><tbody>")
    for c in claims:
        rows = f'<br><span class="meta">{" / ".join(_e(r) for r in c.rows)}</span>' if c.rows else ""
        meta = f'<br><span class="meta">{_e(c.meta)}</span>' if c.meta else ""
        paper = "".join(f"<div>{_e(x)}</div>" for x in c.paper) or '<span class="meta">no number for these</span>'
        ours = "".join(f"<div>{_e(x)}</div>" for x in c.ours) or '<span class="meta">not measured</span>'
        out.append(f'<tr><td class="claim"><a href="#{_e(c.table)}">{_e(c.title)}</a>{rows}{meta}</td>'
                   f'<td class="nums">{paper}</td><td class="nums">{ours}</td>'
                   f'<td class="verdict"><span class="v v-{c.verdict}">{_VERDICT_WORDS[c.verdict]}</span> '
                   f"{_e(c.words)}</td></tr>")
    out.append("</tbody></table></div></section>")
    return "\n".join(out)


def _views_html(summary: pd.DataFrame) -> str:
    """Tables 1-2 in the same budget against trained to convergence, where the converged table has run."""
    if summary.empty or VIEW_CONVERGED not in set(summary.table):
        return ""
    return "\n".join(['<section id="two-views"><h2>Tables 1-2: the same budget against convergence</h2>',
                      _scroll(markdown_to_html(views_markdown(compare_views(summary)))), "</section>"])


def _key_figures_html(tables: list[TableFiles]) -> str:
    pngs = {p.stem: p for t in tables for p in t.figures}
    shown = [pngs[k] for k in KEY_FIGURES if k in pngs]
    if not shown:
        return ""
    return "\n".join(['<section id="key-figures"><h2>Key figures</h2>',
                      "<p>Tables 1-2 (black ticks: the paper's numbers) and the first layer's attention "
                      "after training and untrained; each figure is also shown with its table below.</p>",
                      '<div class="figures">'] + [_png_figure(p) for p in shown] + ["</div></section>"])


def _summary_html(summary: pd.DataFrame, scale: str) -> str:
    if summary.empty:
        return f"<p><strong>Nothing has run yet at scale <code>{_e(scale)}</code></strong>: no study tables.</p>"
    head = ("<tr><th>table</th><th>row</th><th>task</th><th>metric</th><th>ours (mean ± std)</th>"
            "<th>paper</th><th>scale</th><th>backbone</th><th>steps</th><th>seeds</th>"
            "<th>note / paper source</th></tr>")
    body = []
    for _, r in summary.iterrows():
        absent = bool(r["note"]) and _blank(r["mean"])
        ours = "not measured" if absent else _e(r["ours"])
        note = _e(r["note"]) if r["note"] else ""
        src = f'<span class="meta">{_e(r["paper_source"])}</span>' if r["paper_source"] else ""
        body.append(
            f'<tr{" class=absent" if absent else ""}><td>{_e(r["table"])}</td><td>{_e(r["row"])}</td>'
            f'<td>{_e(r["task"])}</td><td>{_e(r["metric"])}</td><td class="num">{ours}</td>'
            f'<td class="num">{_e(_paper_text(r))}</td><td>{_e(r["scale"]) or "–"}</td>'
            f'<td>{_e(r["backbone"]) or "–"}</td><td class="num">{_e(r["steps"]) or "–"}</td>'
            f'<td>{_e(r["seeds"]) or "–"}</td><td>{note}{"<br>" if note and src else ""}{src}</td></tr>')
    return '<div class="scroll"><table>\n' + head + "\n" + "\n".join(body) + "\n</table></div>"


def _table_section(t: TableFiles) -> str:
    anchor = t.name or "other-figures"
    nb = f" <span class='meta'>(notebook {t.notebook})</span>" if t.notebook else ""
    parts = [f'<section id="{_e(anchor)}"><h2>{_e(t.title)}{nb}</h2>']
    if t.name:
        files = ", ".join(f"<code>{_e(p.name)}</code> (written {_mtime(p)})" for p in (t.md, t.csv) if p)
        parts.append(f'<p class="meta">Table <code>{_e(t.name)}</code>: '
                     + (files or "<span class='missing'>not run yet</span>") + "</p>")
    if t.md is not None:
        try:
            parts.append(_scroll(markdown_to_html(t.md.read_text())))
        except (OSError, UnicodeDecodeError) as err:
            parts.append(f'<p class="missing">{_e(t.md.name)} could not be read: {_e(err)}</p>')
    elif t.csv is not None:
        try:
            parts.append(_scroll(pd.read_csv(t.csv).to_html(index=False, escape=True, na_rep="", border=0)))
        except Exception as err:  # noqa: BLE001 - a broken file is reported, not fatal
            parts.append(f'<p class="missing">{_e(t.csv.name)} could not be read: {_e(err)}</p>')
    parts += [_png_figure(p) for p in t.figures]
    parts.append("</section>")
    return "\n".join(parts)


def _header_html(scale: str, found: list[TableFiles], has_figures: bool, n_summary: int) -> list[str]:
    about = PRESETS.get(scale, {}).get("about", "a scale fptlib does not define")
    now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    links = [("at-a-glance", "The study at a glance")] + ([("key-figures", "Key figures")] if has_figures else []) \
        + [("tables", "Every table"), ("summary", f"Summary ({n_summary} lines)")]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>FPT reproduction report - scale {_e(scale)}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>Frozen Pretrained Transformer: reproduction report, scale <code>{_e(scale)}</code></h1>",
           "<p>Pretrained Transformers as Universal Computation Engines (Lu, Grover, Abbeel, Mordatch 2021, "
           f"arXiv 2103.05247v2). <strong>Scale <code>{_e(scale)}</code></strong>: {_e(about)}.</p>",
           f'<p class="meta">Generated {_e(now)} by <code>fptlib.study.report</code> from the files in '
           f"<code>{_e(portable(str(_tables_dir(scale))))}</code> and "
           f"<code>{_e(portable(str(figures_dir(scale))))}</code>; nothing was trained or rerun to make it.</p>",
           "<nav>Contents: " + " · ".join(f'<a href="#{a}">{_e(text)}</a>' for a, text in links) + "</nav>"]
    if not found:
        out.append(f"<p><strong>Nothing has run yet at scale <code>{_e(scale)}</code></strong>: no tables in "
                   f"<code>{_e(portable(str(_tables_dir(scale))))}</code>. "
                   f"Run <code>fpt reproduce --scale {_e(scale)}</code>."
                   "</p>")
    return out


def render_html(scale: str, tables: list[TableFiles] | None = None, summary: pd.DataFrame | None = None) -> str:
    """The report: the study at a glance (one line per table: the paper's numbers, ours, a verdict),
    the key figures, the index of every table, the full summary (collapsed), then each table with its
    figures. One self-contained file (figures embedded) that fits a laptop screen's width."""
    tables = find_tables(scale) if tables is None else tables
    summary = summary_table(scale, tables) if summary is None else summary
    expected = [t for t in tables if t.notebook]
    found = [t for t in tables if t.found]
    absent = [t for t in expected if not t.found]
    extra = [t for t in tables if t.name and not t.notebook and t.found]
    key_figures = _key_figures_html(tables)
    out = _header_html(scale, found, bool(key_figures), len(summary))
    out += [_glance_html(glance(summary, tables), summary, scale, len(absent)), _views_html(summary), key_figures]
    out.append(f'<section id="tables"><h2>Every table</h2><p>{len(found)} table(s) found, {len(absent)} of the '
               f"{len(expected)} expected not run yet.</p><div class=\"scroll\"><table><tr><th>notebook</th>"
               "<th>table</th><th>title</th><th>status</th></tr>")
    for t in expected + extra:
        status = (f'<a href="#{_e(t.name)}">found</a>' if t.found else '<span class="missing">not run yet</span>')
        out.append(f"<tr><td>{_e(t.notebook) or '–'}</td><td><code>{_e(t.name)}</code></td><td>{_e(t.title)}</td>"
                   f"<td>{status}</td></tr>")
    out.append("</table></div></section>")
    out += ['<details id="summary"><summary>Summary: every table, row, task and metric '
            f"({len(summary)} lines)</summary>",
            f"<p>One line per table, row, task and metric. <em>Ours</em>: mean ± std over seeds (accuracy in %) "
            f"at the scale and backbone of its line (our <code>{_e(scale)}</code> scale, not the paper's "
            "settings); <em>paper</em>: the paper's number, <code>none</code> where it gives none, "
            "<code>–</code> where we have no number to set beside it. A line that was not measured says why "
            "and carries no number. Tables with another shape (per-run steps, speed-ups) are shown in their "
            "own sections only.</p>",
            _summary_html(summary, scale), "</details>"]
    out += [_table_section(t) for t in tables if t.found or t.figures]
    out.append("</body></html>\n")
    return "\n".join(out)


# ---- compute time and the results gallery -----------------------------------------------------

COMPUTE_NAME = "compute_time"


def compute_time_markdown(times: pd.DataFrame, scale: str) -> str:
    """The per-notebook cost table (compute_time.compute_times) with a total line."""
    def minutes(s):
        return f"{s / 60:.1f}"
    lines = [f"Compute time per notebook at scale `{scale}`: the runs a notebook computes first on a machine "
             "that has none (a run shared with an earlier notebook counts there), the sum of their "
             "training wall time from the result files (`wall_seconds`, plus the feature-cache build of "
             "output-only runs), and the notebook's wall time on two cores, where `fpt reproduce` trains "
             "two runs side by side (those times handed out in order to two workers; notebook 04 trains "
             "its two models one after the other). Notebooks 00 and 03 only read results.", "",
             "| notebook | runs it uses | runs it computes first | computed so far | training time (min) | "
             "wall time, two side by side (min) | longest run (min) |", "|---|---|---|---|---|---|---|"]
    for _, r in times.iterrows():
        lines.append(f"| {r.notebook} | {r.runs} | {r.new_runs} | {r.computed} | {minutes(r.train_seconds)} | "
                     f"{minutes(r.side_by_side_seconds)} | {minutes(r.longest_run_seconds)} |")
    lines.append(f"| all | | {times.new_runs.sum()} | {times.computed.sum()} | "
                 f"{minutes(times.train_seconds.sum())} | {minutes(times.side_by_side_seconds.sum())} | |")
    return "\n".join(lines) + "\n"


def gallery_markdown(scale: str = "cpu", base: Path | None = None) -> str:
    """Every table the notebooks wrote at `scale`, in notebook order, each followed by its figures
    (links relative to `base`, the directory of the document that shows them; default the
    repository's docs/): the results gallery, from files only."""
    base = Path(base or PROJ_ROOT / "docs").resolve()
    parts = []
    for t in find_tables(scale):
        if not t.found or t.md is None:
            continue
        nb = f" (notebook {t.notebook})" if t.notebook else ""
        parts += [f"#### {t.title}{nb}", "", t.md.read_text().strip(), ""]
        for fig in t.figures:
            parts += [f"![{fig.stem}]({Path(os.path.relpath(fig.resolve(), base)).as_posix()})", ""]
    return "\n".join(parts).rstrip() + "\n"


README_START = "<!-- gallery:start (written by `fpt readme` from results/ and figures/; do not edit by hand) -->"
README_END = "<!-- gallery:end -->"


def update_readme(readme: Path, scale: str = "cpu") -> bool:
    """Replace the gallery block of `readme` (docs/results.md) with the current one; True if it changed."""
    text = Path(readme).read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no gallery block: add the lines {README_START!r} and {README_END!r}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = head + README_START + "\n\n" + gallery_markdown(scale, Path(readme).parent) + "\n" + README_END + tail
    if new != text:
        write_text_atomic(Path(readme), new)
    return new != text


def readme_gallery_block(readme: Path) -> str:
    """What the gallery block of `readme` holds now (for the check that it matches the results)."""
    text = Path(readme).read_text()
    return text.split(README_START, 1)[1].split(README_END, 1)[0].strip("\n") + "\n"


def build(scale: str = "cpu") -> dict:
    """Write results/SCALE/report.html, results/SCALE/tables/summary.{csv,md} and (once a run exists)
    tables/compute_time.{csv,md}, each atomically, from the files on disk. Returns the paths, the
    summary DataFrame and which expected tables were found and which are absent."""
    times = compute_times(scale)
    if times.computed.sum():  # a scale with no runs yet has no costs to report
        write_text_atomic(_tables_dir(scale) / f"{COMPUTE_NAME}.csv", times.to_csv(index=False))
        write_text_atomic(_tables_dir(scale) / f"{COMPUTE_NAME}.md", compute_time_markdown(times, scale))
    tables = find_tables(scale)
    summary = summary_table(scale, tables)
    paths = {"html": results_dir(scale) / "report.html", "csv": _tables_dir(scale) / f"{SUMMARY_TABLE}.csv",
             "md": _tables_dir(scale) / f"{SUMMARY_TABLE}.md"}
    write_text_atomic(paths["csv"], summary.to_csv(index=False, float_format="%.4f"))
    write_text_atomic(paths["md"], summary_markdown(summary, scale))
    write_text_atomic(paths["html"], render_html(scale, tables, summary))
    return {**paths, "summary": summary, "found": [t.name for t in tables if t.name and t.found],
            "absent": [t.name for t in tables if t.notebook and not t.found]}
