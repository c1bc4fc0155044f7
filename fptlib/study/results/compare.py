"""The claim statistics: what the study at a glance decides. Per study table, our rows' order against the
paper's, and each pair of rows decided or within noise against its task's seed spread (`seed_spread`,
pooled over every line of two or more seeds of the same protocol: runs stopped at a fixed budget, or
trained to convergence); and the two views of Tables 1-2 (a fixed budget against training to
convergence) held against each other (`compare_views`). Frames in, frames and `Claim`s out."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..paper import TASK_TITLES
from .tables import is_blank

TIE_POINTS = 1.0  # two decided accuracies (in %) this close are level: their order is not a claim


NOISE_BAND = 2.0  # our two means differ beyond the seeds' noise when by more than 2 spreads × √(1/n₁ + 1/n₂)


VERDICT_WORDS = {"yes": "matches", "mostly": "mostly", "partly": "partly", "no": "differs",
                  "noise": "within noise", "none": "ours only"}


_PAIR_STATUS = ("order", "against", "noise", "unmeasured")


# How a table's runs stop: after a fixed number of steps, or by patience on validation (trained to
# convergence). Seeds of a run still learning spread by how fast each learns, seeds of a converged run
# by where each ends, so each protocol's noise is measured on its own lines and judges only them.
PROTOCOLS = ("budget", "converged")
# what a glance line says of its protocol (a fixed budget is every notebook's default: nothing to say)
PROTOCOL_WORDS = {"budget": "", "converged": "trained to convergence: each run until its validation accuracy "
                                            "stopped improving (patience; the table marks any run that hit its cap)"}


def protocol_lines(summary: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The lines of `summary` whose runs stop by `protocol` (a summary without a `protocol` column: all budget)."""
    if "protocol" not in summary:
        return summary if protocol == "budget" else summary.iloc[0:0]
    keep = pd.Series([("budget" if is_blank(v) else v) == protocol for v in summary["protocol"]], index=summary.index,
                     dtype=bool)
    return summary.loc[keep]


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


def task_title(task: str) -> str:
    return TASK_TITLES.get(task, task)


def _tie(metric: str, a: float, b: float) -> float:
    return TIE_POINTS if "accuracy" in metric or metric == "" else 0.01 * max(abs(a), abs(b))


def _relation(metric: str, a: float, b: float) -> str:
    d = a - b
    return "≈" if abs(d) <= _tie(metric, a, b) else (">" if d > 0 else "<")


def _primary_metric(lines: pd.DataFrame) -> str:
    metrics = list(lines.metric)
    return "test_accuracy" if "test_accuracy" in metrics else max(metrics, key=metrics.count)


def number_text(v, metric: str = "") -> str:
    if is_blank(v):
        return ""
    v = float(v)
    return f"{v:.1f}" if "accuracy" in metric or metric == "" else f"{v:.4g}"


def _n(v: float, metric: str) -> str:
    """A number for the glance: one decimal, none when it is whole (100, 38.4)."""
    text = number_text(v, metric)
    return text[:-2] if text.endswith(".0") else text


def plural(n: int, word: str) -> str:
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
    where = task_title(diffs[0][0]) if len(diffs) == 1 else f"mean over {len(diffs)} tasks"
    if abs(mean) <= TIE_POINTS:
        return f" Ours for {row}: level with the paper ({where})."
    return f" Ours for {row}: {abs(mean):.1f} points {'below' if mean < 0 else 'above'} the paper ({where})."


def _pairs_words(pairs: list[_Pair], nums: _Numbers) -> str:
    """'3 of 4 pairs of rows decided, 2 in the paper's order, 1 against it (...); 1 within noise (...)'."""
    by = {s: [p for p in pairs if p.status == s] for s in _PAIR_STATUS}
    ok, bad = len(by["order"]), len(by["against"])
    words = f"{ok + bad} of {plural(len(pairs), 'pair')} of rows decided"
    if ok + bad:
        every = "" if ok + bad == 1 else "both " if ok + bad == 2 else "all "
        words += (f", {every}in the paper's order" if not bad else f", {every}against the paper's order" if not ok
                  else f", {ok} in the paper's order, {bad} against it")
    if bad:
        firsts = [next(p for p in by["against"] if p.task == t) for t in dict.fromkeys(p.task for p in by["against"])]
        more = f"; {len(firsts) - 2} more task(s)" if len(firsts) > 2 else ""
        words += " (" + "; ".join(f"{task_title(p.task)}: {p.how}" for p in firsts[:2]) + more + ")"
    if by["noise"]:
        p, m = max(by["noise"], key=lambda q: q.diff), nums.metric
        seeds = sorted({nums.seeds[p.a, p.task], nums.seeds[p.b, p.task]})
        words += (f"; {len(by['noise'])} within noise ({'largest: ' if len(by['noise']) > 1 else ''}"
                  f"{task_title(p.task)}, {p.a} vs {p.b}: {'/'.join(map(str, seeds))}-seed difference "
                  f"{_n(p.diff, m)} {'<' if p.diff < p.band else '≤'} {_n(p.band, m)} noise band)")
    if by["unmeasured"]:
        tasks = ", ".join(task_title(t) for t in dict.fromkeys(p.task for p in by["unmeasured"]))
        words += f"; {len(by['unmeasured'])} with noise not measured ({tasks}: no line of two seeds or more)"
    return words + "."


