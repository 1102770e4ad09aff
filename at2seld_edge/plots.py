"""Figures as every report writes them: matplotlib without a display, saved atomically."""

from __future__ import annotations

from pathlib import Path

from at2seld_edge.io import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed, on a CI machine or a Jetson over ssh
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return path
