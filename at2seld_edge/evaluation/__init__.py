"""DCASE SELD evaluation: decoding, output CSVs, metrics, threshold calibration."""
