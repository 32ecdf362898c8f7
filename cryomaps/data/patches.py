"""Patch sampling and augmentation for training. All TorchIO use in cryomaps lives here.

Geometry. A TorchIO image carries a 4x4 affine from voxel indices to world coordinates, which
TorchIO reads as RAS+ millimetres. cryomaps arrays are indexed (x, y, z) with
``world = origin + index * voxel_size`` (Å), so the affine is ``diag(voxel_size, 1)`` with
``origin`` as its translation column (:func:`volume_affine`): TorchIO's R, A, S axes are the model
frame's x, y, z and its millimetres are Å. Nothing is flipped: the cryo-EM frame has no anatomical
orientation, and RAS+ with a positive diagonal is exactly the (x, y, z) convention.

Padding. Every image is zero-padded by half a patch on every side (origin moved by
``-pad * voxel_size``) so that patches can be centred on protein voxels at the edge of a tight box.
Padded voxels are outside the mask, so losses restricted to the mask never see them.

Sampling. :class:`torchio.LabelSampler` on the ``mask`` image: every patch is centred on a mask
voxel, so patches come from the molecule, not from empty background.

Augmentation (training only, :func:`build_augmentation`):
- joint, on every image alike: a random permutation of the three axes and a random flip of each
  axis (together the 48 symmetries of the cube: all 90° rotations, with reflections). Like
  TorchIO's own ``RandomFlip``, this acts on the arrays and leaves the affine unchanged.
- on the ``intensity_keys`` images only (the struc2map input), the published defaults, each with
  probability 0.25: ``RandomAnisotropy`` with a factor U(1, 1.5) along a random axis and B-spline
  upsampling; ``RandomBlur`` σ U(0, 0.5) Å (= voxels on 1 Å grids); ``RandomNoise`` σ U(0, 0.1).

Resolution augmentation (training only, :class:`RandomTargetResolution`, for a generator
conditioned on resolution): each subject carries its target's resolution (``"resolution"``, Å,
:func:`make_subject`); with probability ``probability`` per subject load, a resolution R is drawn
uniformly in [d₀, ``max_resolution``] and the whole padded target volume is low-pass filtered from
d₀ to R (:func:`cryomaps.signal.low_pass_to_resolution`: Gaussian σ = 0.225·√(R² − d₀²), molmap
convention), then rescaled so that its 99.9th percentile inside the mask equals the unfiltered
target's; the subject's resolution becomes R. Every patch then carries its subject's resolution as
a 0-d float32 tensor ``"resolution"`` (batched to (B,)). Filtering the whole volume, not a patch,
avoids edge effects (the zero padding outside the box is exact for masked targets).

Reproducibility. TorchIO draws all its random numbers (patch centres, queue shuffles, transform
parameters) from torch's global generator. :class:`SeededPatchQueue` runs the queue inside
``torch.random.fork_rng`` with a generator state of its own, created from ``seed`` and carried over
from draw to draw. Two runs with the same seed therefore give identical patches, whatever else
uses torch's generator meanwhile (weight initialisation, dropout), and the global state is left
untouched. With subject-loading workers (``num_workers > 0``), the workers' seeds are drawn from
that same state by torch's DataLoader, so they are reproducible too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchio as tio

from cryomaps.config import check_integer_setting
from cryomaps.errors import InputError
from cryomaps.signal import low_pass_to_resolution

MASK_KEY = "mask"
RESOLUTION_KEY = "resolution"
RESCALE_PERCENTILE = 99.9


def volume_affine(voxel_size, origin) -> np.ndarray:
    """4x4 affine from (x, y, z) voxel indices to world coordinates (Å): diag(voxel_size) + origin."""
    affine = np.diag([*np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)), 1.0])
    affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    return affine


def make_subject(
    images: Mapping[str, np.ndarray],
    mask: np.ndarray,
    voxel_size,
    origin,
    patch_size: int,
    name: str = "",
    resolution: float | None = None,
) -> tio.Subject:
    """A TorchIO subject of (x, y, z) volumes on one grid, zero-padded by half a patch per side.

    Args:
        images: intensity volumes (x, y, z), e.g. {"input": ..., "target": ...}.
        mask: (x, y, z) protein voxels (non-zero), stored as the label map ``"mask"``.
        voxel_size: Å, one number or three.
        origin: (3,) Å, world position of voxel (0, 0, 0) of the unpadded volumes.
        patch_size: patch edge in voxels; the padding is ``patch_size // 2``.
        name: a label kept in the subject as ``"name"``.
        resolution: Å, the resolution of the target, kept as ``"resolution"`` (and then served with
            every patch) unless ``None``.
    """
    pad = patch_size // 2
    voxel = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    affine = volume_affine(voxel, np.asarray(origin, dtype=np.float64) - pad * voxel)

    def padded(volume, dtype) -> torch.Tensor:
        return torch.from_numpy(np.pad(np.asarray(volume, dtype=dtype), pad)[None])

    subject_images = {key: tio.ScalarImage(tensor=padded(volume, np.float32), affine=affine) for key, volume in images.items()}
    subject_images[MASK_KEY] = tio.LabelMap(tensor=padded(np.asarray(mask) != 0, np.uint8), affine=affine)
    extra = {} if resolution is None else {RESOLUTION_KEY: float(resolution)}
    return tio.Subject(subject_images, name=name, **extra)


@dataclass(frozen=True)
class AugmentationOptions:
    """Training augmentation (see the module docstring); ranges are (low, high).

    Attributes:
        probability: chance of each intensity transform (0.25 published).
        anisotropy: downsampling factor range along one random axis.
        blur_std: Gaussian blur σ range, Å.
        noise_std: additive Gaussian noise σ range (map units).
        intensity_keys: images that get anisotropy, blur and noise; empty for none.
        symmetries: apply joint random axis permutations and flips to all images.
    """

    probability: float = 0.25
    anisotropy: tuple[float, float] = (1.0, 1.5)
    blur_std: tuple[float, float] = (0.0, 0.5)
    noise_std: tuple[float, float] = (0.0, 0.1)
    intensity_keys: tuple[str, ...] = ("input",)
    symmetries: bool = True


class RandomAxisPermutation(tio.transforms.augmentation.RandomTransform, tio.SpatialTransform):
    """Permute the three spatial axes of every image of a subject with one random permutation."""

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        order = torch.randperm(3).tolist()
        for image in self.get_images(subject):
            image.set_data(image.data.permute(0, *(axis + 1 for axis in order)).contiguous())
        return subject


@dataclass(frozen=True)
class ResolutionAugmentationOptions:
    """Low-pass filtering of targets to coarser resolutions (see the module docstring).

    Attributes:
        probability: chance per subject load that its target is filtered (else it stays native).
        max_resolution: Å, upper end of the uniform range [native, max_resolution] R is drawn from.
        keys: the images filtered (the struc2map target).
    """

    probability: float = 0.5
    max_resolution: float = 14.0
    keys: tuple[str, ...] = ("target",)

    def __post_init__(self):
        if not 0.0 <= self.probability <= 1.0:
            raise InputError(None, f"resolution augmentation probability must be in [0, 1], got {self.probability}")
        if not self.max_resolution > 0:
            raise InputError(None, f"resolution augmentation max_resolution must be > 0 Å, got {self.max_resolution}")


class RandomTargetResolution(tio.transforms.augmentation.RandomTransform, tio.IntensityTransform):
    """With probability ``options.probability``, filter the targets to a random coarser resolution.

    The subject must carry its native resolution as ``"resolution"`` (Å); it is replaced by the
    resolution drawn. Subjects already at or beyond ``max_resolution`` are left as they are.
    """

    def __init__(self, options: ResolutionAugmentationOptions, **kwargs):
        super().__init__(include=list(options.keys), **kwargs)
        self.options = options
        self.args_names = ["options"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if RESOLUTION_KEY not in subject:
            raise InputError(None, f"resolution augmentation needs the targets' resolution (subject {subject.get('name', '')!r} has none)")
        native = float(subject[RESOLUTION_KEY])
        if torch.rand(()) >= self.options.probability or native >= self.options.max_resolution:
            return subject
        resolution = native + float(torch.rand(())) * (self.options.max_resolution - native)
        inside = subject[MASK_KEY].data[0] > 0
        for image in self.get_images(subject):
            image.set_data(_filtered_like(image.data[0], image.spacing, native, resolution, inside)[None])
        subject[RESOLUTION_KEY] = resolution
        subject.update_attributes()  # TorchIO copies subjects through their attributes too
        return subject


def _filtered_like(volume: torch.Tensor, voxel_size, native: float, resolution: float, inside: torch.Tensor) -> torch.Tensor:
    """``volume`` (x, y, z) filtered from ``native`` to ``resolution`` Å, rescaled so that its
    99.9th percentile over ``inside`` is the unfiltered one's."""
    filtered = low_pass_to_resolution(volume, voxel_size, native, resolution)
    if not bool(inside.any()):
        return filtered
    before, after = (_percentile(values[inside]) for values in (volume, filtered))
    return filtered * (before / after) if after > 0 else filtered


