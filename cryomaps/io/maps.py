"""Reading and writing MRC/CCP4 maps (``.mrc``, ``.map``, ``.ccp4``, optionally gzipped).

The only place where the file's axis order is converted: a :class:`DensityMap` always holds data
indexed (x, y, z) (see :mod:`cryomaps.io.grid`).

Header rules:
- MAPC/MAPR/MAPS say which of x, y, z the columns, rows and sections run along; any permutation
  is accepted.
- Voxel size = CELLA / (MX, MY, MZ) per axis; anisotropic voxels are kept.
- Origin = the ORIGIN field when it is non-zero, else (NXSTART, NYSTART, NZSTART) * voxel size,
  the starts being permuted to x, y, z like the data. The two are never added (EMD-6374 has both
  set and the ORIGIN field alone places the map on its model).
- Non-orthogonal cells (CELLB not 90°) are rejected.
Written maps use MAPC/MAPR/MAPS = 1, 2, 3, NXSTART = 0 and the ORIGIN field, which ChimeraX,
gemmi, RELION and Coot all read.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryomaps.errors import InputError, OutputError, require_file
from cryomaps.io.atomic import atomic_output
from cryomaps.io.grid import Grid, as_header_precision


@dataclass
class DensityMap:
    """A density map: data indexed (x, y, z) with its geometry.

    Attributes:
        data: float32 array of shape (nx, ny, nz).
        voxel_size: (3,) voxel edge lengths in Å along x, y, z.
        origin: (3,) world position in Å of the centre of voxel (0, 0, 0).
    """

    data: np.ndarray
    voxel_size: np.ndarray
    origin: np.ndarray

    def __post_init__(self):
        self.data = np.ascontiguousarray(self.data, dtype=np.float32)
        if self.data.ndim != 3:
            raise ValueError(f"map data must be 3-D (x, y, z), got shape {self.data.shape}")
        self.voxel_size = as_header_precision(self.voxel_size)
        self.origin = as_header_precision(self.origin)

    @classmethod
    def from_grid(cls, data, grid: Grid) -> "DensityMap":
        """Wrap ``data`` (nx, ny, nz) array or tensor sampled on ``grid``."""
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        if tuple(np.shape(data)) != grid.shape:
            raise ValueError(f"data shape {np.shape(data)} does not match grid shape {grid.shape}")
        return cls(np.asarray(data), grid.voxel_size, grid.origin)

    @property
    def grid(self) -> Grid:
        return Grid(self.data.shape, self.voxel_size, self.origin)


MAP_SUFFIXES = (".mrc", ".map", ".ccp4", ".mrcs", ".rec")
"""File name endings (lower case, before any ``.gz``) of the map formats :func:`read_map` reads."""


def read_map(path: str | os.PathLike, allow_nan: bool = False) -> DensityMap:
    """Read an MRC/CCP4 map (gzip or bzip2 compressed files are detected) into (x, y, z) order.

    Raises:
        InputError: the file is missing, not an MRC/CCP4 map, truncated, has a non-orthogonal cell,
            a zero cell or (unless ``allow_nan``) NaN or infinite values.
    """
    import mrcfile

    path = require_file(path)
    _check_identifier(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Permissive: tolerate harmless header faults (EMD-6374 has a zero machine stamp);
            # the checks that matter are done here.
            with mrcfile.open(path, mode="r", permissive=True) as mrc:
                header = mrc.header.copy()
                if mrc.data is not None and np.iscomplexobj(mrc.data):
                    raise InputError(path, f"complex-valued map (MODE {int(mrc.header.mode)}) is not a density map")
                raw = None if mrc.data is None else np.asarray(mrc.data, dtype=np.float32).copy()
    except (ValueError, EOFError, OSError) as error:
        raise InputError(path, f"not a readable MRC/CCP4 map ({_first_line(error)})") from None
    problems = [_first_line(w.message) for w in caught if not _is_harmless(w.message)]
    if raw is None:
        raise InputError(path, f"truncated or unreadable map data ({problems[0] if problems else 'no data'})")
    if problems:  # e.g. a file size that does not match the header's MODE and dimensions
        raise InputError(path, f"inconsistent MRC header or data ({problems[0]})")
    if raw.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, found {raw.ndim}-D data of shape {raw.shape}")
    return _map_from_header(path, header, raw, allow_nan)


def _check_identifier(path: Path) -> None:
    """Refuse a file without the 1024-byte header and its 'MAP ' identifier before mrcfile parses it
    (mrcfile would first allocate the "extended header" that the random bytes of a foreign file announce)."""
    import bz2
    import gzip

    with open(path, "rb") as stream:
        magic = stream.read(3)
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic == b"BZh" else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(1024)
    except (OSError, EOFError) as error:
        raise InputError(path, f"not a readable MRC/CCP4 map ({_first_line(error)})") from None
    if len(header) < 1024:
        raise InputError(path, f"not an MRC/CCP4 map (only {len(header)} bytes, shorter than the 1024-byte header)")
    if header[208:212] != b"MAP ":
        raise InputError(path, "not an MRC/CCP4 map (no 'MAP ' identifier in the header)")


_HARMLESS_WARNINGS = ("machine stamp",)
"""mrcfile warnings about header fields cryomaps does not use (EMD-6374 has a zero machine stamp)."""


def _is_harmless(message) -> bool:
    return any(phrase in str(message).lower() for phrase in _HARMLESS_WARNINGS)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _map_from_header(path: Path, header, raw: np.ndarray, allow_nan: bool) -> DensityMap:
    """Convert mrcfile's (section, row, column) data and header into a :class:`DensityMap`."""
    axis_of_dim = [int(header.mapc), int(header.mapr), int(header.maps)]  # column, row, section
    if sorted(axis_of_dim) != [1, 2, 3]:
        raise InputError(path, f"invalid axis order MAPC/MAPR/MAPS = {axis_of_dim}")
    angles = np.array([header.cellb.alpha, header.cellb.beta, header.cellb.gamma], dtype=np.float64)
    if np.any(np.abs(angles - 90.0) > 1e-3) and np.any(angles != 0.0):
        raise InputError(path, f"non-orthogonal cell (angles {angles.tolist()}) is not supported")

    # raw is indexed (section, row, column); array axis 2 runs along axis_of_dim[0], etc.
    file_axis_of_array_axis = [axis_of_dim[2], axis_of_dim[1], axis_of_dim[0]]
    data = np.transpose(raw, [file_axis_of_array_axis.index(axis) for axis in (1, 2, 3)])

    sampling = np.array([header.mx, header.my, header.mz], dtype=np.float64)
    cell = np.array([header.cella.x, header.cella.y, header.cella.z], dtype=np.float64)
    if np.any(sampling <= 0) or np.any(cell <= 0):
        raise InputError(path, f"invalid cell: dimensions {cell.tolist()} Å over {sampling.tolist()} samples")
    voxel_size = cell / sampling

    origin_field = np.array([header.origin.x, header.origin.y, header.origin.z], dtype=np.float64)
    starts_by_dim = [int(header.nxstart), int(header.nystart), int(header.nzstart)]
    starts_xyz = np.array([starts_by_dim[axis_of_dim.index(axis)] for axis in (1, 2, 3)], dtype=np.float64)
    origin = origin_field if np.any(origin_field != 0.0) else starts_xyz * voxel_size
    if not np.all(np.isfinite(origin)):
        raise InputError(path, f"invalid origin {origin.tolist()}")

    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad and not allow_nan:
        raise InputError(path, f"map contains {n_bad} NaN or infinite values")
    return DensityMap(data, voxel_size, origin)


