"""Writes every study notebook of the catalogue (fptlib.study.catalogue.NOTEBOOKS) from its Study
class, so every parameters cell mirrors its dataclass exactly. Run `python notebooks/_make.py` after
changing a study's fields; the notebooks are stored without outputs. The catalogue says why 00 and 04
are edited by hand; a test checks that every other notebook equals what this script writes."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

def _literal(v):
    return repr(v)


def _doc(f: dataclasses.Field) -> str:
    """What the parameters cell says beside a study field: its `doc` (fptlib.study.base.parameter)."""
    return f.metadata.get("doc", "")


def _grid_comment(cls, f: dataclasses.Field) -> str:
    """A field's doc, and what it runs when empty, per scale (the study's GRID, CPU_GRID and SMOKE_GRID)."""
    key = f.name
    paper = cls.GRID[key]
    cpu, smoke = {**cls.GRID, **cls.CPU_GRID}[key], {**cls.GRID, **cls.SMOKE_GRID}[key]
    what = "all seven" if key == "tasks" and len(paper) == 7 else repr(paper)
    if cpu == paper == smoke:
        return f"{_doc(f)}; empty: {what}"
    if smoke == paper:
        return f"{_doc(f)}; empty: the scale's grid (cpu: {cpu!r}; smoke and paper: {what})"
    return f"{_doc(f)}; empty: the scale's grid (cpu: {cpu!r}; smoke: {smoke!r}; paper: {what})"


def params_cell(cls, overrides: dict | None = None) -> nbf.NotebookNode:
    lines = []
    for f in dataclasses.fields(cls):
        # the field's own default (not an instance's, which has the cpu grid filled in)
        v = (overrides or {}).get(f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING
                                  else f.default)
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        comment = _grid_comment(cls, f) if f.name in cls.GRID else _doc(f)
        lines.append(f"{f.name}: {typ} = {_literal(v)}  # {comment}".rstrip(" #"))
    cell = nbf.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


def ctor(cls) -> str:
    return f"{cls.__name__}(" + ", ".join(f"{f.name}={f.name}" for f in dataclasses.fields(cls)) + ")"


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text):
    return nbf.v4.new_code_cell(text.strip())


COLUMNS = ["row", "task", "seed", "backbone", "steps", "test_accuracy", "train_accuracy", "trainable_params",
           "frozen_unchanged", "wall_seconds"]

RUN = """
from IPython.display import Markdown, display

from fptlib.study import {cls}, plots

study = {ctor}
runs = study.execute()  # trains only the runs results/ does not hold yet
runs.reindex(columns={columns})
"""

TABLE = """
summary = study.summary(runs)
paths = study.save(summary)
display(Markdown(study.markdown(summary)))
"""

BARS = """
fig = plots.bar_chart(summary, study.rows, study.tasks_with_data,
                      title=f"{study.title} - scale '{scale}'; black ticks: paper")
plots.save(fig, study.figure_path("bars"))
"""

CURVES = """
fig = plots.learning_curves(runs, study.rows, study.tasks_with_data, title=f"Validation accuracy, scale '{scale}'")
plots.save(fig, study.figure_path("curves"))
"""

CHECK = """
assert runs.frozen_unchanged.all(), runs[~runs.frozen_unchanged]
print(f"{len(runs)} runs; every tensor that was not trained is bit-identical after training; table: {paths['md']}")
"""


BARS_MD = ("## Bar chart\nBars: ours (mean ± std over seeds). Black ticks: the paper's number for the same row, "
           "where it has one.")
CURVES_MD = "## Learning curves\nValidation accuracy during training (line: mean over seeds; band: min to max)."
CHECK_MD = ("## Checks\nEvery tensor a run did not train must be bit-identical after training (SHA-256 of each, "
            "before and after).")


def study_notebook(entry, intro: str, extra: list | None = None, overrides: dict | None = None,
                   columns: list | None = None, bars: tuple[str, str] = (BARS_MD, BARS),
                   curves_md: str = CURVES_MD, check: tuple[str, str] = (CHECK_MD, CHECK),
                   curves: str = CURVES) -> nbf.NotebookNode:
    """A study notebook: parameters, runs, the table, the figures the catalogue entry lists, checks."""
    cls = entry.studies[0][0]
    nb = nbf.v4.new_notebook()
    cells = [md(intro), params_cell(cls, overrides),
             code(RUN.format(cls=cls.__name__, ctor=ctor(cls), columns=repr(columns or COLUMNS).replace("'", '"'))),
             md("## The table\nOur number (scale and backbone in the caption) beside the paper's; `paper: none` "
                "where the paper has no number. The list under the table is every way this scale departs "
                "from the paper's settings, taken from the configs that ran."),
             code(TABLE)]
    if entry.bars:
        cells += [md(bars[0]), code(bars[1])]
    if entry.curves:
        cells += [md(curves_md), code(curves)]
    cells += extra or []
    cells += [md(check[0]), code(check[1])]
    nb.cells = cells
    return _finish(nb)


def _finish(nb):
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    return nb


HOW = ("Runs are cached by config under `results/<scale>/runs/` (rows shared with other notebooks are "
       "computed once). Run headlessly with `fpt reproduce --only {num}`; the parameters below mirror "
       "`fptlib.study.{cls}`.")


def build() -> dict[str, nbf.NotebookNode]:
    """Every notebook of the catalogue that is not edited by hand, by file stem."""
    from fptlib.study.catalogue import NOTEBOOKS
    E = {nb.key: nb for nb in NOTEBOOKS}
    nbs = tables_1_2(E)
    nbs["02"] = study_notebook(E["02"], f"""