def _highest(nums: _Numbers, rows: list[str], tasks: list[str]) -> str:
    """Per task our highest row, and whether it is decided over the next."""
    out, m = [], nums.metric
    for t in tasks:
        ranked = sorted((r for r in rows if (r, t) in nums.ours), key=lambda r, t=t: -nums.ours[r, t])
        text = f"{task_title(t)}: {ranked[0]} ({_n(nums.ours[ranked[0], t], m)}"
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
    text = (f"{plural(next(iter(groups)), 'seed')} per row" if len(groups) == 1 else ", ".join(
        f"{plural(n, 'seed')} ({', '.join(g) if len(g) <= 3 else f'{len(g)} rows'})"
        for n, g in sorted(groups.items())))
    spread_from = sorted({n for t in tasks if t in nums.spread for n in nums.spread[t][1]})
    if min(groups) < 2 and spread_from:
        text += f"; seed spread from {'/'.join(map(str, spread_from))}-seed rows"
    return text


def _claim(name: str, title: str, lines: pd.DataFrame, spreads: dict, protocol: str = "budget") -> Claim:
    measured = lines[lines["mean"].notna()]
    if measured.empty:
        note = next((n for n in lines.note if n), "no result")
        return Claim(name, title, [], [], [], "none", f"Not measured here: {note}.", "no seeds run")
    metric = _primary_metric(measured)
    measured = measured[measured.metric == metric]
    nums = _Numbers({(r.row, r.task): r.mean for r in measured.itertuples()},
                    {(r.row, r.task): r.paper for r in measured.itertuples() if not is_blank(r.paper)},
                    {(r.row, r.task): 1 if is_blank(r.n_seeds) else int(r.n_seeds) for r in measured.itertuples()},
                    spreads.get(metric, {}), metric)
    all_rows = list(dict.fromkeys(measured.row))
    rows = [r for r in all_rows if any(k[0] == r for k in nums.paper)] or all_rows
    tasks = [t for t in dict.fromkeys(measured.task) if any((r, t) in (nums.paper or nums.ours) for r in rows)]

    def cells(numbers: dict) -> list[str]:
        return [f"{task_title(t)}: " + " / ".join(_n(numbers[r, t], metric) if (r, t) in numbers else "–"
                                                  for r in rows) for t in tasks]
    verdict, words, pairs = _verdict(nums, rows, tasks)
    left = len(all_rows) - len(rows)
    meta = ", ".join(x for x in (
        _seeds_text(nums, rows, tasks), " and ".join(sorted(set(measured.backbone) - {""})),
        "" if metric == "test_accuracy" else metric,
        f"{left} more row{'s' if left > 1 else ''} without the paper's number" if left else "",
        PROTOCOL_WORDS[protocol]) if x)
    count = {s: sum(p.status == s for p in pairs) for s in _PAIR_STATUS}
    return Claim(name, title, rows, cells(nums.paper) if nums.paper else [], cells(nums.ours), verdict, words, meta,
                 count["order"], len(pairs), count["against"], count["noise"], count["unmeasured"])


def glance(summary: pd.DataFrame, titles: dict[str, str]) -> list[Claim]:
    """One Claim per study table in the summary, in notebook order: the study at a glance. Every pair of
    rows is held against its task's seed spread measured over the summary's lines of the table's protocol
    (`seed_spread` of `protocol_lines`); `titles` names the tables (table name -> title; a table without
    one is shown by its name)."""
    spreads = {}
    for p in PROTOCOLS:
        lines = protocol_lines(summary, p)
        spreads[p] = {m: seed_spread(lines, m) for m in dict.fromkeys(lines.metric)}
    out = []
    for name in dict.fromkeys(summary.table):
        lines = summary[summary.table == name]
        protocol = _protocol(lines)
        out.append(_claim(name, titles.get(name, name), lines, spreads[protocol], protocol))
    return out


