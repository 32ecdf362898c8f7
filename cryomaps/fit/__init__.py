"""Fitting and refinement of atomic models in maps.

- :mod:`cryomaps.fit.pose`: differentiable rigid poses (6-D rotations, quaternions, uniform
  rotation sampling), applied per rigid group about the group's centre.
- :mod:`cryomaps.fit.score`: the model map (one call into the renderer), map sampling,
  correlations and the real-space target with closed-form scale and offset.
- :mod:`cryomaps.fit.local`: local rigid-body fit (coarse to fine, L-BFGS).
- :mod:`cryomaps.fit.global_search`: global search (uniform rotations x FFT translation scan).
- :mod:`cryomaps.fit.refine`: real-space refinement (rigid bodies, coordinates, B-factors,
  occupancies) with the restraints of :mod:`cryomaps.fit.restraints`.

Units: Å, Å², radians unless named degrees; maps indexed (x, y, z) (see :mod:`cryomaps.io.grid`).
"""

from cryomaps.fit.global_search import SearchOptions, fit_global
from cryomaps.fit.local import FitOptions, FitResult, fit_local
from cryomaps.fit.pose import (
    RigidPose,
    apply_pose,
    rotation_from_6d,
    rotation_from_quaternion,
    uniform_rotations,
)
from cryomaps.fit.refine import RefineOptions, RefineResult, refine

__all__ = [
    "FitOptions",
    "FitResult",
    "RefineOptions",
    "RefineResult",
    "RigidPose",
    "SearchOptions",
    "apply_pose",
    "fit_global",
    "fit_local",
    "refine",
    "rotation_from_6d",
    "rotation_from_quaternion",
    "uniform_rotations",
]
