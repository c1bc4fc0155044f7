"""The notebook catalogue: each numbered notebook, the studies it runs, the tables and figures it
writes. The report (its order and titles), compute times, the tests' expectations and the notebook
generator (notebooks/_make.py) all read this list; nothing else names the notebooks."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import SOURCE_INITS
from ..runs import PlannedRun
from ..training import source_config
from . import studies as study_defs
from .attention.measure import FIGURE_KEYS, FIGURE_PREFIX
from .base import Study, Tables1And2
from .converged import Converged
from .sources import PretrainingSources


@dataclass(frozen=True)
class Notebook:
    key: str                                   # what `fpt reproduce --only` takes: "01", "01b", ...
    stem: str                                  # notebooks/<stem>.ipynb
    studies: tuple[tuple[type, dict], ...] = ()  # (Study class, parameters) it runs by default
    bars: bool = True                          # the first study's bar chart, <name>_bars.png
    curves: bool = True                        # its learning curves, <name>_curves.png
    tables: tuple[tuple[str, str], ...] = ()   # further tables: (name, title)
    figures: tuple[tuple[int, str], ...] = ()  # further figures: (which of its studies, kind), see Study.figure_name
    other_figures: tuple[str, ...] = ()        # figure files of no study (notebook 04's attention maps)
    by_hand: str = ""                          # why notebooks/_make.py does not write it ("" = it does)
    # scale -> why `fpt reproduce` runs it at that scale only when named (--only): runs too long for one
    # invocation, computed over several and committed as they finish
    on_request: tuple[tuple[str, str], ...] = ()

    def instances(self, scale: str, **parameters) -> list[Study]:
        """Its studies at `scale`; `parameters` (e.g. seeds, steps) are given to each study that has them,
        as papermill gives them to the notebook."""
        from dataclasses import fields
        return [cls(scale=scale, **kw, **{k: v for k, v in parameters.items() if k in {f.name for f in fields(cls)}})
                for cls, kw in self.studies]

    def table_titles(self, scale: str = "cpu") -> list[tuple[str, str]]:
        """(name, title) of every table it writes: its studies' own titles, then the further tables."""
        return [(st.name, st.title) for st in self.instances(scale)] + list(self.tables)

    def figure_files(self, scale: str = "cpu") -> list[str]:
        studies = self.instances(scale)
        own = [studies[0].figure_name(kind) for kind, on in (("bars", self.bars), ("curves", self.curves))
               if on and studies]
        return own + [studies[i].figure_name(kind) for i, kind in self.figures] + list(self.other_figures)

    @property
    def protocol(self) -> str:
        """How the runs behind its tables stop (Study.protocol): its studies', or "budget" without one."""
        return self.studies[0][0].protocol if self.studies else "budget"

    def outputs(self, scale: str = "cpu") -> tuple[list[str], list[str]]:
        """(tables, figure files) it writes: results/<scale>/tables/<name>.csv, figures/<scale>/<file>."""
        return [n for n, _ in self.table_titles(scale)] + ([SUMMARY_TABLE] if self.key == "00" else []), \
            self.figure_files(scale)