def _protocol(lines: pd.DataFrame) -> str:
    return next((p for p in PROTOCOLS if not protocol_lines(lines, p).empty), "budget")


# ---- two views of Tables 1-2 -------------------------------------------------------------------
# What each arm reaches in the same fixed budget (notebooks 01, 01b: learning speed, Table 6's question)
# against what it reaches trained to convergence (notebook 01a: the paper's question for Tables 1-2).
# (table, rows) of each view; a pair is compared where both views have both rows
VIEW_BUDGET = {"table01_02": ("FPT", "Random"), "table01_lstm": ("FPT", "LSTM")}


VIEW_CONVERGED = "table01_02_converged"


VIEW_PAIRS = (("FPT", "Random"), ("FPT", "LSTM"))


VIEW_COLUMNS = ("task", "pair", "budget", "converged", "agree")


def _means(lines: pd.DataFrame, metric: str = "test_accuracy") -> dict:
    """(row, task) -> (our mean, its seeds) of the measured lines of `metric`."""
    m = lines[(lines.metric == metric) & lines["mean"].notna()]
    return {(r.row, r.task): (float(r.mean), 1 if is_blank(r.n_seeds) else int(r.n_seeds)) for r in m.itertuples()}


def _view_means(summary: pd.DataFrame, tables) -> dict:
    return _means(summary[summary.table.isin(tables)])


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
    disagrees. Each view is judged by its own protocol's seed spread, as the glance judges it."""
    spread = {p: seed_spread(protocol_lines(summary, p)) for p in PROTOCOLS}
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
                x = view_relation(budget[a, task], budget[b, task], spread["budget"].get(task, (None,))[0])
                y = view_relation(conv[a, task], conv[b, task], spread["converged"].get(task, (None,))[0])
                out.append({"task": task, "pair": f"{a} vs {b}",
                            "budget": f"{x}: {budget[a, task][0]:.1f} vs {budget[b, task][0]:.1f}",
                            "converged": f"{y}: {conv[a, task][0]:.1f} vs {conv[b, task][0]:.1f}",
                            "agree": _settled(x) == _settled(y)})
    return pd.DataFrame(out, columns=VIEW_COLUMNS)


def _settled(rel: str) -> str:
    """What a relation claims: its order where decided, else nothing."""
    return rel.split(" ")[0] if "(decided)" in rel else "undecided"


# ---- rows against one reference row ------------------------------------------------------------
LEVEL_COLUMNS = ("task", "row", "mean", "reference", "n_seeds", "relation")


def level_with(lines: pd.DataFrame, reference: str, rows: list[str], spread: dict | None = None,
               metric: str = "test_accuracy") -> tuple[pd.DataFrame, str]:
    """Each of `rows` against `reference`, task by task, in one table's lines: ahead, behind or level with it,
    decided or within noise by the glance's rule (`view_relation`, the task's seed spread: pooled over `lines`
    unless `spread` is given). Returns the relations (LEVEL_COLUMNS) and, in words, per task which rows are
    within noise of the reference and which are decided above or below it."""
    spread = seed_spread(lines, metric) if spread is None else spread
    num = _means(lines, metric)
    out, words = [], []
    for task in dict.fromkeys(t for _, t in num):
        if (reference, task) not in num:
            continue
        ref, groups = num[reference, task], {}
        for row in rows:
            if (row, task) not in num:
                continue
            sp = spread.get(task, (None,))[0]
            rel = view_relation(num[row, task], ref, sp)
            out.append({"task": task, "row": row, "mean": num[row, task][0], "reference": ref[0],
                        "n_seeds": num[row, task][1], "relation": rel})
            kind = ("noise not measured" if sp is None else
                    {"ahead": "decided above", "behind": "decided below"}.get(_settled(rel), "within noise of it"))
            groups.setdefault(kind, []).append(f"{row} {num[row, task][0]:.1f}")
        seeds = sorted({num[reference, task][1], *(n for (r, t), (_, n) in num.items() if t == task and r in rows)})
        text = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(groups.items()))
        words.append(f"{task_title(task)} ({reference} {ref[0]:.1f}, {'/'.join(map(str, seeds))} seeds): {text}")
    return pd.DataFrame(out, columns=LEVEL_COLUMNS), (". ".join(words) + ".") if words else "not measured yet."
