"""Differentiable rigid-body poses: rotations without gimbal lock, applied per rigid group.

A pose moves the atoms of one rigid group (the whole model, or one chain) about the group's centre
``c`` (Å): ``x' = R (x - c) + c + t``. Rotations are parametrised either by the continuous 6-D
representation (the first two columns of ``R``, orthonormalised by Gram-Schmidt; Zhou et al. 2019)
or by unit quaternions ``(w, x, y, z)``; neither has the singularities of Euler angles.

Conventions: coordinates in Å, (N, 3) rows (x, y, z); rotation matrices (..., 3, 3) act on column
vectors (``x' = R x``); angles in radians unless a name says degrees.
"""

from __future__ import annotations

import math

import numpy as np
import torch

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""The 6-D representation of the identity rotation (columns e_x, e_y)."""


def rotation_from_6d(six: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from 6-D representations (..., 6).

    ``six[..., :3]`` and ``six[..., 3:]`` are two vectors (any length, not parallel); the first
    column of ``R`` is the first one normalised, the second the component of the second vector
    orthogonal to it, normalised; the third their cross product. Smooth everywhere it is defined.
    """
    first, second = six[..., :3], six[..., 3:]
    column_x = first / first.norm(dim=-1, keepdim=True)
    second = second - (column_x * second).sum(dim=-1, keepdim=True) * column_x
    column_y = second / second.norm(dim=-1, keepdim=True)
    column_z = torch.cross(column_x, column_y, dim=-1)
    return torch.stack((column_x, column_y, column_z), dim=-1)


def rotation_from_quaternion(quaternion: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) ``(w, x, y, z)`` (normalised here)."""
    w, x, y, z = (quaternion / quaternion.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def rotation_about_axis(axis, angle_degrees: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle_degrees`` about ``axis`` (3,), right-handed."""
    axis = np.asarray(axis, dtype=np.float64)
    half = math.radians(angle_degrees) / 2
    quaternion = np.concatenate(([math.cos(half)], math.sin(half) * axis / np.linalg.norm(axis)))
    return rotation_from_quaternion(torch.as_tensor(quaternion)).numpy()


def rotation_angle_degrees(rotation) -> float:
    """Angle (degrees) of a rotation matrix (3, 3)."""
    cosine = (np.trace(np.asarray(rotation, dtype=np.float64)) - 1) / 2
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def rotations_for_step(step_degrees: float) -> int:
    """Number of rotations whose Voronoi cells in SO(3) are balls of radius ``step_degrees``.

    A ball of angular radius w holds the fraction (w - sin w) / pi of SO(3) (Haar measure), so
    ``N = pi / (w - sin w)`` samples leave every rotation within about ``w`` of one of them.
    """
    step = math.radians(step_degrees)
    return max(1, math.ceil(math.pi / (step - math.sin(step))))


def uniform_rotations(count: int, dtype=torch.float64) -> torch.Tensor:
    """``count`` rotation matrices (count, 3, 3) spread uniformly over SO(3), deterministically.

    Super-Fibonacci spirals (Alexa 2022): unit quaternions from two irrational rotation numbers,
    a low-discrepancy sequence in the Haar measure; the first is close to the identity.
    """
    phi = math.sqrt(2.0)
    psi = 1.533751168755204288118041  # the real root of psi^4 = psi + 4
    s = torch.arange(count, dtype=torch.float64) + 0.5
    radius = torch.sqrt(s / count)
    other = torch.sqrt(1.0 - s / count)
    alpha = 2 * math.pi * s / phi
    beta = 2 * math.pi * s / psi
    quaternion = torch.stack(
        (radius * torch.sin(alpha), radius * torch.cos(alpha), other * torch.sin(beta), other * torch.cos(beta)),
        dim=-1,
    )
    return rotation_from_quaternion(quaternion).to(dtype)


def random_rotation(rng: np.random.Generator, angle_degrees: float) -> np.ndarray:
    """(3, 3) rotation by exactly ``angle_degrees`` about a uniformly random axis."""
    return rotation_about_axis(rng.normal(size=3), angle_degrees)


def group_centres(coords: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Centroid (n_groups, 3) Å of the atoms (N, 3) of each group (N,) integer labels 0..n_groups-1."""
    sums = torch.zeros(n_groups, 3, dtype=coords.dtype, device=coords.device).index_add_(0, groups, coords)
    counts = torch.bincount(groups, minlength=n_groups).clamp(min=1).to(coords.dtype)
    return sums / counts[:, None]


def apply_pose(
    coords: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    centres: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Move atoms rigidly: ``x' = R_g (x - c_g) + c_g + t_g`` for each atom's group ``g``.

    Args:
        coords: (N, 3) Å.
        rotations: (G, 3, 3) matrices.
        translations: (G, 3) Å.
        centres: (G, 3) Å, the points each group rotates about.
        groups: (N,) labels in 0..G-1; None means one group (G = 1).
    Returns:
        (N, 3) moved coordinates; differentiable in every tensor argument.
    """
    if groups is None:
        groups = torch.zeros(len(coords), dtype=torch.long, device=coords.device)
    centred = coords - centres[groups]
    rotated = torch.einsum("nij,nj->ni", rotations[groups], centred)
    return rotated + centres[groups] + translations[groups]


class RigidPose(torch.nn.Module):
    """Trainable poses of G rigid groups (6-D rotation + translation), starting at the identity.

    The rotation parameters are scaled by ``lever`` (Å, typically the groups' radius of gyration):
    the 6-D vector is ``IDENTITY_6D + p / lever``, so a unit step of either parameter kind moves
    atoms by about 1 Å and a gradient optimiser sees a well-conditioned problem.
    """

    def __init__(self, n_groups: int, lever: float = 1.0, dtype=torch.float64):
        super().__init__()
        self.lever = float(lever)
        self.rotation_parameters = torch.nn.Parameter(torch.zeros(n_groups, 6, dtype=dtype))
        self.translations = torch.nn.Parameter(torch.zeros(n_groups, 3, dtype=dtype))

    def rotations(self) -> torch.Tensor:
        identity = torch.tensor(IDENTITY_6D, dtype=self.rotation_parameters.dtype)
        return rotation_from_6d(identity + self.rotation_parameters / self.lever)

    def forward(self, coords, centres, groups=None) -> torch.Tensor:
        """Moved coordinates (N, 3), as :func:`apply_pose`."""
        return apply_pose(coords, self.rotations(), self.translations, centres, groups)


def rmsd(first, second) -> float:
    """Root-mean-square distance (Å) between matching atoms of two (N, 3) arrays (no superposition)."""
    difference = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))