# 02 · Table 2 complete: language, random and Bit-pretrained initialisation

Paper §3.2. Three frozen backbones of the same architecture, each given the FPT training (input, output,
layer norm, positions): **FPT** (language-pretrained), **Random** (default init) and **Bit** — the same
architecture randomly initialised, first trained in full on Bit Memory, then frozen. The Bit source run is
one run per seed at the same scale (`bit-memory`, all parameters trained, weights kept in
`backbone.safetensors`); each Bit result records which source run it used and that run's accuracy.
The **ViT** row is an image-pretrained ViT-B/16 (`--backbone vit-base`: Hugging Face's google/vit-base-patch16-224,
the counterpart of the timm model the original used), frozen, its blocks and final norm only, with a new
zero-initialised 1,024-position table; it runs where its weights are on disk (the paper scale downloads
them), and offline its cells say "weights not available offline".

{HOW.format(num="02", cls="BitInit")}""")
    nbs["03"] = study_notebook(E["03"], f"""
# 03 · Tables 6-7: compute efficiency and train vs test accuracy

Paper §3.4 and §3.6, computed from the runs of Tables 1-2 (notebook 01): nothing new is trained when
those runs are in `results/`. **Table 6** counts gradient steps to convergence for FPT and the random
frozen transformer; the paper does not state its criterion, ours is in the table's caption (first
evaluation within `tolerance` points of the run's best validation accuracy; a run still improving at
the end of its budget is marked `>`). **Table 7** sets train beside test accuracy, asking whether FPT
over- or underfits.

{HOW.format(num="03", cls="Convergence")}""", extra=[
        md("## Table 6: gradient steps to convergence"),
        code("""
conv = study.convergence(runs)
display(Markdown(study.convergence_markdown(conv)))
from fptlib.io import write_text_atomic
write_text_atomic(paths["md"].with_name("table06_convergence.md"), study.convergence_markdown(conv))
conv.to_csv(paths["csv"].with_name("table06_convergence.csv"), index=False)
conv.groupby(["task", "row"]).steps_to_converge.describe()[["mean", "min", "max"]]"""),
        md("## Table 7: train against test accuracy"),
        code("""
fig = plots.train_test(summary, study.rows, study.tasks_with_data, title=f"Train vs test accuracy, scale '{scale}'")
plots.save(fig, study.figure_path("train_test"))""")])
    nbs["05"] = study_notebook(E["05"], f"""
# 05 · Tables 3-5: transformer vs LSTM architecture

Paper §3.3 (v2 only). Is the transformer's architecture what makes a frozen random network useful? A frozen
random transformer against a frozen random 3-layer LSTM of the same width (input, output and layer norms
trained), then LSTM variants: residual connections, 12 layers (residual), learned positional embeddings.
The paper's numbers for these tables are not available to us (docs/paper.md §2.3): every paper cell is `none`.

