"""Models: backbones and their parameter groups (backbones), the FPT wrapper (fpt), the LSTM baseline
(lstm), the no-transformer control (pool) and exact inference shortcuts (fastpath)."""
from .backbones import (
                        BASELINES,
                        KNOWN_BACKBONES,
                        Backbone,
                        BackboneError,
                        BackboneSpec,
                        build_backbone,
                        family_of,
                        hf_config,
                        weights_missing,
                        weights_source,
)
from .fpt import FPT

__all__ = ["BASELINES", "KNOWN_BACKBONES", "Backbone", "BackboneError", "BackboneSpec", "build_backbone", "family_of",
           "hf_config", "weights_missing", "weights_source", "FPT"]