def _percentile(values: torch.Tensor) -> float:
    return float(np.percentile(values.numpy(), RESCALE_PERCENTILE))


def build_augmentation(
    options: AugmentationOptions | None, resolution: ResolutionAugmentationOptions | None = None
) -> tio.Compose | None:
    """The training transform for ``options`` and ``resolution`` (both ``None``: no augmentation)."""
    transforms = [] if resolution is None else [RandomTargetResolution(resolution)]
    if options is None:
        return tio.Compose(transforms) if transforms else None
    if options.symmetries:
        transforms += [RandomAxisPermutation(), tio.RandomFlip(axes=(0, 1, 2), flip_probability=0.5)]
    if options.intensity_keys:
        only = {"p": options.probability, "include": list(options.intensity_keys)}
        transforms += [
            tio.RandomAnisotropy(axes=(0, 1, 2), downsampling=tuple(options.anisotropy), image_interpolation="bspline", **only),
            tio.RandomBlur(std=tuple(options.blur_std), **only),
            tio.RandomNoise(std=tuple(options.noise_std), **only),
        ]
    return tio.Compose(transforms) if transforms else None


PATCH_SETTING_LIMITS = {"patch_size": (8, 256), "samples_per_volume": (1, None), "queue_length": (1, None), "num_workers": (0, None)}
"""Inclusive bounds of the integer :class:`PatchOptions` (``data.<name>`` in the configs)."""