{HOW.format(num="05", cls="LSTMVariants")}""")
    nbs["06"] = study_notebook(E["06"], f"""
# 06 · Table 8: model size

Paper §3.7: CIFAR-10 with GPT-2 small, medium and large, pretrained and random (paper scale). Offline there
is no pretrained GPT-2 and no CIFAR-10, so the `cpu` scale runs the sizes that exist here — MiniLM-L6 cut to
2, 4 and 6 blocks, pretrained and random — on MNIST as the stand-in; the CIFAR-10 column says its data is
not available. (A random gpt2-small shape, `fpt train mnist --backbone gpt2 --init random`, is left out of
the `cpu` grid: at 1.2 s a step on two cores (`fpt bench`) its 600 steps alone take 12 minutes, more than
the six MiniLM rows together.)

{HOW.format(num="06", cls="ModelSize")}""")
    nbs["07"] = study_notebook(E["07"], f"""
# 07 · Table 9: is it only the initialisation statistics?

Paper §3.8. **Statistics only**: every tensor of the pretrained backbone is redrawn from a Gaussian with that
tensor's own mean and standard deviation, then frozen and trained like FPT. If this matched FPT, pretraining
would be a better initialisation scale and nothing more.

{HOW.format(num="07", cls="StatsInit")}""")
    nbs["08"] = study_notebook(E["08"], f"""
# 08 · Table 10: training only the output layer

Paper §3.9. The input layer keeps its random orthogonal init and everything below the output layer is
frozen, so the backbone is a fixed feature extractor (reservoir computing). Where a task has a fixed training
set (MNIST, ListOps, CIFAR-10, C10 LRA, homology) the features of every example are computed once, in
inference mode (so without dropout), and later epochs train the output layer on the cache; the bit tasks
draw fresh examples every step and run uncached.

{HOW.format(num="08", cls="OutputOnly")}""", extra=[
        md("## Speed-up of the feature cache\nFirst epoch (computing the features of the train, validation and "
           "test splits, then training) against each later epoch (training on the cache). `fpt bench` measures "
           "the same against an uncached epoch (README, Performance)."),
        code("""
speed = study.speedups(runs)
speed.to_csv(paths["csv"].with_name("table10_cache_speedup.csv"), index=False)
speed""")])
    nbs["09"] = study_notebook(E["09"], f"""
# 09 · Tables 11-12: depth and token mixing

Paper §3.10 (v2 only), ListOps. The backbone is cut to its first n blocks, pretrained and random. Table 11
trains the output layer and layer norms; set `output_only=True` for Table 12 (output layer only, features
cached). The paper's depths go to 12 and 24 blocks of GPT-2; MiniLM has 6.

{HOW.format(num="09", cls="Depth")}""", extra=[
        md("## Accuracy by depth\nSolid: ours (± std over seeds); dashed, hollow markers: the paper's numbers, "
           "which reach depths (12 and 24 blocks of GPT-2) this backbone may not have."),
        code("""
fig = plots.by_depth(study.by_depth(summary), title=f"{study.title} - scale '{scale}'")
plots.save(fig, study.figure_path("by_depth"))"""),
        md("## Table 12 (output layer only)\nThe same depths with only the output layer trained."),
        code("""
from dataclasses import replace

study12 = replace(study, output_only=True)
runs12 = study12.execute()
summary12 = study12.summary(runs12)
study12.save(summary12)
display(Markdown(study12.markdown(summary12)))
fig = plots.by_depth(study12.by_depth(summary12), title=f"{study12.title} - scale '{scale}'")
plots.save(fig, study12.figure_path("by_depth"))
assert runs12.frozen_unchanged.all()""")], overrides={"output_only": False})
    nbs["10"] = study_notebook(E["10"], f"""
# 10 · Tables 13-14: training more parameters

Paper §3.11. Beside the FPT groups, also train the feed-forward layers, the attention layers, both, or the
feed-forward layers plus only the last block's attention (Table 14), all at the paper's single learning
rate of 1e-3. The paper saw some of these diverge (marked † there); our runs report the full test split at
the end of the budget, and a run whose loss turns non-finite stops with an error naming the step. The last
row is ours, not the paper's: "+ Feedforward" at a learning rate of 1e-4, to tell a learning rate too high
for the unfrozen weights from a broken feed-forward group.

