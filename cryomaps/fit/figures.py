"""Figures of fitting and refinement: scores per stage or per macro-cycle (PNG, written atomically)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryomaps.metrics.figures import _new_figure, _save_png


def save_score_plot(path: str | os.PathLike, series: Mapping[str, Sequence[float]], x_label: str,
                    title: str, y_label: str = "correlation about the mean", dpi: int = 110) -> Path:
    """Plot each named series of scores against its step number (0, 1, ...) and save a PNG."""
    figure = _new_figure(5.0, 3.4, dpi)
    axes = figure.add_subplot(1, 1, 1)
    for name, values in series.items():
        axes.plot(range(len(values)), list(values), marker="o", label=name)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return _save_png(figure, path)
