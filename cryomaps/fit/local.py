"""Local rigid-body fitting of a model into a map (ChimeraX ``fitmap`` score, coarse to fine).

The score of a pose is the correlation about the mean between the model's map at resolution R and
the experimental map over the region the model covers: the model map is rendered once per stage on
a grid around the model (the *template*) with half the experimental map's voxel size
(``TEMPLATE_OVERSAMPLING``), its voxels above ``threshold`` x its maximum are the points of the
region, and the experimental map is sampled trilinearly at those points moved by the pose. Points
at the map's own spacing see trilinear interpolation's smoothing change with every sub-voxel shift,
which makes the score ripple on coarse maps (EMD-8249, 5.28 Å voxels: 6 of 10 perturbed starts
reached the score's own optimum within 1.5 Å, 9 with half-voxel points; the final stage costs about
4x more on the shared pairs, 0.2-0.6 s -> 0.3-3.5 s per fit). Each rigid group (the whole model
or one chain) has its own pose (:class:`cryomaps.fit.pose.RigidPose`); L-BFGS maximises the score.

Coarse to fine: stage resolutions run from ``max(2R, 10 Å)`` down to R (three geometric steps);
at a stage of resolution r > R, the template is rendered at r and the experimental map blurred by
the Gaussian that takes R to r. The returned pose never scores lower at R than the start.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from cryomaps.errors import InputError
from cryomaps.fit.pose import RigidPose, apply_pose, group_centres
from cryomaps.fit.score import model_map, pearson, sample
from cryomaps.io.grid import Grid
from cryomaps.render import DensityModelConfig
from cryomaps.render.gaussian_torch import single_intra_op_thread
from cryomaps.signal import low_pass_to_resolution

RIGID_BODY_MODES = ("model", "chain")
TEMPLATE_OVERSAMPLING = 2  # template points per map voxel along each axis at the final resolution


@dataclass(frozen=True)
class FitOptions:
    """Options of a rigid-body fit.

    Attributes:
        resolution: R (Å) of the experimental map.
        model: density model of the model map (``peng`` or ``molmap``).
        resolution_mode: ``blur`` or ``finite`` (``peng`` only), see :mod:`cryomaps.render`.
        rigid_bodies: ``model`` (one pose) or ``chain`` (one pose per chain).
        stages: resolutions (Å) of the coarse-to-fine stages; None for the default schedule.
        max_iterations: L-BFGS iterations per stage.
        threshold: the region the model covers = template voxels above this fraction of its maximum.
    """

    resolution: float
    model: str = "peng"
    resolution_mode: str = "blur"
    rigid_bodies: str = "model"
    stages: tuple[float, ...] | None = None
    max_iterations: int = 40
    threshold: float = 0.1

    def __post_init__(self):
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise InputError(None, f"resolution must be a positive number of Å, got {self.resolution}")
        if self.rigid_bodies not in RIGID_BODY_MODES:
            raise InputError(None, f"rigid bodies must be one of {RIGID_BODY_MODES}, got {self.rigid_bodies!r}")

    def stage_resolutions(self) -> tuple[float, ...]:
        if self.stages is not None:
            return tuple(self.stages)
        coarse = max(2.0 * self.resolution, 10.0)
        return (coarse, math.sqrt(coarse * self.resolution), self.resolution)

    def density_config(self, resolution: float) -> DensityModelConfig:
        return DensityModelConfig(model=self.model, resolution=resolution, resolution_mode=self.resolution_mode)


@dataclass
class FitResult:
    """A fitted pose.

    Attributes:
        coords: (N, 3) moved coordinates, Å.
        rotations: (G, 3, 3) and translations: (G, 3) Å, in world form ``x' = R x + t`` per group.
        group_names: name of each rigid group (``"model"`` or the chain names).
        score_before, score_after: correlation about the mean at R over the model's region
            (:func:`score_model` at the start and at the end).
        seconds: wall time.
        stage_scores: score at the end of each stage (at that stage's resolution).
    """

    coords: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    group_names: list
    score_before: float
    score_after: float
    seconds: float
    stage_scores: list = field(default_factory=list)

    def summary(self) -> dict:
        """Plain-Python description (for JSON logs)."""
        return {
            "score_before": self.score_before,
            "score_after": self.score_after,
            "seconds": self.seconds,
            "stage_scores": self.stage_scores,
            "groups": [
                {"name": name, "rotation": rotation.tolist(), "translation_A": translation.tolist()}
                for name, rotation, translation in zip(self.group_names, self.rotations, self.translations)
            ],
        }


def rigid_groups(structure, mode: str) -> tuple[np.ndarray, list]:
    """Group label (N,) of every atom and the group names, for ``mode`` ``model`` or ``chain``."""
    if mode == "model":
        return np.zeros(structure.n_atoms, dtype=np.int64), ["model"]
    names, labels = np.unique(structure.chain_ids, return_inverse=True)
    return labels.astype(np.int64), [str(name) for name in names]


class Template:
    """The model's map at one resolution, as points (M, 3) Å with values (M,) and group labels (M,).

    Points are the voxel centres of a grid around the model (voxel size ``voxel_size``) where the
    model map exceeds ``threshold`` x its maximum; each point belongs to the group whose own map is
    largest there.
    """

    def __init__(self, tensors: dict, groups: torch.Tensor, n_groups: int, voxel_size, config, threshold):
        coords = tensors["coords"]
        grid = Grid.around(coords.numpy(), voxel_size=voxel_size, padding=1.5 * config.resolution)
        maps = torch.stack([
            model_map(coords[groups == g], tensors["atomic_numbers"][groups == g], tensors["b_factors"][groups == g],
                      tensors["occupancies"][groups == g], grid, config)
            for g in range(n_groups)
        ])
        total = maps.sum(dim=0)
        inside = total > threshold * total.max()
        self.points = torch.as_tensor(grid.voxel_centres(), dtype=coords.dtype)[inside.reshape(-1)]
        self.values = total[inside]
        self.groups = maps.argmax(dim=0)[inside]


def score_pose(template: Template, map_data, map_grid, rotations, translations, centres) -> torch.Tensor:
    """Correlation about the mean between the template and the map sampled at the moved points."""
    moved = apply_pose(template.points, rotations, translations, centres, template.groups)
    return pearson(template.values, sample(map_data, map_grid, moved))


def score_model(structure, density_map, options: FitOptions, coords: np.ndarray | None = None) -> float:
    """The fit score at R of ``structure`` placed at ``coords`` (default its own), without moving it."""
    tensors = structure.to_tensors(dtype=torch.float64)
    if coords is not None:
        tensors["coords"] = torch.as_tensor(np.asarray(coords, dtype=np.float64))
    labels, names = rigid_groups(structure, options.rigid_bodies)
    spacing = float(np.min(density_map.voxel_size)) / TEMPLATE_OVERSAMPLING
    template = Template(tensors, torch.as_tensor(labels), len(names), spacing,
                        options.density_config(options.resolution), options.threshold)
    experimental = torch.as_tensor(density_map.data, dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64).expand(len(names), 3, 3)
    zeros = torch.zeros(len(names), 3, dtype=torch.float64)
    return float(score_pose(template, experimental, density_map.grid, identity, zeros, zeros))


def stage_maps(density_map, options: FitOptions) -> list[torch.Tensor]:
    """The map (nx, ny, nz) float64 blurred to each of the options' stage resolutions, as its
    deviation from its mean (zero padding then adds no edge at the box)."""
    experimental = torch.as_tensor(density_map.data, dtype=torch.float64)
    deviation = experimental - experimental.mean()
    return [low_pass_to_resolution(deviation, density_map.voxel_size, options.resolution, stage)
            for stage in options.stage_resolutions()]


@dataclass
class _StagedFit:
    """The pose after the coarse-to-fine stages, with the atoms and groups it moves."""

    tensors: dict
    groups: torch.Tensor
    names: list
    centres: torch.Tensor
    pose: RigidPose
    stage_scores: list


def fit_stages(structure, density_map, options: FitOptions, start: np.ndarray, maps: list | None = None) -> _StagedFit:
    """The coarse-to-fine L-BFGS stages of :func:`fit_local` from coordinates ``start`` (N, 3) Å,
    on ``maps`` (:func:`stage_maps`, computed when not given); no before/after scoring."""
    tensors = structure.to_tensors(dtype=torch.float64)
    tensors["coords"] = torch.as_tensor(np.asarray(start, dtype=np.float64))
    labels, names = rigid_groups(structure, options.rigid_bodies)
    groups = torch.as_tensor(labels)
    centres = group_centres(tensors["coords"], groups, len(names))
    lever = float(torch.sqrt(((tensors["coords"] - centres[groups]) ** 2).sum(dim=1).mean()))
    pose = RigidPose(len(names), lever=max(lever, 1.0))
    grid = density_map.grid
    fine = float(np.min(grid.voxel_size)) / TEMPLATE_OVERSAMPLING
    stage_scores = []
    for stage_resolution, stage_map in zip(options.stage_resolutions(), maps or stage_maps(density_map, options)):
        config = options.density_config(stage_resolution)
        spacing = fine if stage_resolution <= options.resolution else max(fine, stage_resolution / 4)
        template = Template(tensors, groups, len(names), spacing, config, options.threshold)
        stage_scores.append(_maximise(pose, template, stage_map, grid, centres, options.max_iterations))
    return _StagedFit(tensors, groups, names, centres, pose, stage_scores)


def fit_local(
    structure, density_map, options: FitOptions, coords: np.ndarray | None = None, maps: list | None = None
) -> FitResult:
    """Fit ``structure`` (starting at ``coords``, default its own) rigidly into ``density_map``
    (``maps``: its :func:`stage_maps`, when the caller fits many starts into one map)."""
    started = time.perf_counter()
    start = np.asarray(structure.coords if coords is None else coords, dtype=np.float64)
    staged = fit_stages(structure, density_map, options, start, maps)
    pose, centres = staged.pose, staged.centres
    with torch.no_grad():
        # scores from templates rendered at the start and at the end: a template rendered in one
        # orientation and sampled after a large rotation scores lower (trilinear interpolation off
        # the map's lattice), so fits from different starts are compared on equal terms
        before = score_model(structure, density_map, options, coords=start)
        after = score_model(structure, density_map, options, coords=pose(staged.tensors["coords"], centres, staged.groups).numpy())
        if not after >= before:  # never return a worse fit than the start (also catches NaN)
            torch.nn.init.zeros_(pose.rotation_parameters)
            torch.nn.init.zeros_(pose.translations)
            after = before
        rotations = pose.rotations()
        moved = pose(staged.tensors["coords"], centres, staged.groups)
        world_translations = centres + pose.translations - torch.einsum("gij,gj->gi", rotations, centres)
    return FitResult(
        coords=moved.numpy(),
        rotations=rotations.numpy(),
        translations=world_translations.numpy(),
        group_names=staged.names,
        score_before=before,
        score_after=after,
        seconds=time.perf_counter() - started,
        stage_scores=staged.stage_scores,
    )


@single_intra_op_thread()  # small tensors: one thread is faster, and much faster on a busy machine
def _maximise(pose: RigidPose, template: Template, map_data, grid, centres, max_iterations: int) -> float:
    """L-BFGS on the pose's parameters (in place) maximising the score; keeps the best pose seen."""
    optimiser = torch.optim.LBFGS(pose.parameters(), max_iter=max_iterations, line_search_fn="strong_wolfe")
    best = {"score": -math.inf, "state": None}

    def closure():
        optimiser.zero_grad()
        score = score_pose(template, map_data, grid, pose.rotations(), pose.translations, centres)
        if float(score.detach()) > best["score"]:
            best["score"] = float(score.detach())
            best["state"] = [p.detach().clone() for p in pose.parameters()]
        (-score).backward()
        return -score

    optimiser.step(closure)
    closure()
    with torch.no_grad():
        for parameter, value in zip(pose.parameters(), best["state"]):
            parameter.copy_(value)
    return best["score"]
