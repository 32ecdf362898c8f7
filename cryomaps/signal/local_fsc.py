"""Classical local resolution from two half maps: Fourier shell correlation in soft-edged windows.

Method (our own implementation of the local-FSC idea used by blocres and RELION ``--locres``):

1. Step points are laid on the half-map grid every ``step`` Å along each axis, starting at voxel
   (0, 0, 0) and reaching or passing the last voxel, so that every voxel lies between step points.
2. Around each step point a window of ``window`` Å diameter is cut from both half maps (zero
   outside the box). ``shape="sphere"`` (default) weights voxels with a sphere whose weight is 1 up
   to ``window/2 - soft_edge/2`` and falls with a raised cosine to 0 at ``window/2 + soft_edge/2``
   (so ``window`` is the diameter at half weight); ``shape="cube"`` uses the same cosine profile
   along each axis. Each half window has its weighted mean removed before weighting, so a constant
   background does not correlate.
3. Windows are Fourier transformed in batches (``torch.fft.rfftn``) and the FSC is computed in
   the shells of :mod:`cryomaps.signal.fourier_shells` (spatial frequency ``|s|`` in 1/Å from the
   voxel size of each axis, so anisotropic voxels are handled; shell width the coarsest frequency
   spacing of the window box, ``max_a 1 / (n_a h_a)``; shells up to the Nyquist frequency of the
   coarsest axis).
4. The local resolution is where the FSC first drops below ``threshold`` (0.143 by default), by the
   crossing rule of :func:`cryomaps.signal.fourier_shells.crossing_resolution` over the shells after
   the zero-frequency one, with ``finest`` the Nyquist resolution ``2 * max(voxel size)`` and
   ``coarsest`` the window size: linearly interpolated between the first shell below and the one
   before, clamped to ``[finest, coarsest]``; a window whose FSC never drops below gets ``finest``,
   one whose first shell is already below gets ``coarsest``.
5. The step-point values are interpolated trilinearly back onto every voxel.

Masking: with a mask, only step points whose interpolation support (``step`` voxels either side)
touches the mask are evaluated (the mask dilated by one step), so every voxel inside the mask is
interpolated from evaluated points only; voxels outside the mask get ``background``.
``BACKGROUND_RESOLUTION`` = 100 Å is the default background: it is the convention of ResMap and of
CryoRes (and therefore of cryomaps' single-map network), an obviously out-of-range value that colour
palettes in ChimeraX clip and that can never be mistaken for an estimate (estimates never exceed
``window``). Without a mask every voxel is estimated, as RELION does.

No phase-randomisation correction of the mask-induced correlation is applied (RELION applies one);
the windows are mean-subtracted and soft-edged, which keeps that correlation at the lowest shells,
below the resolutions of interest.

All map arrays are indexed (x, y, z); lengths are in Å, frequencies in 1/Å.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cryomaps.devices import resolve_device
from cryomaps.errors import InputError
from cryomaps.io import DensityMap, Grid
from cryomaps.io.grid import nyquist_resolution
from cryomaps.render.finite_resolution import fft_size
from cryomaps.signal.fourier_shells import (
    correlation_from_sums,
    crossing_resolution,
    fourier_shells,
    shell_matrix,
    voxel_size_per_axis,
)
from cryomaps.signal.interpolation import linear_interpolation_matrix
from cryomaps.signal.windows import raised_cosine

DEFAULT_WINDOW = 25.0
"""Window diameter (Å) at half weight."""

DEFAULT_SOFT_EDGE = 5.0
"""Width (Å) of the raised-cosine edge of the window."""

DEFAULT_THRESHOLD = 0.143
"""FSC threshold for half maps (Rosenthal & Henderson 2003)."""

BACKGROUND_RESOLUTION = 100.0
"""Value (Å) written outside the mask (ResMap / CryoRes convention)."""

WINDOW_SHAPES = ("sphere", "cube")

STEPS_PER_WINDOW = 3
"""Default step = window / 3 (8.3 Å for 25 Å windows). On the synthetic benchmark cases
(scripts/bench_locres.py) the RMSE against the truth is the same as with window / 4 (within
0.03 Å either way) for 2x fewer windows; at window / 2 it rises (0.22 -> 0.41 Å on 1RB8)."""

VOXELS_PER_BATCH = 1 << 22
"""Window voxels transformed at once per half map (bounds memory: ~16 MB per float32 tensor)."""


@dataclass(frozen=True)
class WindowGeometry:
    """The window box and its weights on a grid of given voxel size.

    Attributes:
        weights: (n_x, n_y, n_z) float tensor of window weights in [0, 1], centred on voxel
            ``(n_x // 2, n_y // 2, n_z // 2)``.
        voxel_size: (3,) Å.
    """

    weights: torch.Tensor
    voxel_size: np.ndarray

    @property
    def box(self) -> tuple[int, int, int]:
        return tuple(self.weights.shape)

    @property
    def centre(self) -> tuple[int, int, int]:
        return tuple(n // 2 for n in self.box)


def window_geometry(
    voxel_size,
    window: float = DEFAULT_WINDOW,
    soft_edge: float = DEFAULT_SOFT_EDGE,
    shape: str = "sphere",
    device=None,
    dtype: torch.dtype = torch.float32,
) -> WindowGeometry:
    """Window weights for a grid of ``voxel_size`` (3,) Å.

    The box has, along each axis, the smallest FFT-friendly size holding the whole soft window
    (radius ``window/2 + soft_edge/2`` Å either side of the centre voxel).
    """
    if shape not in WINDOW_SHAPES:
        raise InputError(None, f"window shape must be one of {WINDOW_SHAPES}, got {shape!r}")
    if window <= 0 or soft_edge < 0:
        raise InputError(None, f"window ({window} Å) must be positive and soft edge ({soft_edge} Å) non-negative")
    voxel = voxel_size_per_axis(voxel_size)
    radius = window / 2
    reach = np.ceil((radius + soft_edge / 2) / voxel - 1e-6).astype(int)
    box = [fft_size(2 * r + 1) for r in reach]
    offsets = [
        (torch.arange(n, device=device, dtype=torch.float64) - n // 2) * float(h) for n, h in zip(box, voxel)
    ]
    if shape == "sphere":
        x, y, z = torch.meshgrid(*offsets, indexing="ij")
        weights = raised_cosine(torch.sqrt(x * x + y * y + z * z), radius, soft_edge)
    else:
        profiles = [raised_cosine(o.abs(), radius, soft_edge) for o in offsets]
        weights = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return WindowGeometry(weights.to(dtype), voxel.copy())


@dataclass(frozen=True)
class Shells:
    """The window box's :class:`cryomaps.signal.fourier_shells.FourierShells`, as the matrix that
    sums products of spectra per shell over the Fourier voxels that lie in a shell.

    Attributes:
        voxels: (M,) int64 flat rfftn indices of the Fourier voxels inside the last shell (about half
            of the half-spectrum: the corners beyond Nyquist are left out).
        voxel_projection: (2M, n_shells) the rows of :func:`cryomaps.signal.fourier_shells.shell_matrix`
            for those voxels, each twice (for the real and imaginary parts, the interleaved layout of
            ``torch.view_as_real``): ``products @ voxel_projection`` sums per shell.
        frequency: (n_shells,) float64 shell-centre frequencies (1/Å); shell 0 is zero frequency.
    """

    voxels: torch.Tensor
    voxel_projection: torch.Tensor
    frequency: np.ndarray

    @property
    def n_shells(self) -> int:
        return len(self.frequency)


def frequency_shells(box, voxel_size, device=None, dtype: torch.dtype = torch.float32) -> Shells:
    """Frequency shells of a window box ``(n_x, n_y, n_z)`` with voxel size (3,) Å."""
    shells = fourier_shells(box, voxel_size)
    voxels = torch.nonzero(shells.index.flatten() < shells.n_shells)[:, 0]
    voxel_projection = shell_matrix(shells)[voxels].repeat_interleave(2, dim=0)
    return Shells(voxels.to(device), voxel_projection.to(device=device, dtype=dtype), shells.frequency)


def window_fsc(windows1: torch.Tensor, windows2: torch.Tensor, weights: torch.Tensor, shells: Shells) -> torch.Tensor:
    """FSC curves of pairs of windows.

    Args:
        windows1, windows2: (B, n_x, n_y, n_z) raw map values of the windows of each half map.
        weights: (n_x, n_y, n_z) window weights.
        shells: frequency shells of the box.
    Returns:
        (B, n_shells) FSC per shell (0 where a shell has no power).
    """
    total_weight = weights.sum()
    weights_spectrum = torch.fft.rfftn(weights).reshape(-1)[shells.voxels]
    spectra = []
    for windows in (windows1, windows2):
        weighted = windows * weights
        mean = weighted.sum(dim=(1, 2, 3)) / total_weight
        spectrum = torch.fft.rfftn(weighted, dim=(1, 2, 3)).reshape(len(windows), -1).index_select(1, shells.voxels)
        # The transform is linear: removing the weighted mean (mean x weights) before it is
        # subtracting mean x FFT(weights) after it, on the M kept voxels only.
        centred = spectrum - mean[:, None] * weights_spectrum
        spectra.append(torch.view_as_real(centred).reshape(len(windows), -1))  # (B, 2M): re, im pairs
    first, second = spectra
    per_voxel = torch.stack([first * second, first * first, second * second]).reshape(3 * len(first), -1)
    cross, power1, power2 = (per_voxel @ shells.voxel_projection).reshape(3, len(first), -1)
    return correlation_from_sums(cross, power1, power2)


@dataclass(frozen=True)
class StepGrid:
    """Step points on a grid: point ``(k_x, k_y, k_z)`` sits at voxel ``(k_x s_x, k_y s_y, k_z s_z)``.

    Attributes:
        step: (3,) step in voxels along x, y, z.
        counts: (3,) number of step points along each axis; the last one is at or past the last voxel.
    """

    step: tuple[int, int, int]
    counts: tuple[int, int, int]


def step_grid(shape, voxel_size, step: float) -> StepGrid:
    """Step points every ``step`` Å (rounded to whole voxels, at least 1) covering ``shape`` (x, y, z)."""
    if step <= 0:
        raise InputError(None, f"step must be positive, got {step} Å")
    voxel = voxel_size_per_axis(voxel_size)
    steps = tuple(max(1, int(round(step / h))) for h in voxel)
    counts = tuple(int(math.ceil((n - 1) / s)) + 1 for n, s in zip(shape, steps))
    return StepGrid(steps, counts)


def interpolation_matrix(length: int, step: int, count: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(length, count) linear-interpolation weights from step points ``k * step`` to voxels 0..length-1."""
    return linear_interpolation_matrix(torch.arange(length, dtype=torch.float64) / step, count, dtype, device)


def interpolate_step_values(values: torch.Tensor, shape, steps: StepGrid) -> torch.Tensor:
    """Trilinear interpolation of step-point values (k_x, k_y, k_z) onto a grid of ``shape`` (x, y, z)."""
    result = values
    for axis in range(3):
        matrix = interpolation_matrix(shape[axis], steps.step[axis], steps.counts[axis], values.dtype, values.device)
        result = torch.movedim(torch.tensordot(matrix, torch.movedim(result, axis, 0), dims=1), 0, axis)
    return result


def active_step_points(mask: torch.Tensor | None, steps: StepGrid, device=None) -> torch.Tensor:
    """(P, 3) int64 step-point indices to evaluate: all, or those within one step of a mask voxel."""
    if mask is None:
        ranges = [torch.arange(c, device=device) for c in steps.counts]
        return torch.stack(torch.meshgrid(*ranges, indexing="ij"), dim=-1).reshape(-1, 3)
    padding = []
    for axis in (2, 1, 0):
        padding += [0, (steps.counts[axis] - 1) * steps.step[axis] + 1 - mask.shape[axis]]
    padded = torch.nn.functional.pad(mask.float(), padding)
    # Max over the (2 step - 1)-voxel box centred on each step point, evaluated at the step points only.
    near_mask = torch.nn.functional.max_pool3d(
        padded[None, None], kernel_size=[2 * s - 1 for s in steps.step], stride=steps.step,
        padding=[s - 1 for s in steps.step],
    )[0, 0]
    return torch.nonzero(near_mask > 0).to(device)


def estimate_step_resolutions(
    half1: torch.Tensor,
    half2: torch.Tensor,
    points: torch.Tensor,
    steps: StepGrid,
    geometry: WindowGeometry,
    threshold: float,
    window: float,
) -> torch.Tensor:
    """Local resolution (Å) at step points ``points`` (P, 3) of half-map tensors (x, y, z)."""
    box, centre = geometry.box, geometry.centre
    views = []
    for volume in (half1, half2):
        padding = []
        for axis in (2, 1, 0):
            after = (steps.counts[axis] - 1) * steps.step[axis] + (box[axis] - 1 - centre[axis]) - (volume.shape[axis] - 1)
            padding += [centre[axis], max(after, 0)]
        padded = torch.nn.functional.pad(volume, padding)
        for axis in range(3):
            padded = padded.unfold(axis, box[axis], steps.step[axis])
        views.append(padded)
    shells = frequency_shells(box, geometry.voxel_size, device=half1.device, dtype=half1.dtype)
    weights = geometry.weights.to(device=half1.device, dtype=half1.dtype)
    finest = nyquist_resolution(geometry.voxel_size)
    batch = max(1, VOXELS_PER_BATCH // int(np.prod(box)))
    results = []
    for start in range(0, len(points), batch):
        chunk = points[start : start + batch]
        ix, iy, iz = chunk[:, 0], chunk[:, 1], chunk[:, 2]
        fsc = window_fsc(views[0][ix, iy, iz], views[1][ix, iy, iz], weights, shells)
        resolution = crossing_resolution(fsc[:, 1:], shells.frequency[1:], threshold, finest, max(window, finest))
        results.append(resolution)
    return torch.cat(results) if results else half1.new_zeros(0)


def local_resolution(
    half1: DensityMap,
    half2: DensityMap,
    mask: DensityMap | np.ndarray | None = None,
    *,
    window: float = DEFAULT_WINDOW,
    step: float | None = None,
    soft_edge: float = DEFAULT_SOFT_EDGE,
    shape: str = "sphere",
    threshold: float = DEFAULT_THRESHOLD,
    background: float = BACKGROUND_RESOLUTION,
    device: str | torch.device | None = None,
) -> DensityMap:
    """Local resolution map (Å) from two half maps by windowed FSC.

    Args:
        half1, half2: the independent half maps, on the same grid (data indexed (x, y, z)).
        mask: optional mask on the same grid (array (x, y, z) or DensityMap); voxels with value
            > 0.5 are inside.
        window: window diameter at half weight (Å).
        step: distance between step points (Å); default ``window / STEPS_PER_WINDOW``.
        soft_edge: width of the window's raised-cosine edge (Å).
        shape: "sphere" or "cube".
        threshold: FSC threshold (0.143 for half maps; 0.5 is a common stricter choice).
        background: value (Å) written outside the mask.
        device: torch device; default CUDA when available, else CPU.
    Returns:
        DensityMap of local resolution (Å) on the half-map grid (same voxel size and origin).
    Raises:
        InputError: the maps' grids differ, the mask does not match, or a parameter is invalid.
    """
    grid = check_same_grid(half1, half2)
    mask_array = None if mask is None else mask_on_grid(mask, grid)
    if not 0.0 < threshold < 1.0:
        raise InputError(None, f"FSC threshold must lie in (0, 1), got {threshold}")
    device = resolve_device(device)
    steps = step_grid(grid.shape, grid.voxel_size, window / STEPS_PER_WINDOW if step is None else step)
    geometry = window_geometry(grid.voxel_size, window, soft_edge, shape, device=device)
    tensors = [torch.as_tensor(m.data, device=device) for m in (half1, half2)]
    mask_tensor = None if mask_array is None else torch.as_tensor(mask_array, device=device)
    points = active_step_points(mask_tensor, steps, device=device)
    estimates = estimate_step_resolutions(*tensors, points, steps, geometry, threshold, window)
    coarse = torch.zeros(steps.counts, dtype=torch.float32, device=device)
    coarse[points[:, 0], points[:, 1], points[:, 2]] = estimates
    full = interpolate_step_values(coarse, grid.shape, steps)
    if mask_tensor is not None:
        full = torch.where(mask_tensor, full, torch.full_like(full, background))
    return DensityMap.from_grid(full.cpu().numpy(), grid)


def check_same_grid(first: DensityMap, second: DensityMap, names=("half map 1", "half map 2")) -> Grid:
    """The common grid of two maps; InputError when shape, voxel size or origin differ."""
    for label, a, b in (
        ("shape", first.data.shape, second.data.shape),
        ("voxel size", tuple(first.voxel_size), tuple(second.voxel_size)),
        ("origin", tuple(first.origin), tuple(second.origin)),
    ):
        if not np.allclose(a, b, rtol=0, atol=1e-3):
            raise InputError(None, f"{names[0]} and {names[1]} are on different grids: {label} {a} vs {b}")
    return first.grid


def mask_on_grid(mask: DensityMap | np.ndarray, grid: Grid) -> np.ndarray:
    """Boolean (x, y, z) mask (value > 0.5) checked against ``grid``."""
    if isinstance(mask, DensityMap):
        check_same_grid(mask, DensityMap.from_grid(np.zeros(grid.shape, np.float32), grid), ("mask", "half maps"))
        values = mask.data
    else:
        values = np.asarray(mask)
        if values.shape != grid.shape:
            raise InputError(None, f"mask shape {values.shape} differs from the half maps' {grid.shape}")
    inside = values > 0.5
    if not inside.any():
        raise InputError(None, "mask is empty (no voxel above 0.5)")
    return inside


def summary_statistics(locres: DensityMap, mask: np.ndarray | None = None) -> dict:
    """Median, minimum and maximum local resolution (Å) inside ``mask`` (all voxels when None)."""
    values = locres.data if mask is None else locres.data[mask]
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max())}