@dataclass(frozen=True)
class PatchOptions:
    """Patch sampling settings.

    Attributes:
        patch_size: patch edge, voxels (32 published).
        samples_per_volume: patches drawn from a volume each time it is loaded.
        queue_length: patches held by the queue (patches of several volumes get mixed).
        num_workers: processes loading and augmenting volumes (0: in the main process).
        seed: seed of the patch stream.
    """

    patch_size: int = 32
    samples_per_volume: int = 16
    queue_length: int = 256
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self):
        for name, (low, high) in PATCH_SETTING_LIMITS.items():
            check_integer_setting(f"data.{name}", getattr(self, name), low, high)
        if self.queue_length < self.samples_per_volume:
            raise InputError(
                None, f"queue_length ({self.queue_length}) must be at least samples_per_volume ({self.samples_per_volume})"
            )


def patch_tensors(patch: tio.Subject, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """The (1, P, P, P) float32 tensors of ``keys`` in a patch (or subject), plus its
    ``"resolution"`` (0-d float32, Å) when it carries one."""
    tensors = {key: patch[key].data.to(torch.float32) for key in keys}
    if RESOLUTION_KEY in patch:
        tensors[RESOLUTION_KEY] = torch.tensor(float(patch[RESOLUTION_KEY]), dtype=torch.float32)
    return tensors


class SeededPatchQueue(torch.utils.data.Dataset):
    """Randomly sampled, augmented patches from a TorchIO queue, reproducible from a seed.

    Item ``i`` is a dict of (1, P, P, P) float32 tensors, one per name in ``keys``. Items must be
    read in order by a DataLoader with ``num_workers=0`` and no shuffling (the queue shuffles);
    one pass of ``len(self)`` items is one epoch.

    Args:
        subjects: from :func:`make_subject`.
        keys: the images returned (e.g. ``("input", "target", "mask")``).
        options: patch settings, seed included.
        transform: applied to each subject before sampling (:func:`build_augmentation`).
    """

    def __init__(self, subjects: list[tio.Subject], keys: Sequence[str], options: PatchOptions, transform=None):
        self.keys = tuple(keys)
        self.subjects, self.options, self.transform = subjects, options, transform
        self.start_epoch(0)

    def start_epoch(self, epoch: int) -> None:
        """Restart the patch stream for ``epoch``: a fresh queue and a generator seeded from (seed, epoch).

        The stream of an epoch therefore depends only on the seed and the epoch number, which lets
        an interrupted run replay its way back to where it stopped (see ResumablePatchLoader).
        """
        self.queue = tio.Queue(
            tio.SubjectsDataset(self.subjects, transform=self.transform),
            max_length=self.options.queue_length,
            samples_per_volume=self.options.samples_per_volume,
            sampler=tio.LabelSampler(self.options.patch_size, label_name=MASK_KEY),
            num_workers=self.options.num_workers,
            start_background=False,
        )
        seed = int(torch.Generator().manual_seed(self.options.seed).initial_seed()) + 7919 * epoch
        self._rng_state = torch.Generator().manual_seed(seed).get_state()

    def __len__(self) -> int:
        return len(self.queue)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"patch {index} of an epoch of {len(self)}")
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            patch = self.queue[index]
            self._rng_state = torch.get_rng_state()
        return patch_tensors(patch, self.keys)


def fixed_patches(subjects: list[tio.Subject], keys: Sequence[str], patch_size: int, per_volume: int, seed: int) -> list[dict]:
    """Non-augmented patches centred on mask voxels, the same for a given seed (for validation).

    Returns:
        ``per_volume`` patches per subject, each a dict of (1, P, P, P) float32 tensors.
    """
    sampler = tio.LabelSampler(patch_size, label_name=MASK_KEY)
    patches = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for subject in subjects:
            patches += [patch_tensors(patch, keys) for patch in sampler(subject, num_patches=per_volume)]
    return patches
