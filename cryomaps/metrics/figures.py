"""Figures: central slices of maps and of local-resolution maps, box plots of metrics, FSC curves, scores per step.

Matplotlib is imported inside the functions and drawn through its Agg canvas directly (no pyplot,
no global backend switch), so these work on machines without a display and inside training loops.
PNG files are written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cryomaps.io.atomic import write_bytes_atomically
from cryomaps.metrics.volumes import align_to_reference, volume_array
from cryomaps.signal.local_fsc import BACKGROUND_RESOLUTION

AXIS_NAMES = ("x", "y", "z")


def central_slices(volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central planes of a map (x, y, z): x = nx//2 as (y, z), y = ny//2 as (x, z), z = nz//2 as (x, y)."""
    values = volume_array(volume)
    nx, ny, nz = values.shape
    return values[nx // 2, :, :], values[:, ny // 2, :], values[:, :, nz // 2]


def _new_figure(width_inches: float, height_inches: float, dpi: int):
    """A matplotlib Figure drawn by an Agg canvas (``figure.canvas``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_inches, height_inches), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _central_slices_figure(reference, others: Mapping[str, object], reference_name: str, dpi: int):
    """One row per map (reference first), one column per axis; each map on its own grey scale."""
    maps = {reference_name: reference}
    maps.update({name: align_to_reference(volume, reference) for name, volume in others.items()})
    figure = _new_figure(3 * 2.2, 2.2 * len(maps), dpi)
    axes = figure.subplots(len(maps), 3, squeeze=False)
    for row, (name, volume) in enumerate(maps.items()):
        _draw_slice_row(axes[row], central_slices(volume), name, cmap="gray")
    figure.tight_layout()
    return figure


def central_slices_image(
    reference, others: Mapping[str, object], reference_name: str = "reference", dpi: int = 80
) -> np.ndarray:
    """The central-slice panel as an RGB image for loggers.

    Args:
        reference: map (DensityMap, array or tensor, (x, y, z)).
        others: name -> map; DensityMaps on other grids are resampled onto ``reference``'s grid,
            arrays must share it.
        reference_name: row label of the reference.
        dpi: pixels per inch (each panel is 2.2 inches square).

    Returns:
        uint8 array (height, width, 3).
    """
    figure = _central_slices_figure(reference, others, reference_name, dpi)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def save_central_slices(
    path: str | os.PathLike,
    reference,
    others: Mapping[str, object],
    reference_name: str = "reference",
    dpi: int = 100,
) -> Path:
    """Write the central-slice panel (see :func:`central_slices_image`) as a PNG; returns the path."""
    return _save_png(_central_slices_figure(reference, others, reference_name, dpi), path)


def save_local_resolution_slices(
    path: str | os.PathLike,
    density,
    local_resolutions: Mapping[str, object],
    inside: np.ndarray | None = None,
    limits: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Central slices of a map (grey) and of local-resolution maps on it (one shared colour scale, Å).

    Args:
        density: the map (DensityMap, array or tensor, (x, y, z)); first row.
        local_resolutions: name -> local-resolution map (Å) on the same grid; one row each.
        inside: (x, y, z) bool, where local resolution is shown (default: values below the
            background, :data:`~cryomaps.signal.local_fsc.BACKGROUND_RESOLUTION` = 100 Å); other
            voxels are left blank.
        limits: colour range in Å (default: 2nd and 98th percentiles inside).
    """
    values = {name: volume_array(volume).astype(np.float64) for name, volume in local_resolutions.items()}
    if inside is None:
        inside = np.logical_and.reduce([volume < BACKGROUND_RESOLUTION for volume in values.values()])
    if limits is None:
        shown = np.concatenate([volume[inside] for volume in values.values()])
        limits = tuple(np.percentile(shown, [2, 98])) if shown.size else (0.0, 1.0)
    figure = _new_figure(3 * 2.2 + 0.8, 2.2 * (len(values) + 1), dpi)
    axes = figure.subplots(len(values) + 1, 3, squeeze=False)
    _draw_slice_row(axes[0], central_slices(density), "map", cmap="gray")
    image = None
    for row, (name, volume) in enumerate(values.items(), start=1):
        planes = central_slices(np.where(inside, volume, np.nan))
        image = _draw_slice_row(axes[row], planes, name, cmap="viridis", limits=limits)
    figure.tight_layout(rect=(0, 0, 0.88, 1))
    colour_axis = figure.add_axes((0.9, 0.1, 0.025, 0.6))
    figure.colorbar(image, cax=colour_axis, label="local resolution (Å)")
    return _save_png(figure, path)


def _draw_slice_row(axes, planes, name: str, cmap: str, limits: tuple[float, float] | None = None):
    """Draw three central planes on one row of axes (transposed, so the first remaining array axis
    runs horizontally), on ``limits`` (default: the planes' range); returns the last image."""
    if limits is None:
        limits = (min(np.nanmin(p) for p in planes), max(np.nanmax(p) for p in planes))
    for column, (axis, plane) in enumerate(zip(axes, planes)):
        image = axis.imshow(plane.T, origin="lower", cmap=cmap, vmin=limits[0], vmax=limits[1])
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"{name}: {AXIS_NAMES[column]} = centre", fontsize=8)
    return image


