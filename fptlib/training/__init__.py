"""Training: one loop in named steps (loop: `loop.start`, `loop.step`, `loop.run_steps`,
`loop.evaluate_and_checkpoint`, `loop.finish`, run one after the other by `train`), what a step and an
evaluation compute (steps), sealed checkpoints (checkpoint), the run directory (rundir) and what a
finished run records (result)."""
from . import loop
from .build import build, source_config
from .errors import NonFiniteLoss, RunError
from .faults import FAULT_POINTS
from .loop import Session, build_for_run, source_weights, train
from .result import NUMERICS_VERSION, deviations, versions
from .rundir import RunDir, result_without_timing, run_dir_for
from .steps import FeatureCache, accelerator, evaluate, head_step, train_step

__all__ = ["source_config", "build", "NonFiniteLoss", "RunError", "FAULT_POINTS", "loop", "Session", "source_weights",
           "build_for_run", "train",
           "NUMERICS_VERSION", "deviations", "versions", "result_without_timing",
           "RunDir", "run_dir_for", "FeatureCache", "accelerator", "evaluate", "head_step", "train_step"]
