"""Fitting and refinement of atomic models in maps.

- :mod:`cryomaps.fit.pose`: differentiable rigid poses (6-D rotations, quaternions, uniform
  rotation sampling), applied per rigid group about the group's centre.
- :mod:`cryomaps.fit.score`: the model map (one call into the renderer), map sampling,
  correlations and the real-space target with closed-form scale and offset.
- :mod:`cryomaps.fit.local`: local rigid-body fit (coarse to fine, L-BFGS).
- :mod:`cryomaps.fit.global_search`: global search (uniform rotations x FFT translation scan).

Units: Å, Å², radians unless named degrees; maps indexed (x, y, z) (see :mod:`cryomaps.io.grid`).
"""

from cryomaps.fit.local import FitOptions, FitResult, fit_local
from cryomaps.fit.pose import (
    RigidPose,
    apply_pose,
    rotation_from_6d,
    rotation_from_quaternion,
    uniform_rotations,
)

__all__ = [
    "FitOptions",
    "FitResult",
    "RigidPose",
    "apply_pose",
    "fit_local",
    "rotation_from_6d",
    "rotation_from_quaternion",
    "uniform_rotations",
]