def write_map(path: str | os.PathLike, density_map: DensityMap, label: str = "written by cryomaps") -> Path:
    """Write ``density_map`` atomically (temporary file in the same folder, then rename).

    A name ending in ``.gz`` is gzip-compressed. The header carries MAPC/MAPR/MAPS = 1, 2, 3,
    NXSTART = 0, the ORIGIN field = ``density_map.origin``, CELLA = shape * voxel size and the
    statistics DMIN/DMAX/DMEAN/RMS, so the map overlays its model in ChimeraX and gemmi. Returns the
    path written.

    Raises:
        OutputError: the map holds NaN or infinite values (nothing is written).
    """
    path = Path(path)
    check_finite(density_map.data, path)
    with atomic_output(path) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.name.endswith(".gz"):
            _write_compressed(temporary, density_map, label)
        else:
            _write_by_sections(temporary, density_map, label)
    return path


def _write_compressed(path: Path, density_map: DensityMap, label: str) -> None:
    """mrcfile writes the whole map, gzip-compressed: one copy into the file's (z, y, x) order;
    ``set_data`` also fills the header statistics."""
    import mrcfile

    with mrcfile.new(path, overwrite=True, compression="gzip") as mrc:
        mrc.set_data(np.ascontiguousarray(density_map.data.transpose(2, 1, 0), dtype=np.float32))
        _set_geometry(mrc.header, density_map)
        mrc.add_label(label[:80])


def _write_by_sections(path: Path, density_map: DensityMap, label: str) -> None:
    """mrcfile writes the header of a float32 file of the map's size; the data follow one z-section
    at a time (:func:`_write_sections`), and the header statistics come from those sections. No
    full-size copy is made: a transposed copy of a large map into fresh memory costs more than the
    rest of the write."""
    import mrcfile

    nx, ny, nz = density_map.data.shape
    with mrcfile.new_mmap(path, shape=(nz, ny, nx), mrc_mode=2, fill=None, overwrite=True) as mrc:
        _set_geometry(mrc.header, density_map)
        mrc.add_label(label[:80])
        with open(path, "r+b") as stream:
            stream.seek(mrc.header.nbytes + mrc.extended_header.nbytes)
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean, mrc.header.rms = _write_sections(stream, density_map.data)