{HOW.format(num="10", cls="MoreParams")}""")
    nbs["11"] = study_notebook(E["11"], f"""
# 11 · Tables 15 and 21: which parameters need training?

Paper §3.12 and appendix Table 21. Starting from the output layer alone, add trained groups one at a time:
layer norm, then the input layer, then the positional embeddings (= FPT). This notebook runs the
pretrained backbone (Table 15) and, below, the random one (Table 21).

{HOW.format(num="11", cls="Ablation")}""", extra=[
        md("## Table 21: the same ablation on a random frozen transformer"),
        code("""
from dataclasses import replace

study21 = replace(study, init="random")
runs21 = study21.execute()
summary21 = study21.summary(runs21)
study21.save(summary21)
display(Markdown(study21.markdown(summary21)))
fig = plots.bar_chart(summary21, study21.rows, study21.tasks_with_data, title=f"{study21.title} - scale '{scale}'")
plots.save(fig, study21.figure_path("bars"))
assert runs21.frozen_unchanged.all()""")])
    nbs["12"] = study_notebook(E["12"], f"""
# 12 · Table 16: is finetuning layer norm necessary?

Paper §3.13 (CIFAR-10 in the paper; offline, the other tasks). Input, output and positional embeddings
train; layer norm is frozen or trained, on a pretrained and a random backbone.

{HOW.format(num="12", cls="FrozenLN")}""")
    nbs["13"] = study_notebook(E["13"], f"""
# 13 · Table 17: other pretrained transformers

Paper §3.14: GPT-2, BERT, T5 and Longformer as the frozen backbone on CIFAR-10 and ListOps. Offline the only
language-pretrained transformer is MiniLM-L6 (BERT family); the paper scale runs GPT-2 and BERT-base. The
paper's other rows are listed under the table with their numbers.

{HOW.format(num="13", cls="Backbones")}""")
    nbs["14"] = study_notebook(E["14"], f"""
# 14 · Beyond the paper: learning-rate sensitivity

Rothermel et al. (2021, docs/paper.md §7) argue that FPT's headline comparisons depend on the single learning
rate 1e-3: tuned, fully finetuned transformers win. This study sweeps the learning rate for four settings —
frozen or unfrozen (every parameter trained), pretrained or random — and asks two questions: does frozen
pretrained beat frozen random at every learning rate, and how does the best of each setting compare?

{HOW.format(num="14", cls="LRSweep")}""", extra=[
        md("## Accuracy against learning rate"),
        code("""
grid = study.grid(summary)
fig = plots.lr_sweep(grid, title=f"Test accuracy by learning rate, scale '{scale}'")
plots.save(fig, study.figure_path())
grid""")])
    nbs["15"] = sources_notebook(E["15"])
    missing = [nb.key for nb in NOTEBOOKS if not nb.by_hand and nb.key not in nbs]
    if missing:
        raise SystemExit(f"notebooks/_make.py writes no notebook for catalogue entries {missing}")
    return {E[k].stem: nb for k, nb in nbs.items()}


FPT_COLUMNS = ["row", "task", "seed", "backbone", "steps", "test_accuracy", "test_masked_accuracy", "train_accuracy",
               "frozen_unchanged", "wall_seconds"]
CHECK_FPT = ("## Checks\nFrozen tensors must be bit-identical after training (SHA-256 of each tensor before and "
             "after).", """
assert runs.frozen_unchanged.all(), runs[~runs.frozen_unchanged]
print(f"{len(runs)} runs; frozen tensors unchanged in all; tables: {paths['md']}")
""")


def _tables_1_2_bars(what: str) -> str:
    return f"""
fpt = runs.reindex(columns=["row", "backbone"]).query("row == 'FPT'").backbone
bb = backbone or (fpt.iloc[0] if len(fpt) else "none ran here")
fig = plots.bar_chart(summary, study.rows, study.tasks_with_data,
                      title=f"{what} at scale '{{scale}}' (transformer: {{bb}}); black ticks: paper (GPT-2 base)")
plots.save(fig, study.figure_path("bars"))
"""


STOPPING_CURVES = """
fig = plots.stopping_curves(runs, study.rows, study.tasks_with_data,
                            title=f"Validation accuracy, trained to convergence, scale '{scale}'")
