"""What the notebooks left on disk, gathered: every expected table and its figures (`find_tables`), the summary
table over all study tables (`summary_table`, `summary_markdown`), the two views of Tables 1-2 as Markdown,
the compute-time table, and the results gallery of docs/results.md (`gallery_markdown`, `update_readme`,
`fpt readme`). Reads files only."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ...config import PRESETS
from ...io import write_text_atomic
from ...paths import PROJ_ROOT, figures_dir, portable, results_dir
from ..catalogue import SUMMARY_TABLE, expected_tables, table_protocols
from ..render.markdown import frame_markdown
from ..results.compare import number_text, task_title
from ..results.tables import is_blank

# Columns a study table's CSV has (study.base.Study.summary); other CSVs are shown, not summarised.
STUDY_COLUMNS = {"study", "row", "task", "metric", "mean"}


SUMMARY_COLUMNS = ["table", "row", "task", "metric", "ours", "mean", "std", "n_seeds", "paper", "scale",
                   "backbone", "steps", "protocol", "seeds", "note", "paper_source"]


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


def tables_dir(scale: str) -> Path:
    return results_dir(scale) / "tables"


def find_tables(scale: str) -> list[TableFiles]:
    """Every expected table (found or not) in notebook order, then any other table found, each with
    its files and its figures. Figures belong to the table whose name is the longest prefix of theirs
    (`table01_02_bars.png` -> table01_02); figures no table claims go to a last entry named ''."""
    tdir = tables_dir(scale)
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


def _ours(mean, std, n_seeds, metric) -> str:
    if is_blank(mean):
        return ""
    if is_blank(std) or (not is_blank(n_seeds) and float(n_seeds) < 2):
        return number_text(mean, metric) + ("" if is_blank(n_seeds) else f" ({int(float(n_seeds))} seed)")
    return f"{number_text(mean, metric)} ± {number_text(std, metric)}"


def _short_source(src) -> str:
    """'Lu et al. 2021 (arXiv ...) Table 2, via docs/paper.md §2.2, row 'FPT'' ->
    'Lu et al. 2021 (arXiv ...) Table 2, row 'FPT''."""
    return "" if is_blank(src) else re.sub(r", via [^,]*", "", str(src))


def _int_text(v) -> str:
    if is_blank(v):
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
    carry their `note` (e.g. 'data not available offline: ...') and no number at all. `protocol` says how
    the table's runs stopped: "budget" (a fixed number of steps) or "converged" (patience)."""
    tables = find_tables(scale) if tables is None else tables
    protocols, out = table_protocols(scale), []
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
            metric = "" if is_blank(r.get("metric")) else str(r["metric"])
            note = "" if is_blank(r.get("note")) else str(r["note"])
            prov = "" if is_blank(r.get("provenance")) else str(r["provenance"])
            measured = not note and not is_blank(r.get("mean"))
            if not measured and not note:
                note = "no result"
            if prov:
                note = (note + "; " if note else "") + f"mixed versions: {prov}"
            out.append({
                "table": t.name, "row": str(r.get("row", "")), "task": str(r.get("task", "")), "metric": metric,
                "ours": _ours(r.get("mean"), r.get("std"), r.get("n_seeds"), metric) if measured else "",
                "mean": float(r["mean"]) if measured else math.nan,
                "std": float(r["std"]) if measured and not is_blank(r.get("std")) else math.nan,
                "n_seeds": float(r["n_seeds"]) if measured and not is_blank(r.get("n_seeds")) else math.nan,
                "paper": float(r["paper"]) if measured and not is_blank(r.get("paper")) else math.nan,
                "scale": "" if is_blank(r.get("scale")) else str(r["scale"]),
                "backbone": "" if is_blank(r.get("backbone")) else str(r["backbone"]),
                "steps": _int_text(r.get("steps")) if measured else "",
                "protocol": protocols.get(t.name, "budget"),
                "seeds": "" if not measured or is_blank(r.get("seeds")) else str(r["seeds"]),
                "note": note,
                "paper_source": _short_source(r.get("paper_source")) if measured else "",
            })
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def paper_text(row) -> str:
    if row["note"] and is_blank(row["mean"]):
        return "–"  # not measured: nothing to compare
    return "none" if is_blank(row["paper"]) else f"{row['paper']:g}"


def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def summary_markdown(summary: pd.DataFrame, scale: str) -> str:
    lines = [f"Summary at scale `{scale}` ({PRESETS.get(scale, {}).get('about', 'unknown scale')}). "
             "Ours: mean ± std over seeds (test accuracy in %, unless the metric says otherwise), at the "
             "scale and backbone of its line; paper: Lu et al. 2021 (GPT-2 base unless the source says "
             "otherwise), `none` where the paper gives no number; `–` where we have no number to compare.", ""]
    if summary.empty:
        return "\n".join(lines + [f"Nothing has run yet at scale `{scale}`: no tables in "
                                  f"{portable(str(tables_dir(scale)))}.", ""])
    cells = [[_md_cell(v) for v in (r["table"], r["row"], r["task"], r["metric"],
                                    r["ours"] or ("not measured" if r["note"] else ""), paper_text(r),
                                    r["scale"] or "–", r["backbone"] or "–", r["steps"] or "–", r["note"])]
             for _, r in summary.iterrows()]
    columns = ["table", "row", "task", "metric", "ours", "paper", "scale", "backbone", "steps", "note"]
    return "\n".join(lines + [frame_markdown(pd.DataFrame(cells, columns=columns))]) + "\n"


def views_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return ("No task has both views yet: the equal-budget runs of notebooks 01/01b and the converged runs "
                "of notebook 01a.\n")
    lines = ["FPT against each other row of Tables 1-2, test accuracy (%), in the same fixed budget (notebooks "
             "01, 01b) and trained to convergence (01a); decided or within noise by the glance's rule.", ""]
    cells = [[task_title(r.task), r.pair, r.budget, r.converged, "agree" if r.agree else "**disagree**"]
             for r in df.itertuples()]
    columns = ["task", "pair", "same budget", "at convergence", "the views"]
    lines.append(frame_markdown(pd.DataFrame(cells, columns=columns)))
    n = int((~df.agree).sum())
    lines += ["", f"{n} of {len(df)} comparisons disagree." if n else f"All {len(df)} comparisons agree."]
    return "\n".join(lines) + "\n"


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
             "its two models one after the other). Notebooks 00 and 03 only read results.", ""]
    cells = [[r.notebook, r.runs, r.new_runs, r.computed, minutes(r.train_seconds),
              minutes(r.side_by_side_seconds), minutes(r.longest_run_seconds)] for _, r in times.iterrows()]
    cells.append(["all", "", times.new_runs.sum(), times.computed.sum(), minutes(times.train_seconds.sum()),
                  minutes(times.side_by_side_seconds.sum()), ""])
    columns = ["notebook", "runs it uses", "runs it computes first", "computed so far", "training time (min)",
               "wall time, two side by side (min)", "longest run (min)"]
    return "\n".join(lines + [frame_markdown(pd.DataFrame(cells, columns=columns))]) + "\n"


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



def table_titles(tables: list[TableFiles]) -> dict[str, str]:
    """Table name -> title, what `compare.glance` names its claims by."""
    return {t.name: t.title for t in tables}
