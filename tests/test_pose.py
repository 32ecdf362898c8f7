"""Differentiable poses: rotation parametrisations against independent constructions, gradients by gradcheck."""

import math

import numpy as np
import pytest
import torch

from cryomaps.fit.pose import (
    RigidPose,
    apply_pose,
    group_centres,
    rotation_about_axis,
    rotation_angle_degrees,
    rotation_from_6d,
    rotation_from_quaternion,
    rotations_for_step,
    uniform_rotations,
)


def test_quaternion_matches_rodrigues_formula():
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    angle = math.radians(37.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rodrigues = np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    np.testing.assert_allclose(rotation_about_axis(axis, 37.0), rodrigues, atol=1e-12)
    assert rotation_angle_degrees(rodrigues) == pytest.approx(37.0)


def test_6d_representation_recovers_any_rotation_from_its_first_two_columns():
    rotations = uniform_rotations(50)
    six = torch.cat((rotations[..., 0], rotations[..., 1]), dim=-1)
    # scaled and skewed copies of the columns describe the same rotation
    skewed = torch.cat((3 * six[:, :3], six[:, 3:] + 0.7 * six[:, :3]), dim=-1)
    torch.testing.assert_close(rotation_from_6d(skewed), rotations, atol=1e-12, rtol=0)


def test_uniform_rotations_are_proper_and_cover_so3_evenly():
    rotations = uniform_rotations(2000)
    identity = torch.eye(3, dtype=torch.float64).expand_as(rotations)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), identity, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(2000, dtype=torch.float64))
    # Haar measure: the rotation angle w has density (1 - cos w) / pi on [0, pi], mean pi/2 + 2/pi
    traces = rotations.diagonal(dim1=1, dim2=2).sum(-1)
    angles = torch.arccos(((traces - 1) / 2).clamp(-1, 1))
    assert float(angles.mean()) == pytest.approx(math.pi / 2 + 2 / math.pi, abs=0.02)
    # the z axis of the rotated frames covers the sphere evenly: mean direction near zero
    assert float(rotations[:, :, 2].mean(dim=0).norm()) < 0.02


def test_rotation_count_shrinks_with_a_coarser_step_and_covers_the_group():
    assert rotations_for_step(10.0) > rotations_for_step(20.0) > rotations_for_step(40.0)
    rotations = uniform_rotations(rotations_for_step(20.0))
    probes = torch.as_tensor(np.stack([rotation_about_axis(np.random.default_rng(i).normal(size=3), 120.0 * (i % 3 + 0.3)) for i in range(20)]))
    relative = torch.einsum("pji,rjk->prik", probes, rotations)
    angles = torch.rad2deg(torch.arccos(((relative.diagonal(dim1=2, dim2=3).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert float(angles.min(dim=1).values.max()) < 30.0  # every probe within 1.5 steps of a sample


def test_apply_pose_rotates_each_group_about_its_centre():
    coords = torch.tensor([[0.0, 0, 0], [2, 0, 0], [10, 0, 0], [10, 2, 0]], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1])
    centres = group_centres(coords, groups, 2)
    torch.testing.assert_close(centres, torch.tensor([[1.0, 0, 0], [10, 1, 0]], dtype=torch.float64))
    quarter = torch.as_tensor(rotation_about_axis([0, 0, 1], 90.0))
    rotations = torch.stack((quarter, torch.eye(3, dtype=torch.float64)))
    moved = apply_pose(coords, rotations, torch.tensor([[0.0, 0, 0], [0, 0, 5]], dtype=torch.float64), centres, groups)
    expected = torch.tensor([[1.0, -1, 0], [1, 1, 0], [10, 0, 5], [10, 2, 5]], dtype=torch.float64)
    torch.testing.assert_close(moved, expected, atol=1e-12, rtol=0)


def test_pose_gradients_pass_gradcheck_in_float64():
    generator = torch.Generator().manual_seed(0)
    coords = torch.randn(7, 3, generator=generator, dtype=torch.float64) * 5
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    centres = group_centres(coords, groups, 2)
    six = torch.randn(2, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    quaternion = torch.randn(2, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    translation = torch.randn(2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, t: apply_pose(coords, rotation_from_6d(s), t, centres, groups), (six, translation))
    assert torch.autograd.gradcheck(lambda q, t: apply_pose(coords, rotation_from_quaternion(q), t, centres, groups), (quaternion, translation))


def test_rigid_pose_starts_at_identity_and_trains():
    coords = torch.randn(20, 3, dtype=torch.float64) * 4
    centres = coords.mean(dim=0, keepdim=True)
    pose = RigidPose(1, lever=4.0)
    torch.testing.assert_close(pose(coords, centres), coords)
    target = apply_pose(coords, torch.as_tensor(rotation_about_axis([1, 1, 0], 15.0))[None], torch.tensor([[1.0, -2, 0.5]], dtype=torch.float64), centres)
    optimiser = torch.optim.LBFGS(pose.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ((pose(coords, centres) - target) ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    assert float((pose(coords, centres).detach() - target).norm(dim=1).max()) < 1e-5
