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
import re
import time
from pathlib import Path

import pandas as pd

from ...config import PRESETS
from ...io import write_text_atomic
from ...paths import figures_dir, portable, results_dir
from ..attention.measure import FIGURE_PREFIX
from ..base import Tables1And2
from ..catalogue import SUMMARY_TABLE
from ..compute_time import compute_times
from ..results.compare import (
    NOISE_BAND,
    TIE_POINTS,
    VERDICT_WORDS,
    VIEW_CONVERGED,
    Claim,
    compare_views,
    glance,
    level_with,
    plural,
)
from ..results.tables import is_blank
from ..sources import QUESTIONS, PretrainingSources
from ..studies import LSTMBaseline
from .gallery import (
    COMPUTE_NAME,
    TableFiles,
    compute_time_markdown,
    find_tables,
    paper_text,
    summary_markdown,
    summary_table,
    table_titles,
    tables_dir,
    views_markdown,
)

# The figures shown under "Key figures", in this order, those that exist: Tables 1-2 and Table 1's bars,
# then notebook 04's layer-1 attention maps.
KEY_FIGURES = tuple(Path(st().figure_name("bars")).stem for st in (Tables1And2, LSTMBaseline)) + tuple(
    f"{FIGURE_PREFIX[t]}_layer1" for t in ("bit-xor", "bit-memory"))


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
    return html.escape("" if is_blank(v) else str(v))


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
        count = (f"<strong>{ok} of {plural(ok + bad, 'decided pair')} of rows come in the paper's order</strong>, "
                 f"{noise} within noise" + (f", {unmeasured} with noise not measured" if unmeasured else "")
                 + f", over {tables_text} where the paper has numbers for two rows of a task or more. ")
    out.append(f"<p>{count}One line per table that ran: the rows named under its title, per task the paper's "
               f"numbers (GPT-2 base unless the table says otherwise) and ours (mean over seeds, scale "
               f"<code>{_e(scale)}</code>, backbone {_e(backbones)}), test accuracy in % unless noted. Two of our "
               f"rows are decided when they differ by over {NOISE_BAND:g} × their task's seed spread (std over seeds, "
               "pooled over all lines of 2+ seeds of the same protocol: runs stopped at a fixed budget, or trained to "
               "convergence) × √(1/n₁ + 1/n₂), n their seeds; else within noise, counting "
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
                   f'<td class="verdict"><span class="v v-{c.verdict}">{VERDICT_WORDS[c.verdict]}</span> '
                   f"{_e(c.words)}</td></tr>")
    out.append("</tbody></table></div></section>")
    return "\n".join(out)


def _views_html(summary: pd.DataFrame) -> str:
    """Tables 1-2 in the same budget against trained to convergence, where the converged table has run."""
    if summary.empty or VIEW_CONVERGED not in set(summary.table):
        return ""
    return "\n".join(['<section id="two-views"><h2>Tables 1-2: the same budget against convergence</h2>',
                      _scroll(markdown_to_html(views_markdown(compare_views(summary)))), "</section>"])


def _questions_html(summary: pd.DataFrame) -> str:
    """Notebook 15's two questions (is it language; which pretrained parts carry it), each answered task by task
    against the seeds' noise as the glance decides, where its table has run."""
    if summary.empty or PretrainingSources.name not in set(summary.table):
        return ""
    # the seed spread pooled over this table's own arms, as under the table itself (sources.py): one answer
    lines = summary[summary.table == PretrainingSources.name]
    items = "".join(f"<li><strong>{_e(q)}</strong>: {_e(level_with(lines, ref, rows)[1])}</li>"
                    for q, (ref, rows) in QUESTIONS.items())
    return (f'<section id="gain-sources"><h2>Where FPT\'s gain comes from (beyond the paper)</h2>'
            f"<p>Each arm against Language, trained to convergence at its own learning rate (notebook 15); "
            f"decided or within noise by the glance's rule, the seed spread pooled over this table's arms.</p>"
            f"<ul>{items}</ul></section>")


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
        absent = bool(r["note"]) and is_blank(r["mean"])
        ours = "not measured" if absent else _e(r["ours"])
        note = _e(r["note"]) if r["note"] else ""
        src = f'<span class="meta">{_e(r["paper_source"])}</span>' if r["paper_source"] else ""
        body.append(
            f'<tr{" class=absent" if absent else ""}><td>{_e(r["table"])}</td><td>{_e(r["row"])}</td>'
            f'<td>{_e(r["task"])}</td><td>{_e(r["metric"])}</td><td class="num">{ours}</td>'
            f'<td class="num">{_e(paper_text(r))}</td><td>{_e(r["scale"]) or "–"}</td>'
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
           f"<code>{_e(portable(str(tables_dir(scale))))}</code> and "
           f"<code>{_e(portable(str(figures_dir(scale))))}</code>; nothing was trained or rerun to make it.</p>",
           "<nav>Contents: " + " · ".join(f'<a href="#{a}">{_e(text)}</a>' for a, text in links) + "</nav>"]
    if not found:
        out.append(f"<p><strong>Nothing has run yet at scale <code>{_e(scale)}</code></strong>: no tables in "
                   f"<code>{_e(portable(str(tables_dir(scale))))}</code>. "
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
    claims = glance(summary, table_titles(tables))
    out += [_glance_html(claims, summary, scale, len(absent)), _views_html(summary), _questions_html(summary),
            key_figures]
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


def build(scale: str = "cpu") -> dict:
    """Write results/SCALE/report.html, results/SCALE/tables/summary.{csv,md} and (once a run exists)
    tables/compute_time.{csv,md}, each atomically, from the files on disk. Returns the paths, the
    summary DataFrame and which expected tables were found and which are absent."""
    times = compute_times(scale)
    if times.computed.sum():  # a scale with no runs yet has no costs to report
        write_text_atomic(tables_dir(scale) / f"{COMPUTE_NAME}.csv", times.to_csv(index=False))
        write_text_atomic(tables_dir(scale) / f"{COMPUTE_NAME}.md", compute_time_markdown(times, scale))
    tables = find_tables(scale)
    summary = summary_table(scale, tables)
    paths = {"html": results_dir(scale) / "report.html", "csv": tables_dir(scale) / f"{SUMMARY_TABLE}.csv",
             "md": tables_dir(scale) / f"{SUMMARY_TABLE}.md"}
    write_text_atomic(paths["csv"], summary.to_csv(index=False, float_format="%.4f"))
    write_text_atomic(paths["md"], summary_markdown(summary, scale))
    write_text_atomic(paths["html"], render_html(scale, tables, summary))
    return {**paths, "summary": summary, "found": [t.name for t in tables if t.name and t.found],
            "absent": [t.name for t in tables if t.notebook and not t.found]}
