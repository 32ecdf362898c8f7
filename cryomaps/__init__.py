"""cryomaps: differentiable cryo-EM density maps from atomic models, and networks that learn from real maps.

Conventions (Å, (x, y, z) array order, origin = world position of voxel (0, 0, 0)) are described in
:mod:`cryomaps.io.grid`.
"""

__version__ = "0.1.0"
