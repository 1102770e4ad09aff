"""Compression stage (imported as `at2seld_edge.compress`): passive filter pruning of the
backbone, layer fusion and INT8 calibration. Reads a checkpoint, writes a compressed model."""
