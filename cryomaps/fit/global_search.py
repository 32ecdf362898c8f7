"""Global rigid-body search: uniform rotations x all translations at once by FFT, then local fits.

For each rotation of a uniform set (super-Fibonacci, :func:`cryomaps.fit.pose.uniform_rotations`),
the model's map at the search resolution (the *template*, rendered from the rotated atoms on a
cube around the model's centre) is compared with the experimental map at every integer shift on a
coarse grid at once. The score is the local correlation about the mean over the template's region
(voxels above ``threshold`` x its maximum), as in PowerFit / Situs colores: for region m and
template t, ``[Σ m t ρ - Σ m t · Σ m ρ / n] / sqrt([Σ m t² - (Σ m t)²/n][Σ m ρ² - (Σ m ρ)²/n])``,
where each sum over a shifted region is one FFT cross-correlation (the experimental map's
transforms are computed once). Shifts are kept where the model's centre stays inside the map box.

The best shift of each rotation is a candidate; the z-score of a candidate is its score minus the
mean over all rotations' best scores, over their standard deviation. The top ``n_candidates``
(distinct by more than the search resolution in RMSD) are fitted by
:func:`cryomaps.fit.local.fit_local` at its coarsest stage; the ``n_refined`` best of those go
through the whole coarse-to-fine fit and are returned ranked by their final score. (On the small
EMD-5623 zone map the right placement ranked below 12th in the scan (z-score 2.3) and first after
the coarse fits.)

Angular step: ``step = degrees(r_s / radius)`` clamped to [6°, 30°], with r_s the search
resolution ``max(R, 8 Å)`` and ``radius`` the model's largest distance from its centre: a step
moves the outermost atoms by about one search resolution, inside the capture range of the local fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from cryomaps.devices import resolve_device
from cryomaps.fit.local import FitOptions, FitResult, fit_local, fit_stages, stage_maps
from cryomaps.fit.pose import rmsd, rotations_for_step, uniform_rotations
from cryomaps.fit.score import model_map
from cryomaps.io.grid import Grid
from cryomaps.io.maps import DensityMap, resample_map
from cryomaps.render.finite_resolution import fft_size
from cryomaps.render.gaussian_torch import single_intra_op_thread
from cryomaps.signal import low_pass_to_resolution

SEARCH_RESOLUTION_FLOOR_A = 8.0
STEP_RANGE_DEGREES = (6.0, 30.0)


@dataclass(frozen=True)
class SearchOptions:
    """Options of the global search (besides the local-fit options it refines with).

    Attributes:
        step_degrees: angular step; None chooses it from the resolution and the model's radius.
        n_solutions: solutions returned (the best first).
        n_candidates: best distinct placements of the scan fitted at the coarsest stage only.
        n_refined: best of those (by coarse score) fitted through every stage (at least ``n_solutions``).
        batch_size: rotations scored at once.
        device: torch device for the scan (None: cuda when available, else cpu).
        progress: show a progress bar.
    """

    step_degrees: float | None = None
    n_solutions: int = 1
    n_candidates: int = 30
    n_refined: int = 8
    batch_size: int = 8
    device: str | None = None
    progress: bool = False


@dataclass
class Solution:
    """One solution of the global search: the refined fit, its scan score and z-score."""

    fit: FitResult
    scan_score: float
    z_score: float


@dataclass
class SearchResult:
    solutions: list
    n_rotations: int
    step_degrees: float
    seconds: float

    def summary(self) -> dict:
        return {
            "n_rotations": self.n_rotations,
            "step_degrees": self.step_degrees,
            "seconds": self.seconds,
            "solutions": [
                {"rank": rank + 1, "score": s.fit.score_after, "scan_score": s.scan_score, "z_score": s.z_score,
                 **{k: v for k, v in s.fit.summary().items() if k == "groups"}}
                for rank, s in enumerate(self.solutions)
            ],
        }


def search_resolution(resolution: float) -> float:
    return max(resolution, SEARCH_RESOLUTION_FLOOR_A)


def angular_step(resolution: float, radius: float) -> float:
    """Default angular step (degrees), see the module docstring."""
    step = math.degrees(search_resolution(resolution) / max(radius, 1e-6))
    return float(np.clip(step, *STEP_RANGE_DEGREES))


def fit_global(structure, density_map: DensityMap, options: FitOptions, search: SearchOptions = SearchOptions()) -> SearchResult:
    """Place ``structure`` anywhere in ``density_map`` in any orientation (see the module docstring)."""
    started = time.perf_counter()
    device = resolve_device(search.device)
    coords = np.asarray(structure.coords, dtype=np.float64)
    centre = coords.mean(axis=0)
    radius = float(np.sqrt(((coords - centre) ** 2).sum(axis=1)).max())
    step = search.step_degrees or angular_step(options.resolution, radius)
    rotations = uniform_rotations(rotations_for_step(step))
    scan = _Scan(structure, density_map, options, radius, device)
    best_scores, best_moves = scan.run(rotations, search.batch_size, search.progress)
    spread = float(best_scores.std()) or 1.0
    z_scores = (best_scores - best_scores.mean()) / spread
    chosen = _distinct_candidates(coords, centre, rotations.numpy(), best_moves, best_scores,
                                  max(search.n_candidates, search.n_solutions), scan.resolution)
    whole = replace(options, rigid_bodies="model")
    coarse = replace(whole, stages=whole.stage_resolutions()[:1])
    coarse_maps, whole_maps = stage_maps(density_map, coarse), stage_maps(density_map, whole)
    screened = []
    for index in chosen:  # a cheap coarse fit of every candidate, then the full fit of the best ones
        start = (coords - centre) @ rotations[index].numpy().T + centre + best_moves[index]
        screened.append((fit_stages(structure, density_map, coarse, start, coarse_maps).stage_scores[-1], index, start))
    screened.sort(key=lambda item: -item[0])
    solutions = []
    for _, index, start in screened[: max(search.n_refined, search.n_solutions)]:
        fit = _relative_to_input(fit_local(structure, density_map, whole, coords=start, maps=whole_maps), coords)
        solutions.append(Solution(fit, float(best_scores[index]), float(z_scores[index])))
    solutions.sort(key=lambda s: -s.fit.score_after)
    solutions = _drop_duplicates(solutions, options.resolution / 2)[: search.n_solutions]
    return SearchResult(solutions, len(rotations), step, time.perf_counter() - started)


class _Scan:
    """The FFT translation scan on a coarse grid (voxel = search resolution / 2, at least the map's)."""

    def __init__(self, structure, density_map, options, radius, device):
        self.resolution = search_resolution(options.resolution)
        voxel = max(float(np.min(density_map.voxel_size)), self.resolution / 2)
        self.config = options.density_config(self.resolution)
        self.threshold = options.threshold
        self.device = device
        tensors = structure.to_tensors(dtype=torch.float32, device=device)
        self.centre = structure.coords.mean(axis=0)
        half = math.ceil((radius + self.resolution) / voxel)
        self.template_grid = Grid((2 * half + 1,) * 3, voxel, self.centre - half * voxel)
        self.atoms = tensors
        coarse_shape = np.maximum(np.ceil(density_map.grid.extent / voxel).astype(int), 1)
        self.map_grid = Grid(tuple(coarse_shape), voxel, density_map.origin)
        experimental = torch.as_tensor(density_map.data, dtype=torch.float64)
        smoothed = low_pass_to_resolution(experimental - experimental.mean(), density_map.voxel_size, options.resolution, self.resolution)
        coarse = resample_map(DensityMap(smoothed.numpy(), density_map.voxel_size, density_map.origin), self.map_grid).data
        coarse = (coarse - coarse.mean()) / (coarse.std() or 1.0)
        self.padded_shape = tuple(fft_size(int(m + t - 1)) for m, t in zip(coarse_shape, self.template_grid.shape))
        rho = torch.zeros(self.padded_shape, dtype=torch.float32)
        rho[tuple(slice(0, n) for n in coarse_shape)] = torch.as_tensor(coarse)
        self.rho_transform = torch.fft.rfftn(rho.to(device))
        self.rho2_transform = torch.fft.rfftn((rho * rho).to(device))
        self.allowed = self._allowed_shifts(coarse_shape).to(device)

    def _allowed_shifts(self, coarse_shape) -> torch.Tensor:
        """(padded shape) bool: circular shifts that put the model's centre inside the map box."""
        shifts = [np.arange(n) for n in self.padded_shape]
        masks = []
        for axis, n in enumerate(self.padded_shape):
            signed = np.where(shifts[axis] < coarse_shape[axis], shifts[axis], shifts[axis] - n)
            centre_index = (self.template_grid.shape[axis] - 1) / 2 + signed
            masks.append(torch.as_tensor((centre_index >= 0) & (centre_index <= coarse_shape[axis] - 1)))
        return masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :]

    def run(self, rotations: torch.Tensor, batch_size: int, progress: bool):
        """Best score (R,) and world move (R, 3) Å of the rotated model's centre, per rotation."""
        from tqdm.auto import tqdm

        scores, moves = [], []
        batches = range(0, len(rotations), batch_size)
        for start in tqdm(batches, desc="rotations", unit="batch", disable=not progress):
            batch = rotations[start : start + batch_size].to(self.device, torch.float32)
            score, move = self._score_batch(batch)
            scores.append(score)
            moves.append(move)
        return torch.cat(scores).cpu().double().numpy(), torch.cat(moves).cpu().double().numpy()

    @torch.no_grad()
    @single_intra_op_thread()  # small FFTs: one thread is faster, and much faster on a busy machine
    def _score_batch(self, rotations):
        centre = torch.as_tensor(self.centre, dtype=torch.float32, device=self.device)
        coords = torch.einsum("bij,nj->bni", rotations, self.atoms["coords"] - centre) + centre
        templates = model_map(coords, self.atoms["atomic_numbers"], self.atoms["b_factors"],
                              self.atoms["occupancies"], self.template_grid, self.config)
        region = (templates > self.threshold * templates.amax(dim=(1, 2, 3), keepdim=True)).float()
        count = region.sum(dim=(1, 2, 3))
        weighted = templates * region
        t_sum = weighted.sum(dim=(1, 2, 3))
        t_variance = (weighted * templates).sum(dim=(1, 2, 3)) - t_sum**2 / count
        s = self.padded_shape
        region_fft = torch.fft.rfftn(region, s=s, dim=(1, 2, 3)).conj()
        weighted_fft = torch.fft.rfftn(weighted, s=s, dim=(1, 2, 3)).conj()
        sum_t_rho = torch.fft.irfftn(weighted_fft * self.rho_transform, s=s, dim=(1, 2, 3))
        sum_rho = torch.fft.irfftn(region_fft * self.rho_transform, s=s, dim=(1, 2, 3))
        sum_rho2 = torch.fft.irfftn(region_fft * self.rho2_transform, s=s, dim=(1, 2, 3))
        n = count[:, None, None, None]
        rho_variance = (sum_rho2 - sum_rho**2 / n).clamp(min=0)
        numerator = sum_t_rho - t_sum[:, None, None, None] * sum_rho / n
        denominator = torch.sqrt(rho_variance * t_variance[:, None, None, None])
        valid = self.allowed & (rho_variance > 1e-3 * n)  # ignore regions with almost no map inside
        scores = torch.where(valid, numerator / denominator.clamp(min=1e-12), torch.full_like(numerator, -1.0))
        best, flat = scores.reshape(len(rotations), -1).max(dim=1)
        index = torch.stack(torch.unravel_index(flat, s), dim=1)
        signed = torch.where(index < torch.as_tensor(self.map_grid.shape, device=self.device), index,
                             index - torch.as_tensor(s, device=self.device))
        offset = torch.as_tensor(self.map_grid.origin - self.template_grid.origin, dtype=torch.float32, device=self.device)
        move = offset + signed.float() * float(self.map_grid.voxel_size[0])
        return best, move


def _distinct_candidates(coords, centre, rotations, moves, scores, count, separation):
    """Indices of up to ``count`` best-scoring rotations whose placements differ by > ``separation`` Å RMSD."""
    sample = coords[:: max(1, len(coords) // 200)] - centre
    placed = []
    chosen = []
    for index in np.argsort(-scores):
        here = sample @ rotations[index].T + moves[index]
        if all(rmsd(here, other) > separation for other in placed):
            chosen.append(int(index))
            placed.append(here)
            if len(chosen) == count:
                break
    return chosen


def _relative_to_input(fit: FitResult, coords) -> FitResult:
    """The fit's rotation and translation re-expressed as the move from the input coordinates."""
    centre = coords.mean(axis=0)
    moved_centre = fit.coords.mean(axis=0)
    h = (coords - centre).T @ (fit.coords - moved_centre)
    u, _, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return replace(fit, rotations=rotation[None], translations=(moved_centre - rotation @ centre)[None])


def _drop_duplicates(solutions, separation):
    kept = []
    for solution in solutions:
        if all(rmsd(solution.fit.coords, other.fit.coords) > separation for other in kept):
            kept.append(solution)
    return kept
