"""CPU implementation (vectorised torch) of the sum of isotropic normalised Gaussians on a grid.

The quantity rendered, for every structure ``s`` of a batch and every voxel centre ``x`` (Å)::

    grid[s, x] = sum over atoms n of structure s, terms k:
                 weights[n, k] * p(x_x - c_nx; v_nk) * p(x_y - c_ny; v_nk) * p(x_z - c_nz; v_nk)

where ``c_n`` is the atom centre (Å), ``v_nk`` the per-axis variance (Å²) of term ``k`` and ``p`` the
1-D normalised Gaussian profile (see :mod:`cryomaps.render.profiles`). Each atom contributes only
inside its window: the voxels whose centres lie within ``radii[n]`` Å of ``c_n`` along every axis
(a cube, as ChimeraX molmap cuts it; see :func:`window_bounds`).

How it runs:

- Atoms are processed in chunks of atoms with the same window box widths (Wx, Wy, Wz), small
  enough that a chunk's temporaries stay within :data:`WINDOW_VOXELS_PER_CHUNK` window voxels
  (memory O(grid + atoms) whatever the structure's size).
- Inside a chunk every tensor is laid out with the atom index last and contiguous, e.g. profiles
  (K, W, C) and window values (Wx, Wy, Wz, C). Elementwise torch kernels then run over long
  contiguous rows; with the atom index first, their innermost loops would run over the 5-7
  voxels of a window axis, which is several times slower on CPUs.
- Forward: per chunk, the three 1-D profiles of every term, the window values
  ``sum_k (w_k px_k) ⊗ py_k ⊗ pz_k`` (one fused multiply-add pass per term), then a single
  ``scatter_add_`` of all window voxels into the flat grid (flat index = the atom's first box
  voxel + a per-chunk table of W³ offsets).
- Backward: a gather (``index_select``) of each atom's window of the incoming gradient, contracted
  axis by axis (z, y, then x) with the profiles and their derivatives.

Threads: one. Every op runs with a single intra-op thread and no worker threads. Measured on the
2-core benchmark machine (5fuu, 20,735 atoms, forward / forward+backward, ms, median of 9):

- idle machine (load < 0.8): one thread 23.6 / 62.2; torch's intra-op OpenMP threads (2) 20.4 /
  52.1; chunks shared among 2 Python worker threads 24.4-28.1 / 60-68 (x-slab phases, a lock
  around the scatter, or a private grid per worker: the chunks are memory-bound and their
  Python-side overhead holds the GIL, so 2 threads spend about 25% more CPU time for at most 10%
  less wall time);
- one other busy process on the machine (load 1.1-3.1): one thread 24.8 / 65; OpenMP 98-362 /
  236-505 (its threads wait for the busy core at every op); Python workers 39-44 / 145-152.

So a second thread gains at most 15% on an idle machine and costs 1.5-15x on a shared one; to use
more cores, render several structures at once (e.g. in data-loader worker processes).
"""

from __future__ import annotations

import contextlib

import torch

from cryomaps.render.profiles import OUTSIDE_OFFSET, gaussian_profiles

WINDOW_VOXELS_PER_CHUNK = 1 << 18
"""Upper bound on (atoms in a chunk) x (window voxels per atom): a chunk's temporaries stay at a few
MB whatever the structure's size, while chunks are large enough to amortise per-op overhead."""


@contextlib.contextmanager
def single_intra_op_thread():
    """Run the enclosed torch ops with one intra-op thread (the count is restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def window_bounds(
    centres: torch.Tensor, radii: torch.Tensor, voxel_size, origin
) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last voxel index (3, N) int64 of each atom's window, not clipped to the grid.

    ``centres`` are given axis first, (3, N) Å. The window along axis ``a`` holds the voxel indices
    ``i`` with ``|origin[a] + i*voxel_size[a] - centres[a, n]| <= radii[n]``.
    """
    origin_t = centres.new_tensor(origin)[:, None]
    voxel_t = centres.new_tensor(voxel_size)[:, None]
    fractional = (centres - origin_t) / voxel_t
    half_width = radii / voxel_t
    return torch.ceil(fractional - half_width).long(), torch.floor(fractional + half_width).long()


