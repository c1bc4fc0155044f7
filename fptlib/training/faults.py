"""Fault injection for the reliability tests.

FPT_FAULT=point:n SIGKILLs the process the n-th time it reaches `point`, one of FAULT_POINTS; several
comma-separated. Unset, it costs one dictionary lookup per step.
"""
from __future__ import annotations

import os
import signal

from .errors import RunError

# Where FPT_FAULT can kill a run: after backward and before optimizer.step; after a checkpoint is
# written beside the current one but before it is swapped in; between the swap's two renames; after
# the final evaluation, before result.json is written.
FAULT_POINTS = ("step", "checkpoint-written", "checkpoint-swap", "final-eval")
_fault_counts: dict[str, int] = {}


def fault(point: str) -> None:
    """Fault injection for the reliability tests: SIGKILL this process at the n-th `point`."""
    spec = os.environ.get("FPT_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        name, _, n = item.strip().partition(":")
        if name not in FAULT_POINTS:
            raise RunError(f"FPT_FAULT names unknown point {name!r}; choose one of {', '.join(FAULT_POINTS)}")
        if name == point:
            _fault_counts[point] = _fault_counts.get(point, 0) + 1
            if _fault_counts[point] == int(n or 1):
                os.kill(os.getpid(), signal.SIGKILL)
