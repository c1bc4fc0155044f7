"""fptlib: a reproducible study of Frozen Pretrained Transformers (Lu et al., 2021)."""
import os as _os

# Nothing is fetched unless a run names a hub model (e.g. --backbone gpt2 --init pretrained);
# set HF_HUB_OFFLINE=1 to forbid even that.
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

from .config import RunConfig, resolve  # noqa: E402
from .training import evaluate, train  # noqa: E402

__all__ = ["RunConfig", "resolve", "train", "evaluate", "__version__"]
