"""Structures (gemmi) and maps (mrcfile) as typed objects in cryomaps' conventions.

See :mod:`cryomaps.io.grid` for units and axis order.
"""

from cryomaps.io.grid import Grid
from cryomaps.io.maps import DensityMap, read_map, resample_map, sample_map, write_map
from cryomaps.io.structures import Structure, read_structure

__all__ = [
    "DensityMap",
    "Grid",
    "Structure",
    "read_map",
    "read_structure",
    "resample_map",
    "sample_map",
    "write_map",
]
