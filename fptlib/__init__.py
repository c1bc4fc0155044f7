"""fptlib: a reproducible study of Frozen Pretrained Transformers (Lu et al., 2021).

Layers, each importing only those before it: config, io, paths, seeding, groups (the root) ->
data -> models -> training -> study, with perf (benchmarks) beside study and cli on top.
"""
import os as _os

# Nothing is fetched unless a run names a hub model (e.g. --backbone gpt2 --init pretrained);
# set HF_HUB_OFFLINE=1 to forbid even that.
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from .config import RunConfig, resolve  # noqa: E402
from .training import evaluate, train  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["RunConfig", "resolve", "train", "evaluate", "__version__"]