plots.save(fig, study.figure_path("curves"))
"""


def converged_notebook(entry) -> nbf.NotebookNode:
    """01a: Tables 1, 2 and 6 from runs trained until they stop improving."""
    return study_notebook(entry, f"""
# 01a · Tables 1, 2 and 6 at convergence

Paper §3.1, §3.2 and §3.4 answered by the measurement that matches each question. The paper's Tables 1-2 report
what each arm *reaches*, trained to convergence; its Table 6 how *fast* each gets there. Notebooks `01`, `01b`
and `03` train every run for the same fixed budget (400-1,500 steps at the `cpu` scale), which measures learning
speed. Here every run of the three rows, **FPT** (frozen language-pretrained), **Random** (the same architecture
random and frozen) and the fully trained **LSTM**, trains until its validation accuracy has not improved for 20
evaluations (the paper scale's rule), under a per-task step cap meant never to be reached: the table's notes name
any run that reached it. The test accuracy is the last step's on the full test split (the paper selects no
checkpoint). Runs train in bf16 autocast, part of each run's identity (`docs/performance.md`: 1.5-1.7x faster
per step here, and level with fp32 in accuracy).

**Table 6** comes from the same runs: steps until a run's validation accuracy first comes within `tolerance`
points of its best.

{HOW.format(num="01a", cls="Converged")}""", columns=FPT_COLUMNS,
                          bars=("## Bar chart\nBars: ours at convergence (mean ± std over seeds). Black ticks: the "
                                "paper's number for the matching row (GPT-2 base).",
                                _tables_1_2_bars("Tables 1-2 at convergence")),
                          curves_md="## Learning curves to the stopping point\nValidation accuracy of every run, "
                          "each seed its own line, to the step where it stopped.", curves=STOPPING_CURVES,
                          extra=[md("## Table 6 from these runs: gradient steps to convergence"), code("""
conv = study.convergence(runs)
table6 = study.save_table6(conv)
display(Markdown(table6["md"].read_text()))
study.stops()""")], check=CHECK_FPT)


def sources_notebook(entry) -> nbf.NotebookNode:
    """15: where FPT's gain comes from, beyond the paper."""
    return study_notebook(entry, f"""
# 15 · Beyond the paper: where FPT's gain comes from

The paper's title claim is that *language* pretraining makes a frozen transformer a good computation engine. Two
later lines of work question that, and this notebook puts their controls on FPT's own tasks:

- **Is it language?** Amos et al. (2024) pretrain a transformer on the downstream task's own training inputs
  (*self-pretraining*) and close most of the gap that comparisons with random init credit to text. Here the same
  architecture is **self-pretrained** on each task's training split (masked tokens or patches to predict, the
  validation and test inputs never read), then frozen; beside it **statistics-only** init (Table 9),
  **shuffled** pretrained weights (each tensor's values kept, their arrangement destroyed) and **random** init.
- **Which parts carry it?** Pretrained attention with random feed-forward layers, the reverse, and **no
  transformer** at all (input layer, then an average over the tokens, then the output layer).

Every arm is frozen as FPT is (input, output, layer norms and positions train), trained to convergence as in
notebook `01a`, and at its own learning rate: each arm's first seed runs at every rate of `lrs` and the best
validation accuracy chooses (Rothermel et al. 2021: a shared rate can decide such comparisons); the other seeds
run at that rate. The table gives the choice; the list under it answers each question task by task, decided
against the seeds' noise as the report's glance decides.

{HOW.format(num="15", cls="PretrainingSources")}""", columns=FPT_COLUMNS,
                          curves_md="## Learning curves to the stopping point\nValidation accuracy of every run "
                          "at its chosen learning rate, each seed its own line.", curves=STOPPING_CURVES,
                          extra=[md("## Every seed of every arm\nBars: mean over seeds; dots: each seed; dashed: "
                                    "Language (FPT)."), code("""
fig = plots.arms_with_seeds(runs, study.rows, study.tasks_with_data, reference="Language",
                            title=f"Where the gain comes from, trained to convergence, scale '{scale}'")
plots.save(fig, study.figure_path("seeds"))
study.lr_choice()""")], check=CHECK_FPT)


