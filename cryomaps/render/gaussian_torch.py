"""CPU implementation (vectorised torch) of the sum of isotropic normalised Gaussians on a grid.

The quantity rendered, for every structure ``s`` of a batch and every voxel centre ``x`` (Å)::

    grid[s, x] = sum over atoms n of structure s, terms k:
                 weights[n, k] * p(x_x - c_nx; v_nk) * p(x_y - c_ny; v_nk) * p(x_z - c_nz; v_nk)

where ``c_n`` is the atom centre (Å), ``v_nk`` the per-axis variance (Å²) of term ``k`` and ``p`` the
1-D normalised Gaussian profile (see :mod:`cryomaps.render.profiles`). Each atom contributes only
inside its window: the voxels whose centres lie within ``radii[n]`` Å of ``c_n`` along every axis
(a cube, as ChimeraX molmap cuts it; see :func:`window_bounds`).

The profiles are separable, so each atom's window values are an outer product of three 1-D
profiles per term. Atoms are processed in chunks whose temporaries are bounded by
:data:`WINDOW_VOXELS_PER_CHUNK`, which keeps memory O(grid + atoms). Grids are addressed flat, in
the C order of a (n_batch, nx, ny, nz) tensor.

Threads: every op runs with one intra-op thread. The chunks are made of many small ops, for which
intra-op thread synchronisation costs more than it gains, and which slow down 10-100x when the
machine's cores are busy with other work (measured on 2 shared cores). Instead, chunks are shared
among ``torch.get_num_threads()`` Python worker threads (torch releases the GIL inside ops). The
backward is a race-free gather writing disjoint per-atom slices; in the forward, each worker
computes its chunks' window values in parallel and only the scatter into the shared grid is
serialised by a lock (one grid, no extra memory).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from cryomaps.render.profiles import OUTSIDE_OFFSET, gaussian_profiles

WINDOW_VOXELS_PER_CHUNK = 1 << 18
"""Upper bound on (atoms in a chunk) x (window voxels per atom): a chunk's temporaries stay at a few
MB whatever the structure's size, while chunks are large enough to amortise per-op overhead
(measured best from 2^18 up on 2 cores)."""


_thread_state = threading.local()


@contextlib.contextmanager
def single_intra_op_thread():
    """Run the enclosed torch ops with one intra-op thread (restored afterwards).

    The count in force when the outermost such block was entered stays available to the enclosed
    code through :func:`cpu_workers`.
    """
    threads = torch.get_num_threads()
    outermost = getattr(_thread_state, "workers", None) is None
    if outermost:
        _thread_state.workers = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if outermost:
            _thread_state.workers = None


def cpu_workers() -> int:
    """Number of worker threads for the chunk loops: torch's thread count outside this module."""
    return getattr(_thread_state, "workers", None) or torch.get_num_threads()


def run_in_workers(task, n_items: int, n_workers: int) -> None:
    """Call ``task(worker, items)`` for ``n_workers`` round-robin shares ``range(worker, n_items,
    n_workers)`` of ``n_items`` items, in parallel threads when ``n_workers > 1``.

    Autograd is off inside the workers (grad mode is per thread, and new threads start with it on).
    """
    if n_workers <= 1:
        task(0, range(n_items))
        return

    def without_autograd(worker):
        with torch.no_grad():
            task(worker, range(worker, n_items, n_workers))

    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = [pool.submit(without_autograd, worker) for worker in range(n_workers)]
        for future in futures:
            future.result()


