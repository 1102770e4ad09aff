"""The AT2SELD model and its parts, and the other model families (`architecture` in the config)."""

from at2seld_edge.model.at2seld import ARCHITECTURES, AT2SELD, MODULE_NAMES, OUTPUT_NAMES, Architecture, build_model
from at2seld_edge.model import baseline  # noqa: E402,F401  (registers dcase-baseline)

__all__ = ["ARCHITECTURES", "AT2SELD", "Architecture", "MODULE_NAMES", "OUTPUT_NAMES", "build_model"]
