"""Errors of a run; each message says why and what to do."""
from __future__ import annotations


class RunError(RuntimeError):
    """A run that cannot proceed; the message says why and what to do."""


class NonFiniteLoss(RunError):
    pass
