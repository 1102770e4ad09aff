"""Deployment budgets, one YAML per budget (installed as `at2seld_edge.profiles` data)."""
