"""Writes the study notebooks (02-14) from their fptlib.studies classes, so every parameters cell
mirrors its dataclass exactly. Run `python notebooks/_make.py` after changing a study's fields; the
notebooks are stored without outputs. (00, 01 and 04 are edited by hand.)"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

COMMENTS = {
    "scale": "smoke | cpu | paper",
    "seeds": "one run per seed and row",
    "tasks": "columns of the table",
    "backbone": "empty: the scale's default (smoke/cpu: minilm, paper: gpt2)",
    "steps": "gradient steps per run; 0: the scale's per-task default",
    "progress": "progress bars",
    "init": "pretrained (Table 15) | random (Table 21)",
    "depths": "blocks kept from the bottom of the backbone",
    "output_only": "False: Table 11 (output + layer norm), True: Table 12 (output only)",
    "backbones": "empty: every pretrained backbone this scale can load",
    "lrs": "learning rates of the sweep",
    "tolerance": "convergence: within this many points of the run's best validation accuracy",
}


def _literal(v):
    return repr(v)


def _grid_comment(cls, key: str) -> str:
    """What an empty seeds/tasks parameter runs, per scale (the study's GRID and CPU_GRID)."""
    paper, cpu = cls.GRID[key], {**cls.GRID, **cls.CPU_GRID}[key]
    what = "all seven" if key == "tasks" and len(paper) == 7 else repr(paper)
    if key not in cls.CPU_GRID and key not in ("seeds", "tasks"):
        return f"{COMMENTS[key]}; empty: {what}"
    if cpu == paper:
        return f"{COMMENTS[key]}; empty: {what}"
    return f"{COMMENTS[key]}; empty: the scale's grid (cpu: {cpu!r}; smoke and paper: {what})"


def params_cell(cls, overrides: dict | None = None) -> nbf.NotebookNode:
    lines = []
    for f in dataclasses.fields(cls):
        # the field's own default (not an instance's, which has the cpu grid filled in)
        v = (overrides or {}).get(f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING
                                  else f.default)
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        comment = _grid_comment(cls, f.name) if f.name in cls.GRID else COMMENTS.get(f.name, "")
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


RUN = """
from IPython.display import Markdown, display

from fptlib import plots
from fptlib.studies import {cls}

study = {ctor}
runs = study.execute()  # trains only the runs results/ does not hold yet
runs[["row", "task", "seed", "backbone", "steps", "test_accuracy", "train_accuracy", "trainable_params", "frozen_unchanged", "wall_seconds"]]
"""

TABLE = """
summary = study.summary(runs)
paths = study.save(summary)
display(Markdown(study.markdown(summary)))
"""

BARS = """
fig = plots.bar_chart(summary, study.rows, study.tasks_with_data,
                      title=f"{{study.title}} - scale '{{scale}}'; black ticks: paper")
plots.save(fig, study.figures / f"{{study.name}}_bars.png")
"""

CURVES = """
fig = plots.learning_curves(runs, study.rows, study.tasks_with_data, title=f"Validation accuracy, scale '{{scale}}'")
plots.save(fig, study.figures / f"{{study.name}}_curves.png")
"""

CHECK = """
assert runs.frozen_unchanged.all(), runs[~runs.frozen_unchanged]
print(f"{len(runs)} runs; every tensor that was not trained is bit-identical after training; table: {paths['md']}")
"""


def study_notebook(cls, intro: str, extra: list | None = None, overrides: dict | None = None,
                   bars: bool = True, curves: bool = True) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    cells = [md(intro), params_cell(cls, overrides), code(RUN.format(cls=cls.__name__, ctor=ctor(cls))),
             md("## The table\nOur number (scale and backbone in the caption) beside the paper's; `paper: none` "
                "where the paper has no number. The list under the table is every way this scale departs "
                "from the paper's settings, taken from the configs that ran."),
             code(TABLE)]
    if bars:
        cells += [md("## Bar chart\nBars: ours (mean ± std over seeds). Black ticks: the paper's number for "
                     "the same row, where it has one."), code(BARS.format())]
    if curves:
        cells += [md("## Learning curves\nValidation accuracy during training (line: mean over seeds; band: "
                     "min to max)."), code(CURVES.format())]
    cells += extra or []
    cells += [md("## Checks\nEvery tensor a run did not train must be bit-identical after training "
                 "(SHA-256 of each, before and after)."), code(CHECK)]
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
       "`fptlib.studies.{cls}`.")


