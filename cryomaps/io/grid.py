"""The one place where cryomaps' grid conventions are written down.

Conventions (used by every module of cryomaps):

- Lengths are in Ångström.
- Arrays holding a map are indexed ``(x, y, z)``: ``data[i, j, k]`` is the value at world position
  ``origin + (i, j, k) * voxel_size``. Values are samples at voxel *centres*; voxel ``(0, 0, 0)``
  is centred on ``origin``.
- ``origin`` is the world position (Å) of voxel ``(0, 0, 0)``; ``voxel_size`` has three entries
  (Å), one per axis, so anisotropic sampling is allowed. Only orthogonal cells are supported.
- Geometry is kept as float64 arrays whose values are exactly representable in float32, the
  precision of MRC headers, so that writing and reading a map round-trips exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryomaps.errors import InputError


def nyquist_resolution(voxel_size) -> float:
    """Finest resolution (Å) a map of ``voxel_size`` (Å, scalar or per axis) can hold: twice its coarsest voxel edge."""
    return 2.0 * float(np.max(voxel_size))

MAX_VOXELS = 2_000_000_000
"""Largest grid :meth:`Grid.around` builds (8 GB as float32); beyond it the options are surely wrong."""


def as_header_precision(values) -> np.ndarray:
    """Return ``values`` as a float64 array of 3 numbers rounded to float32 (MRC header) precision."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, 3)
    if array.shape != (3,):
        raise ValueError(f"expected 1 or 3 numbers, got {array.size}")
    return np.asarray(array.astype(np.float32), dtype=np.float64)


@dataclass(frozen=True)
class Grid:
    """A regular orthogonal sampling of space.

    Attributes:
        shape: number of voxels along (x, y, z).
        voxel_size: voxel edge lengths (Å) along (x, y, z).
        origin: world position (Å) of the centre of voxel (0, 0, 0).
    """

    shape: tuple[int, int, int]
    voxel_size: np.ndarray
    origin: np.ndarray

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"grid shape must be 3 positive integers, got {self.shape}")
        voxel_size = as_header_precision(self.voxel_size)
        if np.any(voxel_size <= 0) or not np.all(np.isfinite(voxel_size)):
            raise ValueError(f"voxel size must be positive and finite, got {voxel_size}")
        origin = as_header_precision(self.origin)
        if not np.all(np.isfinite(origin)):
            raise ValueError(f"origin must be finite, got {origin}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "voxel_size", voxel_size)
        object.__setattr__(self, "origin", origin)

    @classmethod
    def around(cls, coords: np.ndarray, voxel_size=1.0, padding: float = 10.0) -> "Grid":
        """Grid covering the bounding box of ``coords`` (N, 3) Å plus ``padding`` Å on every side.

        Raises:
            InputError: no or non-finite coordinates, a voxel size that is not positive and finite,
                a negative or non-finite padding, or a grid of more than :data:`MAX_VOXELS` voxels.
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
        voxel = as_header_precision(voxel_size)
        if len(coords) == 0 or not np.all(np.isfinite(coords)):
            raise InputError(None, "cannot build a box around missing or non-finite coordinates")
        if not (np.all(np.isfinite(voxel)) and np.all(voxel > 0)):
            raise InputError(None, f"voxel size must be positive and finite, got {voxel.tolist()}")
        if not (np.isfinite(padding) and padding >= 0):
            raise InputError(None, f"padding must be a non-negative number of Å, got {float(padding)}")
        low = coords.min(axis=0) - padding
        high = coords.max(axis=0) + padding
        counts = np.floor((high - low) / voxel) + 1
        if float(np.prod(counts)) > MAX_VOXELS:
            raise InputError(None, f"the box around the model would have {' x '.join(f'{c:.0f}' for c in counts)} "
                             f"voxels (over {MAX_VOXELS:.0e}): use a larger voxel size or less padding")
        return cls(tuple(counts.astype(int)), voxel, low)

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def extent(self) -> np.ndarray:
        """Edge lengths (Å) of the box covered by the voxel centres' cells: shape * voxel_size."""
        return np.asarray(self.shape) * self.voxel_size

    def axis_coordinates(self, axis: int) -> np.ndarray:
        """World coordinates (Å) of the voxel centres along one axis (0 = x, 1 = y, 2 = z)."""
        return self.origin[axis] + np.arange(self.shape[axis]) * self.voxel_size[axis]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (N, 3) of world points (N, 3) Å; voxel centres are integers."""
        return (np.asarray(points, dtype=np.float64) - self.origin) / self.voxel_size

    def has_nearest_voxel(self, points: np.ndarray) -> np.ndarray:
        """Bool (N,): the voxel nearest to each world point (N, 3) Å is a voxel of this grid.

        That is, the continuous index (:meth:`world_to_index`) lies in ``[-0.5, n - 0.5)`` on every
        axis (n voxels), so its nearest integer index ``np.rint(index)`` is in ``[0, n - 1]``. Use it
        to look up or splat a point at its nearest voxel.
        """
        index = self.world_to_index(points)
        return np.all((index >= -0.5) & (index < np.asarray(self.shape) - 0.5), axis=-1)

    def within_sampled_box(self, points: np.ndarray) -> np.ndarray:
        """Bool (N,): each world point (N, 3) Å lies between the first and last voxel centres.

        That is, the continuous index (:meth:`world_to_index`) lies in ``[0, n - 1]`` on every axis
        (n voxels, bounds included): trilinear interpolation there needs no value outside the grid.
        """
        index = self.world_to_index(points)
        return np.all((index >= 0) & (index <= np.asarray(self.shape) - 1), axis=-1)

    def resampled_isotropic(self, voxel_size: float) -> "Grid":
        """A grid of isotropic ``voxel_size`` (Å) with this grid's origin, covering its voxel centres.

        Along each axis it has ``floor(span / voxel_size + 1e-6) + 1`` voxels, where ``span`` (Å) is
        the distance from the first to the last voxel centre: its last voxel centre lies within the
        original span (up to 1e-6 voxel for rounding), so resampling onto it never extrapolates.
        """
        span = (np.asarray(self.shape) - 1) * self.voxel_size
        shape = tuple(int(math.floor(length / voxel_size + 1e-6)) + 1 for length in span)
        return Grid(shape, voxel_size, self.origin)

    def index_to_world(self, indices: np.ndarray) -> np.ndarray:
        """World positions (N, 3) Å of continuous voxel indices (N, 3)."""
        return self.origin + np.asarray(indices, dtype=np.float64) * self.voxel_size

    def voxel_centres(self) -> np.ndarray:
        """World positions (nx*ny*nz, 3) Å of all voxel centres, in C order of (x, y, z) indices."""
        axes = [self.axis_coordinates(axis) for axis in range(3)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)