def _attention_figures() -> tuple[str, ...]:
    return tuple(f"{FIGURE_PREFIX[t]}_{k}.png" for t in ("bit-xor", "bit-memory") for k in FIGURE_KEYS)


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("00", "00_summary", tables=(("compute_time", "Compute time per notebook"),),
             by_hand="reads results only: the report, not a study"),
    # Tables 1, 2 and 6 at convergence first: the measurement that matches the paper's question
    Notebook("01a", "01a_table1_2_6_converged", ((Converged, {}),),
             tables=(("table06_converged", "Table 6 at convergence: gradient steps to convergence, FPT vs Random "
                      "(runs stopped by patience; first evaluation within 1 point of the run's best)"),)),
    Notebook("01", "01_table1_table2", ((Tables1And2, {}),)),
    Notebook("01b", "01b_table1_lstm", ((study_defs.LSTMBaseline, {}),)),
    Notebook("01c", "01c_table1_2_offline_data", ((study_defs.OfflineTasks, {}),)),
    Notebook("02", "02_table2_bit_init", ((study_defs.BitInit, {}),)),
    Notebook("03", "03_table6_7_convergence_fit", ((study_defs.Convergence, {}),), bars=False,
             tables=(("table06_convergence", "Table 6: gradient steps to convergence"),),
             figures=((0, "train_test"),)),
    Notebook("04", "04_attention_maps",
             tables=(("attention_xor", "Attention on Bit XOR"), ("attention_bitmemory", "Attention on Bit Memory")),
             other_figures=_attention_figures(),
             by_hand="trains its own two models with eager attention (fptlib.study.attention), not a Study"),
    Notebook("05", "05_table3_5_lstm", ((study_defs.LSTMVariants, {}),)),
    Notebook("06", "06_table8_model_size", ((study_defs.ModelSize, {}),)),
    Notebook("07", "07_table9_stats_init", ((study_defs.StatsInit, {}),)),
    Notebook("08", "08_table10_output_only", ((study_defs.OutputOnly, {}),),
             tables=(("table10_cache_speedup", "Table 10: speed-up of the feature cache"),)),
    Notebook("09", "09_table11_12_depth", ((study_defs.Depth, {}), (study_defs.Depth, {"output_only": True})),
             bars=False, figures=((0, "by_depth"), (1, "by_depth"))),
    Notebook("10", "10_table13_14_more_params", ((study_defs.MoreParams, {}),)),
    Notebook("11", "11_table15_21_ablation", ((study_defs.Ablation, {}), (study_defs.Ablation, {"init": "random"})),
             figures=((1, "bars"),)),
    Notebook("12", "12_table16_frozen_ln", ((study_defs.FrozenLN, {}),)),
    Notebook("13", "13_table17_backbones", ((study_defs.Backbones, {}),)),
    Notebook("14", "14_lr_sensitivity", ((study_defs.LRSweep, {}),), bars=False, curves=False,
             figures=((0, ""),)),
    Notebook("15", "15_pretraining_sources", ((PretrainingSources, {}),), figures=((0, "seeds"),),
             on_request=(("cpu", "its runs train to convergence, each arm at each of its learning rates first: "
                                 "hours on two cores, computed over several sessions and committed as they finish; "
                                 "`fpt reproduce --only 15` computes (or resumes) the rest"),)),
)
# The report's own table (notebook 00), never one of the studies
SUMMARY_TABLE = "summary"


def on_request(stem: str, scale: str) -> str:
    """Why the notebook `stem` runs at `scale` only when named, or "" when `fpt reproduce` runs it anyway."""
    entry = next((nb for nb in NOTEBOOKS if nb.stem == stem), None)
    return dict(entry.on_request).get(scale, "") if entry else ""


def notebook_studies(scale: str, **parameters) -> dict[str, list[Study]]:
    """The studies each numbered notebook runs (with its default parameters, or these), in notebook order."""
    return {nb.key: nb.instances(scale, **parameters) for nb in NOTEBOOKS if nb.studies}


# The row a source run is listed under in a notebook's runs (fpt plan, compute times)
SOURCE_ROWS = {"bit": "Bit Memory source", "self-pretrained": "self-pretraining source"}


def notebook_runs(scale: str, planned: bool = False, **parameters) -> dict[str, list[PlannedRun]]:
    """Per notebook, in order, every run it uses, each once, a source init's source run (bit: Bit Memory;
    self-pretrained: the task's masked inputs) before the run that needs it. planned=True: as if every
    dataset and backbone's weights were at hand (Study.planned_runs) rather than what runs here
    (Study.runs). parameters: notebook parameters (seeds, steps, ...), as papermill would pass them."""
    out = {}
    for key, studies in notebook_studies(scale, **parameters).items():
        runs: dict[str, PlannedRun] = {}
        for st in studies:
            for r in (st.planned_runs() if planned else st.runs()):
                if r.config.init in SOURCE_INITS:
                    src = source_config(r.config)
                    runs.setdefault(src.run_id(), PlannedRun(SOURCE_ROWS[r.config.init], src))
                runs.setdefault(r.config.run_id(), r)
        out[key] = list(runs.values())
    return out


def table_protocols(scale: str = "cpu") -> dict[str, str]:
    """Table name -> how the runs behind it stop ("budget" or "converged"), for every table a notebook writes."""
    return {name: nb.protocol for nb in NOTEBOOKS for name, _ in nb.table_titles(scale)}


def expected_tables(scale: str = "cpu") -> list[tuple[str, str, str]]:
    """(notebook, table name, title) of every table the notebooks write, in notebook order."""
    return [(nb.key, name, title) for nb in NOTEBOOKS for name, title in nb.table_titles(scale)]
