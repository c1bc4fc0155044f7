"""The study: one Study per paper result (base, studies), executing their runs (execute), tables
beside the paper's numbers (tables, paper), figures (plots), attention maps (attention), the notebook
catalogue (catalogue), the report (report, compute_time) and papermill execution (notebooks)."""
from .base import Study, Tables1And2, load_runs
from .converged import Converged
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

__all__ = ["Study", "Tables1And2", "load_runs", "Ablation", "Backbones", "BitInit",
           "Converged", "Convergence", "Depth", "FrozenLN", "LRSweep", "LSTMBaseline", "LSTMVariants", "ModelSize",
           "MoreParams", "OfflineTasks", "OutputOnly", "StatsInit"]