def tables_1_2(E: dict) -> dict:
    """01 and 01b: Tables 1-2, with the paper's GPT-2 base named in their bar charts."""
    return {"01a": converged_notebook(E["01a"]), "01": study_notebook(E["01"], f"""
# 01 · Tables 1 and 2: frozen pretrained vs frozen random transformer

Paper §3.1–3.2. **FPT**: the language-pretrained backbone, frozen (self-attention and feed-forward untouched);
only the new input layer, the output layer, the layer norms and the positional embeddings train. **Random**:
the same architecture randomly initialised and frozen the same way. Table 1's third row, a fully trained LSTM,
is notebook `01b` (three rows in one notebook take longer than an hour at the `cpu` scale); Table 2's
Bit-pretrained row is notebook `02`.

Every number is test accuracy on the full held-out split, mean ± std over seeds, beside the paper's (GPT-2
base). A task whose data is not on this machine (CIFAR-10, CIFAR-10 LRA and remote homology need `fpt data
fetch`) gets a "data not available offline" cell, never a number. On a machine without a GPU runs train side
by side, one per core (`FPT_WORKERS` sets how many).

{HOW.format(num="01", cls="Tables1And2")}""", columns=FPT_COLUMNS,
                                 bars=("## Figure 1 style bar chart\nBars: ours (mean ± std over seeds). Black ticks: "
                                       "the paper's number for the matching row (GPT-2 base).",
                                       _tables_1_2_bars("Tables 1-2")),
                                 curves_md=CURVES_MD + " The random frozen transformer learns more slowly than "
                                 "FPT, the compute-efficiency result of Table 6.", check=CHECK_FPT),
            "01b": study_notebook(E["01b"], f"""
# 01b · Table 1: frozen pretrained transformer vs fully trained LSTM

Paper §3.1, Table 1's *Full LSTM* row: a 3-layer layer-normalised LSTM as wide as the transformer, every
parameter trained (learning rate 3e-4), beside **FPT** (frozen language-pretrained transformer; its runs are
notebook `01`'s, reused from the cache). The paper's *Full transformer* row (randomly initialised, every
parameter trained) is notebook `14`'s *Unfrozen random* row (ListOps only at the `cpu` scale).

Every number is test accuracy on the full held-out split, mean ± std over seeds, beside the paper's (GPT-2
base). Tasks without data on this machine get a "data not available offline" cell, never a number.

{HOW.format(num="01b", cls="LSTMBaseline")}""", columns=FPT_COLUMNS,
                                  bars=("## Bar chart\nBars: ours (mean ± std over seeds). Black ticks: the paper's "
                                        "number for the matching row (GPT-2 base).", _tables_1_2_bars("Table 1")),
                                  check=CHECK_FPT),
            "01c": study_notebook(E["01c"], f"""
# 01c · Tables 1-2 on offline real data beyond the paper: Fashion-MNIST and Pfam families

Not in the paper. Tables 1-2's three rows, **FPT** (frozen language-pretrained transformer), **Random** (the
same architecture random and frozen) and the fully trained **LSTM**, on two real datasets that install on a
machine without the network (`fpt data fetch fashion-mnist pfam`, which `fpt reproduce` runs for you):

* **Fashion-MNIST**: 70,000 28×28 photos of clothing in ten classes (Debian package `dataset-fashion-mnist`),
  read as MNIST (4×4 patches, 49 tokens of 16); 1,000 training images validate, the 10,000 test images score.
* **Pfam families**: which of eight protein families (seven Pfam families and a globin family) a window of 48
  amino acids comes from. Training and validation sequences are sampled by HMMER's `hmmemit` from each
  family's profile HMM; the test windows are cut from the families' real seed sequences, never trained on.
  Every window has the same length, so length gives nothing away (chance is the largest family's share of
  the test windows, about 14 %).

A notebook of its own because notebook `01` alone takes 45 of the hour a `cpu` notebook may. There is no
paper number for these columns.

{HOW.format(num="01c", cls="OfflineTasks")}""", columns=FPT_COLUMNS,
                                  bars=("## Bar chart\nBars: ours (mean ± std over seeds); no paper number exists.",
                                        _tables_1_2_bars("Tables 1-2, offline data")),
                                  check=CHECK_FPT)}


if __name__ == "__main__":
    for name, nb in build().items():
        nbf.write(nb, HERE / f"{name}.ipynb")
        print("wrote", name)
