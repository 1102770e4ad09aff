"""The AT2SELD model and its parts."""

from at2seld_edge.model.at2seld import AT2SELD, MODULE_NAMES, OUTPUT_NAMES, build_model

__all__ = ["AT2SELD", "MODULE_NAMES", "OUTPUT_NAMES", "build_model"]