def window_bounds(
    centres: torch.Tensor, radii: torch.Tensor, voxel_size, origin
) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last voxel index (N, 3) int64 of each atom's window, not clipped to the grid.

    The window along axis ``a`` holds the voxel indices ``i`` with
    ``|origin[a] + i*voxel_size[a] - centres[n, a]| <= radii[n]``.
    """
    origin_t = centres.new_tensor(origin)
    voxel_t = centres.new_tensor(voxel_size)
    fractional = (centres - origin_t) / voxel_t
    half_width = radii[:, None] / voxel_t
    return torch.ceil(fractional - half_width).long(), torch.floor(fractional + half_width).long()


def atom_chunks(first: torch.Tensor, last: torch.Tensor, shape) -> list[tuple[torch.Tensor, list[int]]]:
    """Groups of atoms with the same window box widths, split so that each chunk's temporaries
    fit the budget: a list of ``(atom indices (C,), widths (Wx, Wy, Wz))``.

    Widths are clipped to the grid's shape. Grouping by width avoids padding small windows to the
    widest of a chunk; within a group the atoms keep their input order (spatial locality).
    """
    if first.numel() == 0:
        return []
    widths = torch.minimum((last - first + 1).clamp(min=1), first.new_tensor(shape))
    base = int(widths.max()) + 1
    keys = (widths[:, 0] * base + widths[:, 1]) * base + widths[:, 2]
    order = torch.argsort(keys, stable=True)
    group_keys, group_sizes = torch.unique_consecutive(keys[order], return_counts=True)
    chunks, begin = [], 0
    for key, size in zip(group_keys.tolist(), group_sizes.tolist()):
        box = [key // base**2, key // base % base, key % base]
        step = max(1, WINDOW_VOXELS_PER_CHUNK // (box[0] * box[1] * box[2]))
        chunks.extend((order[start : min(start + step, begin + size)], box) for start in range(begin, begin + size, step))
        begin += size
    return chunks


def window_starts(first: torch.Tensor, widths, shape) -> torch.Tensor:
    """Grid index (C, 3) of the first voxel of each atom's window box of ``widths`` voxels.

    The box starts at the window's first voxel, moved inwards where needed so that the whole box
    lies inside the grid; voxels of the box outside the atom's window get zero profiles.
    """
    high = first.new_tensor(shape) - first.new_tensor(widths)
    return torch.minimum(first.clamp(min=0), high)


def window_profiles(starts, first, last, widths, centres, variances, voxel_size, origin, sampling, derivatives):
    """The 1-D profiles of a chunk of atoms over their window boxes, zero outside each atom's window.

    Returns ``(px, py, pz)``, each (C, K, W_axis), or with ``derivatives`` (C, K, 3, W_axis) stacks of
    (profile, d/d centre, d/d variance). All three axes are evaluated in one pass over a
    (C, 3, K, max(widths)) block; voxels outside a window get :data:`OUTSIDE_OFFSET`, where every
    profile vanishes.
    """
    width = max(widths)
    index = starts[:, :, None] + torch.arange(width, device=starts.device)  # (C, 3, W)
    inside = (index >= first[:, :, None]) & (index <= last[:, :, None])
    voxel = centres.new_tensor(voxel_size)[:, None]
    offset = centres.new_tensor(origin)[:, None] + index.to(centres.dtype) * voxel - centres[:, :, None]
    offset = torch.where(inside, offset, OUTSIDE_OFFSET)
    values = gaussian_profiles(
        offset[:, :, None, :], variances[:, None, :, None], voxel[:, None], sampling, derivatives
    )
    return tuple(values[:, axis, ..., : widths[axis]] for axis in range(3))


def flat_indices(starts, batch_index, widths, shape, order=(0, 1, 2)) -> torch.Tensor:
    """(C, W_a*W_b*W_c) flat grid indices of the window boxes beginning at ``starts`` (C, 3),
    enumerated in C order over the axes ``order`` (a, b, c)."""
    nx, ny, nz = shape
    start_flat = ((batch_index * nx + starts[:, 0]) * ny + starts[:, 1]) * nz + starts[:, 2]
    strides = (ny * nz, nz, 1)
    a, b, c = (torch.arange(widths[axis], device=starts.device) * strides[axis] for axis in order)
    table = (a[:, None, None] + b[:, None]) + c
    return start_flat[:, None] + table.view(-1)


@single_intra_op_thread()
def gaussian_sum_forward(
    centres, weights, variances, radii, batch_index, n_batch, shape, voxel_size, origin, sampling
) -> torch.Tensor:
    """The (n_batch, nx, ny, nz) grid of the module docstring, computed chunk by chunk on the CPU.

    Args:
        centres: (N, 3) atom positions (Å), (x, y, z).
        weights: (N, K) integral of each Gaussian term.
        variances: (N, K) per-axis variance of each term (Å²).
        radii: (N,) half-width (Å) of each atom's cubic window.
        batch_index: (N,) int64 structure of each atom, in ``0..n_batch-1``.
        n_batch, shape, voxel_size, origin: output size and grid geometry (Å), (x, y, z).
        sampling: ``"point"`` (value at voxel centres) or ``"average"`` (mean over each voxel).
    """
    grid = centres.new_zeros(n_batch, *shape)
    flat = grid.view(-1)
    scatter_lock = threading.Lock()
    first, last = window_bounds(centres, radii, voxel_size, origin)
    chunks = atom_chunks(first, last, shape)

    def splat(worker, items):
        for item in items:
            chunk, widths = chunks[item]
            starts = window_starts(first[chunk], widths, shape)
            px, py, pz = window_profiles(
                starts, first[chunk], last[chunk], widths, centres[chunk], variances[chunk],
                voxel_size, origin, sampling, derivatives=False,
            )
            x_part = (weights[chunk, :, None] * px).transpose(1, 2)
            yz_part = (py[:, :, :, None] * pz[:, :, None, :]).flatten(2)
            values = torch.bmm(x_part, yz_part)
            index = flat_indices(starts, batch_index[chunk], widths, shape)
            with scatter_lock:
                flat.scatter_add_(0, index.view(-1), values.view(-1))

    run_in_workers(splat, len(chunks), max(1, min(cpu_workers(), len(chunks))))
    return grid


@single_intra_op_thread()
def gaussian_sum_backward(
    grad_grid, centres, weights, variances, radii, batch_index, voxel_size, origin, sampling
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (centres (N,3), weights (N,K), variances (N,K)) of ``sum(grad_grid * grid)``.

    A gather: each atom reads its own window of ``grad_grid`` (n_batch, nx, ny, nz) and contracts it
    with its profiles and their derivatives one axis at a time (z, y, then x), see
    :func:`contract_window`.
    """
    shape = tuple(grad_grid.shape[1:])
    flat_grad = grad_grid.to(centres.dtype).reshape(-1)
    grad_centres = torch.zeros_like(centres)
    grad_weights = torch.zeros_like(weights)
    grad_variances = torch.zeros_like(variances)
    first, last = window_bounds(centres, radii, voxel_size, origin)
    chunks = atom_chunks(first, last, shape)

    def gather(worker, items):
        for item in items:
            chunk, widths = chunks[item]
            starts = window_starts(first[chunk], widths, shape)
            profiles = window_profiles(
                starts, first[chunk], last[chunk], widths, centres[chunk], variances[chunk],
                voxel_size, origin, sampling, derivatives=True,
            )
            z_first = (2, 0, 1)
            index = flat_indices(starts, batch_index[chunk], widths, shape, order=z_first)
            window = flat_grad.index_select(0, index.view(-1)).view(-1, *(widths[axis] for axis in z_first))
            sums = contract_window(window, *profiles)
            w = weights[chunk]
            grad_weights[chunk] = sums["p p p"]
            centre_sums = torch.stack([sums["c p p"], sums["p c p"], sums["p p c"]], dim=-1)
            grad_centres[chunk] = torch.einsum("ck,cka->ca", w, centre_sums)
            grad_variances[chunk] = w * (sums["v p p"] + sums["p v p"] + sums["p p v"])

    run_in_workers(gather, len(chunks), max(1, min(cpu_workers(), len(chunks))))
    return grad_centres, grad_weights, grad_variances


