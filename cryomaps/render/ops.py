"""The ``cryomaps::gaussian_sum`` custom op: a differentiable sum of isotropic Gaussians on a grid.

The op renders, for every structure of a batch, ``sum_n sum_k weights[n, k] * G(x - centres[n];
variances[n, k])`` at the voxel centres of a grid (or averaged over each voxel), where ``G`` is a
normalised isotropic 3-D Gaussian of per-axis variance ``variances[n, k]`` (Å²), cut to the cube of
half-width ``radii[n]`` Å around each atom. Its backward gives gradients with respect to the
centres, weights and variances; the density models (:mod:`cryomaps.render.density`) reach
coordinates, B-factors and occupancies through them with ordinary torch ops.

The op is declared once (:data:`LIBRARY`) and implemented per device, which the dispatcher picks
from the tensors:

- CPU (and MPS): vectorised torch, chunked over atoms (:mod:`cryomaps.render.gaussian_torch`);
- CUDA: Triton kernels (:mod:`cryomaps.render.gaussian_triton`), forward scatter with atomic adds
  and backward gather, when Triton is installed; the torch implementation otherwise.

Fake tensors and autograd are registered too, so the op works under ``torch.compile``; plain
eager calls do not import ``torch._dynamo``. Tests compare the Triton kernels with the torch ones
on CPU tensors through :func:`triton_kernels_on_cpu` (Triton's interpreter).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
from types import ModuleType

import torch
from torch import Tensor

from cryomaps.errors import InputError
from cryomaps.io.grid import Grid
from cryomaps.render import gaussian_torch
from cryomaps.render.profiles import SAMPLING_MODES


def triton_available() -> bool:
    """Whether the triton package is installed (found without importing it: ~0.2 s saved on CPU runs)."""
    return importlib.util.find_spec("triton") is not None


def triton_kernels() -> ModuleType:
    """:mod:`cryomaps.render.gaussian_triton`, imported on first use (it imports triton, ~0.2 s,
    which CPU runs never need)."""
    return importlib.import_module("cryomaps.render.gaussian_triton")


_cpu_kernels: ModuleType = gaussian_torch
"""The implementation behind CPU tensors: the torch one, or the Triton one inside
:func:`triton_kernels_on_cpu`."""


@contextlib.contextmanager
def triton_kernels_on_cpu():
    """Run the op on CPU tensors with the Triton kernels, in Triton's interpreter, while inside.

    For tests that compare the two implementations without a GPU: ``TRITON_INTERPRET=1`` must be
    set before triton is imported (i.e. in the environment of a fresh process).
    """
    global _cpu_kernels
    if not triton_available() or os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton kernels run on CPU tensors only with triton installed and TRITON_INTERPRET=1")
    _cpu_kernels = triton_kernels()
    try:
        yield
    finally:
        _cpu_kernels = gaussian_torch


@functools.cache
def _cuda_kernels() -> ModuleType:
    """The implementation behind CUDA tensors, decided once: the Triton kernels when triton is
    installed and imports, the torch implementation otherwise."""
    if triton_available() and triton_kernels().AVAILABLE:
        return triton_kernels()
    return gaussian_torch


def _kernels_for(dispatch_key: str) -> ModuleType:
    """The kernel module that runs the op for tensors of ``dispatch_key`` ("CPU", "CUDA" or "MPS")."""
    if dispatch_key == "CPU":
        return _cpu_kernels
    if dispatch_key == "CUDA":
        return _cuda_kernels()
    return gaussian_torch


DISPATCH_KEYS = ("CPU", "CUDA", "MPS")
"""The devices the op is implemented for."""

LIBRARY = torch.library.Library("cryomaps", "DEF")
"""The ``cryomaps`` operator namespace. Ops are declared with ``Library.define`` and implemented
per device with ``Library.impl`` rather than with ``torch.library.custom_op``: the latter wraps
every kernel in ``torch._disable_dynamo``, which imports ``torch._dynamo`` (about 1.4 s) at the
first eager call."""

LIBRARY.define(
    "gaussian_sum(Tensor centres, Tensor weights, Tensor variances, Tensor radii, Tensor batch_index, "
    "int n_batch, int[] shape, float[] voxel_size, float[] origin, str sampling) -> Tensor"
)
LIBRARY.define(
    "gaussian_sum_backward(Tensor grad_grid, Tensor centres, Tensor weights, Tensor variances, Tensor radii, "
    "Tensor batch_index, float[] voxel_size, float[] origin, str sampling) -> (Tensor, Tensor, Tensor)"
)


def _register_device(dispatch_key: str) -> None:
    """Register the forward and backward kernels of tensors of ``dispatch_key``.

    Forward: (n_batch, nx, ny, nz) sum of Gaussians (see :func:`gaussian_sum`). Backward: the
    gradients (centres, weights, variances) of ``sum(grad_grid * gaussian_sum(...))``.
    """

    def forward(centres, weights, variances, radii, batch_index, n_batch, shape, voxel_size, origin, sampling):
        return _kernels_for(dispatch_key).gaussian_sum_forward(
            centres, weights, variances, radii, batch_index, n_batch, shape, voxel_size, origin, sampling
        )

    def backward(grad_grid, centres, weights, variances, radii, batch_index, voxel_size, origin, sampling):
        return _kernels_for(dispatch_key).gaussian_sum_backward(
            grad_grid.contiguous(), centres, weights, variances, radii, batch_index, voxel_size, origin, sampling
        )

    LIBRARY.impl("gaussian_sum", forward, dispatch_key)
    LIBRARY.impl("gaussian_sum_backward", backward, dispatch_key)


def _gaussian_sum_fake(centres, weights, variances, radii, batch_index, n_batch, shape, voxel_size, origin, sampling):
    return centres.new_empty((n_batch, *shape))


def _gaussian_sum_backward_fake(grad_grid, centres, weights, variances, radii, batch_index, voxel_size, origin, sampling):
    return torch.empty_like(centres), torch.empty_like(weights), torch.empty_like(variances)


def _setup_context(ctx, inputs, output):
    centres, weights, variances, radii, batch_index, _, _, voxel_size, origin, sampling = inputs
    ctx.save_for_backward(centres, weights, variances, radii, batch_index)
    ctx.geometry = (voxel_size, origin, sampling)


def _backward(ctx, grad_grid):
    centres, weights, variances, radii, batch_index = ctx.saved_tensors
    voxel_size, origin, sampling = ctx.geometry
    grad_centres, grad_weights, grad_variances = gaussian_sum_backward_op(
        grad_grid, centres, weights, variances, radii, batch_index, voxel_size, origin, sampling
    )
    return grad_centres, grad_weights, grad_variances, None, None, None, None, None, None, None


for dispatch_key in DISPATCH_KEYS:
    _register_device(dispatch_key)
torch.library.register_fake("cryomaps::gaussian_sum", _gaussian_sum_fake, lib=LIBRARY)
torch.library.register_fake("cryomaps::gaussian_sum_backward", _gaussian_sum_backward_fake, lib=LIBRARY)
torch.library.register_autograd("cryomaps::gaussian_sum", _backward, setup_context=_setup_context, lib=LIBRARY)

gaussian_sum_op = torch.ops.cryomaps.gaussian_sum.default
gaussian_sum_backward_op = torch.ops.cryomaps.gaussian_sum_backward.default


def available_memory_bytes(device: torch.device) -> int:
    """Free memory (bytes) on ``device``: CUDA free memory, else the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_grid_fits(n_batch: int, grid: Grid, dtype: torch.dtype, device: torch.device) -> None:
    """Raise :class:`InputError` when ``n_batch`` grids would not fit in the device's free memory."""
    needed = n_batch * grid.n_voxels * torch.empty((), dtype=dtype).element_size()
    available = available_memory_bytes(device)
    if needed > available:
        raise InputError(
            None,
            f"a grid of {n_batch} x {grid.shape} voxels needs {needed / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB are free on {device}; use a larger voxel size or a smaller box",
        )


