"""The study: one Study per paper result (base, studies, converged; sources beyond the paper) and the notebook catalogue
(catalogue), their cost before and after (plan, pricing, compute_time), papermill execution (notebooks);
below them, results read back and judged (results/), rendering (render/: Markdown, plots, widgets) and the
paper's numbers (paper); beside them attention maps (attention/), above them the report (report/).
Order, checked by tests/test_architecture.py: paper < results < render < the studies < report."""
from .base import HeadlineArms, Study, Tables1And2, load_runs
from .converged import Converged
from .render import plots
from .sources import PretrainingSources
from .studies import (
                      Ablation,
                      Backbones,
                      BitInit,
                      Convergence,
                      Depth,
                      FrozenLN,
                      LRSweep,
                      LSTMBaseline,
                      LSTMVariants,
                      ModelSize,
                      MoreParams,
                      OfflineTasks,
                      OutputOnly,
                      StatsInit,
)

__all__ = ["plots", "Study", "HeadlineArms", "Tables1And2", "load_runs", "Ablation", "Backbones", "BitInit",
           "Converged", "Convergence", "Depth", "FrozenLN", "LRSweep", "LSTMBaseline", "LSTMVariants", "ModelSize",
           "MoreParams", "OfflineTasks", "OutputOnly", "PretrainingSources", "StatsInit"]