def contract_window(window, px, py, pz) -> dict[str, torch.Tensor]:
    """Sums over a window of ``window * fx(x) * fy(y) * fz(z)`` for the factor triples needed by
    the gradients.

    Args:
        window: (C, Wz, Wx, Wy) incoming gradient over each atom's window box (z first, so that
            the z contraction is one batched matrix product).
        px, py, pz: (C, K, 3, W) per-axis stacks of (profile, d/d centre, d/d variance).

    Returns:
        (C, K) sums keyed by the factors along x, y, z: ``"p"`` profile, ``"c"`` its derivative
        with respect to the centre, ``"v"`` with respect to the variance; keys ``"p p p"``,
        ``"c p p"``, ``"p c p"``, ``"p p c"``, ``"v p p"``, ``"p v p"``, ``"p p v"``.
    """
    n_chunk, wz, wx, wy = window.shape
    n_terms = px.shape[1]
    # by_z[c, k, m, x, y] = sum_z pz[c, k, m, z] * window[c, z, x, y]
    by_z = torch.bmm(pz.reshape(n_chunk, 3 * n_terms, wz), window.view(n_chunk, wz, wx * wy))
    by_z = by_z.view(n_chunk, n_terms, 3, wx, wy)
    z_profile = torch.matmul(by_z[:, :, 0], py.transpose(2, 3))  # (C, K, x, y factor)
    z_derivatives = torch.matmul(by_z[:, :, 1:], py[:, :, None, 0, :, None])[..., 0]  # (C, K, z factor, x)
    x_profile = px[:, :, 0]
    return {
        "p p p": (z_profile[..., 0] * x_profile).sum(-1),
        "p c p": (z_profile[..., 1] * x_profile).sum(-1),
        "p v p": (z_profile[..., 2] * x_profile).sum(-1),
        "p p c": (z_derivatives[:, :, 0] * x_profile).sum(-1),
        "p p v": (z_derivatives[:, :, 1] * x_profile).sum(-1),
        "c p p": (z_profile[..., 0] * px[:, :, 1]).sum(-1),
        "v p p": (z_profile[..., 0] * px[:, :, 2]).sum(-1),
    }
