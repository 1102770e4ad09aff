"""Target device specs, one YAML per device (installed as `at2seld_edge.devices` data)."""