def save_metric_boxplots(
    path: str | os.PathLike,
    rows: Sequence[Mapping],
    metrics: Sequence[str],
    group_key: str = "method",
    dpi: int = 100,
    columns: int = 4,
) -> Path:
    """One box plot per metric, one box per group, from a table of rows.

    Args:
        rows: e.g. ``{"method": "struc2map", "pair": "EMD-3488", "ssim": 0.84, ...}``; missing,
            None or NaN values are left out.
        metrics: the columns to plot, one panel each.
        group_key: the column naming each row's group (one box per group, in order of appearance).
        columns: panels per row of the figure.
    """
    groups = list(dict.fromkeys(str(row[group_key]) for row in rows))
    n_columns = min(columns, len(metrics))
    n_rows = math.ceil(len(metrics) / n_columns)
    figure = _new_figure(max(3.0, 0.9 * len(groups) + 1.5) * n_columns, 3.2 * n_rows, dpi)
    axes = figure.subplots(n_rows, n_columns, squeeze=False).reshape(-1)
    for axis in axes[len(metrics):]:
        axis.set_visible(False)
    for axis, metric in zip(axes, metrics):
        values = [_finite_values(rows, metric, group_key, group) for group in groups]
        axis.boxplot(values)
        axis.set_xticks(range(1, len(groups) + 1), groups)
        axis.set_title(metric, fontsize=9)
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    figure.tight_layout()
    return _save_png(figure, path)


def _finite_values(rows: Sequence[Mapping], metric: str, group_key: str, group: str) -> list[float]:
    """Finite values of ``metric`` over the rows of one group."""
    values = (row.get(metric) for row in rows if str(row[group_key]) == group)
    return [float(value) for value in values if value is not None and np.isfinite(float(value))]


def save_fsc_curves(
    path: str | os.PathLike, curves: Mapping[str, object], thresholds: Sequence[float] = (0.5, 0.143), dpi: int = 100
) -> Path:
    """FSC curves (name -> :class:`cryomaps.metrics.FSCCurve`) against 1/Å with threshold lines."""
    figure = _new_figure(6.0, 4.0, dpi)
    axis = figure.subplots()
    for name, curve in curves.items():
        axis.plot(curve.frequencies, curve.correlations, label=name)
    for threshold in thresholds:
        axis.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("spatial frequency (1/Å)")
    axis.set_ylabel("FSC")
    axis.set_ylim(-0.1, 1.05)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _save_png(figure, path)


def save_score_plot(path: str | os.PathLike, series: Mapping[str, Sequence[float]], x_label: str,
                    title: str, y_label: str = "correlation about the mean", dpi: int = 110) -> Path:
    """Scores per step (fitting stages, refinement macro-cycles): each named series against 0, 1, ... (PNG)."""
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


def _save_png(figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` to PNG bytes and write them atomically."""
    buffer = io.BytesIO()
    figure.canvas.print_png(buffer)
    return write_bytes_atomically(path, buffer.getvalue())