def _write_sections(stream, data: np.ndarray) -> tuple[float, float, float, float]:
    """Write ``data`` (x, y, z) to ``stream`` in the file's (z, y, x) order, each z-section transposed
    into one reused float32 (y, x) buffer; returns its min, max, mean and RMS deviation."""
    nx, ny, nz = data.shape
    section = np.empty((ny, nx), dtype=np.float32)
    minimum, maximum, total, total_squares = np.inf, -np.inf, 0.0, 0.0
    for z in range(nz):
        np.copyto(section, data[:, :, z].T)
        stream.write(section)
        minimum, maximum = min(minimum, float(section.min())), max(maximum, float(section.max()))
        total += float(section.sum(dtype=np.float64))
        total_squares += float(np.square(section, dtype=np.float64).sum())
    count = max(nx * ny * nz, 1)
    mean = total / count
    return minimum, maximum, mean, float(np.sqrt(max(total_squares / count - mean * mean, 0.0)))


def check_finite(data: np.ndarray, path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` when ``data`` holds NaN or infinite values (min and max tell: NaN propagates)."""
    if data.size and np.isfinite(data.min()) and np.isfinite(data.max()):
        return
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    raise OutputError(path, f"refusing to write a map with {n_bad} NaN or infinite values (the inputs or options "
                      "produced no finite result)")


def _set_geometry(header, density_map: DensityMap) -> None:
    shape = density_map.data.shape
    header.mapc, header.mapr, header.maps = 1, 2, 3
    header.nxstart = header.nystart = header.nzstart = 0
    header.mx, header.my, header.mz = shape
    cell = density_map.voxel_size * np.asarray(shape)
    header.cella = tuple(float(value) for value in cell)
    header.cellb = (90.0, 90.0, 90.0)
    header.origin = tuple(float(value) for value in density_map.origin)


def sample_map(density_map: DensityMap, points, fill_value: float = 0.0, chunk_size: int = 1 << 20) -> np.ndarray:
    """Trilinearly interpolate the map at world points.

    Args:
        density_map: the map.
        points: (N, 3) world positions in Å.
        fill_value: value for points outside the box spanned by the voxel centres.
        chunk_size: points processed at once (bounds memory).
    Returns:
        (N,) float64 values.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    values = np.empty(len(points), dtype=np.float64)
    for start in range(0, len(points), chunk_size):
        stop = start + chunk_size
        values[start:stop] = _trilinear(density_map, points[start:stop], fill_value)
    return values


def _trilinear(density_map: DensityMap, points: np.ndarray, fill_value: float) -> np.ndarray:
    data = density_map.data
    grid = density_map.grid
    shape = np.asarray(data.shape)
    inside = grid.within_sampled_box(points)
    index = np.clip(grid.world_to_index(points), 0, shape - 1)
    low = np.minimum(np.floor(index).astype(np.int64), np.maximum(shape - 2, 0))
    frac = index - low
    high = np.minimum(low + 1, shape - 1)
    values = np.zeros(len(points), dtype=np.float64)
    for corner in range(8):
        pick = [(corner >> axis) & 1 for axis in range(3)]
        ix, iy, iz = (np.where(pick[axis], high[:, axis], low[:, axis]) for axis in range(3))
        weight = np.prod([np.where(pick[axis], frac[:, axis], 1.0 - frac[:, axis]) for axis in range(3)], axis=0)
        values += weight * data[ix, iy, iz]
    values[~inside] = fill_value
    return values


def resample_map(density_map: DensityMap, target_grid: Grid, fill_value: float = 0.0) -> DensityMap:
    """Trilinear resampling of ``density_map`` onto ``target_grid`` (values at its voxel centres).

    Works through blocks of x-planes so memory stays bounded for large grids.
    """
    nx, ny, nz = target_grid.shape
    out = np.empty(target_grid.shape, dtype=np.float32)
    planes_per_block = max(1, (1 << 20) // (ny * nz))
    y_axis, z_axis = target_grid.axis_coordinates(1), target_grid.axis_coordinates(2)
    for start in range(0, nx, planes_per_block):
        x_axis = target_grid.axis_coordinates(0)[start : start + planes_per_block]
        mesh = np.meshgrid(x_axis, y_axis, z_axis, indexing="ij")
        points = np.stack([m.reshape(-1) for m in mesh], axis=1)
        out[start : start + len(x_axis)] = sample_map(density_map, points, fill_value).reshape(len(x_axis), ny, nz)
    return DensityMap.from_grid(out, target_grid)
