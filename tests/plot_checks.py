"""What the plot tests read from matplotlib objects (never pixels): where a legend sits."""

from __future__ import annotations


def legend_outside(fig, ax) -> bool:
    """Whether `ax`'s legend, drawn, lies beside the axes rather than over the lines."""
    fig.canvas.draw()
    return not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent())