def _check_inputs(centres, weights, variances, radii, batch_index, sampling) -> None:
    if sampling not in SAMPLING_MODES:
        raise InputError(None, f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise InputError(None, f"centres must have shape (N, 3), got {tuple(centres.shape)}")
    n_atoms = centres.shape[0]
    if weights.ndim != 2 or weights.shape[0] != n_atoms or variances.shape != weights.shape:
        raise InputError(
            None,
            f"weights and variances must both have shape (N, K) with N = {n_atoms}, got "
            f"{tuple(weights.shape)} and {tuple(variances.shape)}",
        )
    if radii.shape != (n_atoms,) or batch_index.shape != (n_atoms,):
        raise InputError(None, f"radii and batch_index must have shape ({n_atoms},)")
    if not centres.is_floating_point() or len({t.dtype for t in (centres, weights, variances, radii)}) != 1:
        raise InputError(None, "centres, weights, variances and radii must share one floating dtype")


def gaussian_sum(
    centres: Tensor,
    weights: Tensor,
    variances: Tensor,
    radii: Tensor,
    grid: Grid,
    *,
    batch_index: Tensor | None = None,
    n_batch: int = 1,
    sampling: str = "point",
) -> Tensor:
    """Differentiable sum of normalised isotropic Gaussians on ``grid``.

    Args:
        centres: (N, 3) Gaussian centres (Å), (x, y, z); differentiable.
        weights: (N, K) integral of each term (map value x Å³); differentiable.
        variances: (N, K) per-axis variance of each term (Å², > 0); differentiable.
        radii: (N,) half-width (Å) of the cube around each centre where its terms are evaluated.
        grid: output sampling; values are indexed (x, y, z) at ``origin + index * voxel_size``.
        batch_index: (N,) int64 structure of each atom (default: all in structure 0).
        n_batch: number of structures (output grids).
        sampling: ``"point"``: values at voxel centres; ``"average"``: exact mean over each voxel.

    Returns:
        (n_batch, nx, ny, nz) tensor with the dtype and device of ``centres``.
    """
    if batch_index is None:
        batch_index = torch.zeros(centres.shape[0], dtype=torch.long, device=centres.device)
    _check_inputs(centres, weights, variances, radii, batch_index, sampling)
    check_grid_fits(n_batch, grid, centres.dtype, centres.device)
    return gaussian_sum_op(
        centres.contiguous(),
        weights.contiguous(),
        variances.contiguous(),
        radii.detach().contiguous(),
        batch_index.long().contiguous(),
        int(n_batch),
        list(grid.shape),
        [float(h) for h in grid.voxel_size],
        [float(o) for o in grid.origin],
        sampling,
    )