def box_geometry(first: torch.Tensor, last: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Box widths (3, N) and first box voxel (3, N) of each atom's window, inside the grid.

    The widths are the window's, clipped to the grid's shape; the box starts at the window's first
    voxel, moved inwards where needed so that the whole box lies inside the grid (voxels of the box
    outside the atom's window get zero profiles).
    """
    grid_shape = first.new_tensor(shape)[:, None]
    widths = torch.minimum((last - first + 1).clamp_(min=1), grid_shape)
    starts = torch.minimum(first.clamp(min=0), grid_shape - widths)
    return widths, starts


def atom_chunks(widths: torch.Tensor):
    """Chunks of atoms with the same window box widths, split so that each chunk's temporaries fit
    the budget.

    Args:
        widths: (3, N) box widths of the atoms (see :func:`box_geometry`).

    Returns ``(order, chunks)``: ``order`` (N,) sorts the atoms by box widths, stably (atoms with
    the same widths keep their input order, for spatial locality); each chunk is a tuple
    ``(begin, end, box)``: the atoms ``order[begin:end]``, all with box widths ``box`` = [Wx, Wy, Wz].
    Grouping by width avoids padding small windows to the widest of a chunk.
    """
    base = int(widths.max()) + 1 if widths.shape[1] else 1
    keys = (widths[0] * base + widths[1]) * base + widths[2]
    order = torch.argsort(keys, stable=True)
    group_keys, group_sizes = torch.unique_consecutive(keys[order], return_counts=True)
    chunks, begin = [], 0
    for key, size in zip(group_keys.tolist(), group_sizes.tolist()):
        box = [key // base**2, key // base % base, key % base]
        step = max(1, WINDOW_VOXELS_PER_CHUNK // (box[0] * box[1] * box[2]))
        chunks.extend((start, min(start + step, begin + size), box) for start in range(begin, begin + size, step))
        begin += size
    return order, chunks


class AtomWindows:
    """The atoms of one render, sorted into chunks (see :func:`atom_chunks`), with everything the
    chunk loops need precomputed once per render.

    Per-atom tensors are stored axis (or term) first and in chunk order, (fields, atoms), so that a
    chunk's inputs are views ``[:, begin:end]`` whose atom index is last and contiguous.
    """

    def __init__(self, centres, weights, variances, radii, batch_index, shape, voxel_size, origin, sampling):
        """Arguments as :func:`gaussian_sum_forward`."""
        self.shape, self.sampling = list(shape), sampling
        centres = centres.T.contiguous()  # (3, N)
        first, last = window_bounds(centres, radii, voxel_size, origin)
        widths, starts = box_geometry(first, last, shape)
        self.order, self.chunks = atom_chunks(widths)

        def sorted_atoms(values):  # (F, N) in chunk order
            return values.index_select(-1, self.order)

        voxel = centres.new_tensor(voxel_size)[:, None]
        self.voxel = voxel[:, :, None, None]  # (3, 1, 1, 1): broadcasts over (axis, K, W, C)
        # offset (Å) of each box's first voxel from the atom, and the box's window voxels
        self.start_offsets = sorted_atoms(centres.new_tensor(origin)[:, None] + starts * voxel - centres)
        self.first_inside = sorted_atoms(first - starts)
        self.last_inside = sorted_atoms(last - starts)
        self.weights = sorted_atoms(weights.T)
        self.variances = sorted_atoms(variances.T)
        nx, ny, nz = self.shape
        base = ((batch_index * nx + starts[0]) * ny + starts[1]) * nz + starts[2]
        self.base_index = sorted_atoms(base)
        # chunks whose boxes all equal their windows need no masking (atoms away from the edges)
        exact = sorted_atoms(((starts == first) & (starts + widths - 1 == last)).all(dim=0))
        n_inexact = torch.cat([exact.new_zeros(1, dtype=torch.long), torch.cumsum((~exact).long(), dim=0)])
        bounds = torch.tensor([[begin, end] for begin, end, _ in self.chunks], dtype=torch.long).reshape(-1, 2)
        self.masked = (n_inexact[bounds[:, 1]] > n_inexact[bounds[:, 0]]).tolist()
        self._tables = {}
        self._steps = {}
        for _, _, box in self.chunks:
            self._table(box)
            self._step(max(box))

    def _table(self, widths):
        """(Wx, Wy, Wz, 1) flat grid offsets of a box's voxels from its first voxel."""
        key = tuple(widths)
        if key not in self._tables:
            nx, ny, nz = self.shape
            table = torch.arange(widths[0], device=self.base_index.device)[:, None, None] * (ny * nz)
            table = table + torch.arange(widths[1], device=table.device)[:, None] * nz
            self._tables[key] = (table + torch.arange(widths[2], device=table.device))[..., None]
        return self._tables[key]

    def _step(self, width):
        """(3, W, 1) offsets (Å) of a box's voxels from its first voxel, along x, y, z."""
        if width not in self._steps:
            steps = torch.arange(width, device=self.voxel.device, dtype=self.voxel.dtype)
            self._steps[width] = self.voxel[:, 0] * steps[:, None]
        return self._steps[width]

    def profiles(self, number: int, derivatives: bool):
        """1-D profiles of chunk ``number``'s terms over the boxes, and the boxes' flat grid index.

        Returns ``(profiles, index)``: ``profiles`` is, per axis x, y, z, a (K, W_axis, C) tensor, or
        with ``derivatives`` a (3, K, W_axis, C) stack of (profile, d/d centre, d/d variance);
        ``index`` is the (Wx, Wy, Wz, C) int64 index of every box voxel in the flat
        (n_batch, nx, ny, nz) grid.
        """
        begin, end, widths = self.chunks[number]
        width = max(widths)
        offset = self.start_offsets[:, None, begin:end] + self._step(width)  # (3, W, C)
        if self.masked[number]:
            position = torch.arange(width, device=offset.device)[:, None]
            first, last = self.first_inside[:, None, begin:end], self.last_inside[:, None, begin:end]
            outside = (position < first) | (position > last)
            offset = offset.masked_fill_(outside, OUTSIDE_OFFSET)
        values = gaussian_profiles(
            offset[:, None], self.variances[None, :, None, begin:end], self.voxel, self.sampling, derivatives
        )
        profiles = [values[..., axis, :, : widths[axis], :] for axis in range(3)]
        return profiles, self._table(widths) + self.base_index[begin:end]


def render_chunk(atoms: AtomWindows, number: int, flat: torch.Tensor) -> None:
    """Add the window values of chunk ``number`` into the flat grid."""
    begin, end, widths = atoms.chunks[number]
    (px, py, pz), index = atoms.profiles(number, derivatives=False)
    n_terms, n_atoms = px.shape[0], end - begin
    x_part = (px * atoms.weights[:, None, begin:end])[:, :, None, None]  # (K, Wx, 1, 1, C)
    yz_part = torch.mul(py[:, :, None], pz[:, None], out=px.new_empty(n_terms, widths[1], widths[2], n_atoms))
    values = torch.mul(x_part[0], yz_part[0], out=px.new_empty(*widths, n_atoms))
    for k in range(1, n_terms):
        values.addcmul_(x_part[k], yz_part[k])
    flat.scatter_add_(0, index.view(-1), values.view(-1))


def chunk_gradients(atoms: AtomWindows, number: int, flat_grad: torch.Tensor):
    """Sums over chunk ``number``'s windows of ``flat_grad`` x (products of profiles and their
    derivatives) that make the gradients, contracted one axis at a time (z, y, then x).

    Returns (C, 3) d/d centres, (K, C) d/d weights and (K, C) d/d variances (atoms in chunk order).
    """
    begin, end, widths = atoms.chunks[number]
    (fx, fy, fz), index = atoms.profiles(number, derivatives=True)  # (3, K, W, C): p, d/dc, d/dv
    window = flat_grad.index_select(0, index.view(-1)).view(index.shape)  # (Wx, Wy, Wz, C)
    wx, wy, wz, n_atoms = window.shape
    n_terms = fx.shape[1]
    # along z: by_z[f, k, x, y, c] = sum_z fz[f, k, z, c] window[x, y, z, c]
    fz_z = fz[:, :, :, None, None].unbind(2)
    window_z = window.unbind(2)
    by_z = torch.mul(fz_z[0], window_z[0], out=window.new_empty(3, n_terms, wx, wy, n_atoms))
    for z in range(1, wz):
        by_z.addcmul_(fz_z[z], window_z[z])
    # along y: the z profile with the three y factors, the two z derivatives with the y profile
    fy_y = fy[:, :, :, None].unbind(2)
    py_y = fy[0, :, None].unbind(2)
    p_by_z, d_by_z = by_z[0].unbind(2), by_z[1:].unbind(3)
    p_by_zy = torch.mul(p_by_z[0], fy_y[0], out=window.new_empty(3, n_terms, wx, n_atoms))
    d_by_zy = torch.mul(d_by_z[0], py_y[0], out=window.new_empty(2, n_terms, wx, n_atoms))
    for y in range(1, wy):
        p_by_zy.addcmul_(p_by_z[y], fy_y[y])
        d_by_zy.addcmul_(d_by_z[y], py_y[y])
    px, cx, vx = fx
    # along x: sums keyed by the factors along x, y, z (p profile, c centre, v variance derivative)
    ppp, pcp, pvp = (p_by_zy * px).sum(dim=2)
    ppc, ppv = (d_by_zy * px).sum(dim=2)
    cpp = (p_by_zy[0] * cx).sum(dim=1)
    vpp = (p_by_zy[0] * vx).sum(dim=1)
    w = atoms.weights[:, begin:end]
    grad_centres = torch.stack([(w * cpp).sum(0), (w * pcp).sum(0), (w * ppc).sum(0)], dim=1)
    return grad_centres, ppp, w * (vpp + pvp + ppv)


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
    atoms = AtomWindows(centres, weights, variances, radii, batch_index, shape, voxel_size, origin, sampling)
    for number in range(len(atoms.chunks)):
        render_chunk(atoms, number, flat)
    return grid


@single_intra_op_thread()
def gaussian_sum_backward(
    grad_grid, centres, weights, variances, radii, batch_index, voxel_size, origin, sampling
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (centres (N,3), weights (N,K), variances (N,K)) of ``sum(grad_grid * grid)``.

    A gather: each atom reads its own window of ``grad_grid`` (n_batch, nx, ny, nz) and contracts it
    with its profiles and their derivatives (see :func:`chunk_gradients`).
    """
    shape = list(grad_grid.shape[1:])
    flat_grad = grad_grid.to(centres.dtype).reshape(-1)
    atoms = AtomWindows(centres, weights, variances, radii, batch_index, shape, voxel_size, origin, sampling)
    grad_centres = torch.empty_like(centres)  # in chunk order until the end
    grad_weights = torch.empty_like(atoms.weights)  # (K, N)
    grad_variances = torch.empty_like(atoms.variances)

    for number, (begin, end, _) in enumerate(atoms.chunks):
        grad_centres[begin:end], grad_weights[:, begin:end], grad_variances[:, begin:end] = chunk_gradients(
            atoms, number, flat_grad
        )
    unsorted = [torch.empty_like(t) for t in (centres, weights, variances)]
    for result, sorted_rows in zip(unsorted, (grad_centres, grad_weights.T, grad_variances.T)):
        result[atoms.order] = sorted_rows
    return tuple(unsorted)