def build() -> dict[str, nbf.NotebookNode]:
    from fptlib import studies as S
    nbs = {}
    nbs["02_table2_bit_init"] = study_notebook(S.BitInit, f"""
# 02 · Table 2 complete: language, random and Bit-pretrained initialisation

Paper §3.2. Three frozen backbones of the same architecture, each given the FPT training (input, output,
layer norm, positions): **FPT** (language-pretrained), **Random** (default init) and **Bit** — the same
architecture randomly initialised, first trained in full on Bit Memory, then frozen. The Bit source run is
one run per seed at the same scale (`bit-memory`, all parameters trained, weights kept in
`backbone.safetensors`); each Bit result records which source run it used and that run's accuracy.
The ViT row of the paper needs image-pretrained ViT weights (network), so it is not run here.

{HOW.format(num="02", cls="BitInit")}""")
    nbs["03_table6_7_convergence_fit"] = study_notebook(S.Convergence, f"""
# 03 · Tables 6-7: compute efficiency and train vs test accuracy

Paper §3.4 and §3.6, computed from the runs of Tables 1-2 (notebook 01): nothing new is trained when
those runs are in `results/`. **Table 6** counts gradient steps to convergence for FPT and the random
frozen transformer; the paper does not state its criterion, ours is in the table's caption (first
evaluation within `tolerance` points of the run's best validation accuracy; a run still improving at
the end of its budget is marked `>`). **Table 7** sets train beside test accuracy, asking whether FPT
over- or underfits.

{HOW.format(num="03", cls="Convergence")}""", bars=False, extra=[
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
plots.save(fig, study.figures / f"{study.name}_train_test.png")""")])
    nbs["05_table3_5_lstm"] = study_notebook(S.LSTMVariants, f"""
# 05 · Tables 3-5: transformer vs LSTM architecture

Paper §3.3 (v2 only). Is the transformer's architecture what makes a frozen random network useful? A frozen
random transformer against a frozen random 3-layer LSTM of the same width (input, output and layer norms
trained), then LSTM variants: residual connections, 12 layers (residual), learned positional embeddings.
The paper's numbers for these tables are not available to us (paper.md §2.3): every paper cell is `none`.

{HOW.format(num="05", cls="LSTMVariants")}""")
    nbs["06_table8_model_size"] = study_notebook(S.ModelSize, f"""
# 06 · Table 8: model size

Paper §3.7: CIFAR-10 with GPT-2 small, medium and large, pretrained and random (paper scale). Offline there
is no pretrained GPT-2 and no CIFAR-10, so the `cpu` scale runs the sizes that exist here — MiniLM-L6 cut to
2, 4 and 6 blocks, pretrained and random — on MNIST as the stand-in; the CIFAR-10 column says its data is
not available. (A random gpt2-small shape, `fpt train mnist --backbone gpt2 --init random`, is left out of
the `cpu` grid: at 1.2 s a step on two cores (`fpt bench`) its 600 steps alone take 12 minutes, more than
the six MiniLM rows together.)

{HOW.format(num="06", cls="ModelSize")}""")
    nbs["07_table9_stats_init"] = study_notebook(S.StatsInit, f"""
# 07 · Table 9: is it only the initialisation statistics?

Paper §3.8. **Statistics only**: every tensor of the pretrained backbone is redrawn from a Gaussian with that
tensor's own mean and standard deviation, then frozen and trained like FPT. If this matched FPT, pretraining
would be a better initialisation scale and nothing more.

{HOW.format(num="07", cls="StatsInit")}""")
    nbs["08_table10_output_only"] = study_notebook(S.OutputOnly, f"""
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
    nbs["09_table11_12_depth"] = study_notebook(S.Depth, f"""
# 09 · Tables 11-12: depth and token mixing

Paper §3.10 (v2 only), ListOps. The backbone is cut to its first n blocks, pretrained and random. Table 11
trains the output layer and layer norms; set `output_only=True` for Table 12 (output layer only, features
cached). The paper's depths go to 12 and 24 blocks of GPT-2; MiniLM has 6.

{HOW.format(num="09", cls="Depth")}""", bars=False, extra=[
        md("## Accuracy by depth\nSolid: ours (± std over seeds); dashed, hollow markers: the paper's numbers, "
           "which reach depths (12 and 24 blocks of GPT-2) this backbone may not have."),
        code("""
fig = plots.by_depth(study.by_depth(summary), title=f"{study.title} - scale '{scale}'")
plots.save(fig, study.figures / f"{study.name}_by_depth.png")"""),
        md("## Table 12 (output layer only)\nThe same depths with only the output layer trained."),
        code("""
study12 = Depth(**{**study.__dict__, "output_only": True})
runs12 = study12.execute()
summary12 = study12.summary(runs12)
study12.save(summary12)
display(Markdown(study12.markdown(summary12)))
fig = plots.by_depth(study12.by_depth(summary12), title=f"{study12.title} - scale '{scale}'")
plots.save(fig, study.figures / f"{study12.name}_by_depth.png")
assert runs12.frozen_unchanged.all()""")], overrides={"output_only": False})
    nbs["10_table13_14_more_params"] = study_notebook(S.MoreParams, f"""
# 10 · Tables 13-14: training more parameters

Paper §3.11. Beside the FPT groups, also train the feed-forward layers, the attention layers, both, or the
feed-forward layers plus only the last block's attention (Table 14), all at the paper's single learning
rate of 1e-3. The paper saw some of these diverge (marked † there); our runs report the full test split at
the end of the budget, and a run whose loss turns non-finite stops with an error naming the step. The last
row is ours, not the paper's: "+ Feedforward" at a learning rate of 1e-4, to tell a learning rate too high
for the unfrozen weights from a broken feed-forward group.

{HOW.format(num="10", cls="MoreParams")}""")
    nbs["11_table15_21_ablation"] = study_notebook(S.Ablation, f"""
# 11 · Tables 15 and 21: which parameters need training?

Paper §3.12 and appendix Table 21. Starting from the output layer alone, add trained groups one at a time:
layer norm, then the input layer, then the positional embeddings (= FPT). This notebook runs the
pretrained backbone (Table 15) and, below, the random one (Table 21).

{HOW.format(num="11", cls="Ablation")}""", extra=[
        md("## Table 21: the same ablation on a random frozen transformer"),
        code("""
study21 = Ablation(**{**study.__dict__, "init": "random"})
runs21 = study21.execute()
summary21 = study21.summary(runs21)
study21.save(summary21)
display(Markdown(study21.markdown(summary21)))
fig = plots.bar_chart(summary21, study21.rows, study21.tasks_with_data, title=f"{study21.title} - scale '{scale}'")
plots.save(fig, study.figures / f"{study21.name}_bars.png")
assert runs21.frozen_unchanged.all()""")])
    nbs["12_table16_frozen_ln"] = study_notebook(S.FrozenLN, f"""
# 12 · Table 16: is finetuning layer norm necessary?

Paper §3.13 (CIFAR-10 in the paper; offline, the other tasks). Input, output and positional embeddings
train; layer norm is frozen or trained, on a pretrained and a random backbone.

{HOW.format(num="12", cls="FrozenLN")}""")
    nbs["13_table17_backbones"] = study_notebook(S.Backbones, f"""
# 13 · Table 17: other pretrained transformers

Paper §3.14: GPT-2, BERT, T5 and Longformer as the frozen backbone on CIFAR-10 and ListOps. Offline the only
language-pretrained transformer is MiniLM-L6 (BERT family); the paper scale runs GPT-2 and BERT-base. The
paper's other rows are listed under the table with their numbers.

{HOW.format(num="13", cls="Backbones")}""")
    nbs["14_lr_sensitivity"] = study_notebook(S.LRSweep, f"""
# 14 · Beyond the paper: learning-rate sensitivity

Rothermel et al. (2021, paper.md §7) argue that FPT's headline comparisons depend on the single learning
rate 1e-3: tuned, fully finetuned transformers win. This study sweeps the learning rate for four settings —
frozen or unfrozen (every parameter trained), pretrained or random — and asks two questions: does frozen
pretrained beat frozen random at every learning rate, and how does the best of each setting compare?

{HOW.format(num="14", cls="LRSweep")}""", bars=False, curves=False, extra=[
        md("## Accuracy against learning rate"),
        code("""
grid = study.grid(summary)
fig = plots.lr_sweep(grid, title=f"Test accuracy by learning rate, scale '{scale}'")
plots.save(fig, study.figures / f"{study.name}.png")
grid""")])
    return nbs


if __name__ == "__main__":
    for name, nb in build().items():
        nbf.write(nb, HERE / f"{name}.ipynb")
        print("wrote", name)
