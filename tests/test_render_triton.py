"""The Triton kernels against the torch implementation, run on CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton decorates the kernels (at import), so the checks
run in a fresh Python process. Running at all proves the interpreter was used: without it, a Triton
kernel cannot launch on CPU tensors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

CHECK_SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    assert os.environ["TRITON_INTERPRET"] == "1"
    import torch
    from cryomaps.io.grid import Grid
    from cryomaps.render import render_density

    grid = Grid((9, 8, 10), (1.0, 1.2, 0.9), (-1.0, 0.5, 2.0))
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        coords = torch.rand(2, 6, 3, generator=generator, dtype=dtype) * 12 - 1
        numbers = torch.tensor([1, 6, 7, 8, 16, 6])
        b_factors = 10 + 40 * torch.rand(6, generator=generator, dtype=dtype)
        occupancies = 0.5 + 0.5 * torch.rand(6, generator=generator, dtype=dtype)
        weights = torch.randn(2, *grid.shape, generator=generator, dtype=dtype)
        if sys.argv[1] == "finite":  # finite-resolution maps: gaussian_sum on the Fourier box, then torch.fft
            cases = [("peng", sampling, "finite") for sampling in ("point", "average")]
        else:
            cases = [(model, sampling, "blur") for model in ("peng", "molmap") for sampling in ("point", "average")]
        for model, sampling, mode in cases:
            results = {}
            for backend in ("torch", "triton"):
                inputs = [t.clone().requires_grad_() for t in (coords, b_factors, occupancies)]
                density = render_density(
                    inputs[0], numbers, inputs[1], inputs[2], grid, model=model, sampling=sampling,
                    resolution=2.5, resolution_mode=mode, molmap_occupancy=True, backend=backend,
                )
                (density * weights).sum().backward()
                results[backend] = [density.detach()] + [t.grad for t in inputs]
            tolerance = 1e-12 if dtype == torch.float64 else 1e-5
            for name, expected, actual in zip(("map", "coords", "B", "occ"), results["torch"], results["triton"]):
                if expected is None:
                    assert actual is None
                    continue
                error = float((actual - expected).norm() / expected.norm())
                assert error < tolerance, (dtype, model, sampling, mode, name, error)
    print("triton interpreter checks passed")
    """
)


@pytest.mark.parametrize("mode", ["blur", pytest.param("finite", marks=pytest.mark.slow)])
def test_triton_kernels_match_torch_in_interpreter(mode):
    environment = dict(os.environ, TRITON_INTERPRET="1")
    completed = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, mode], env=environment, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "triton interpreter checks passed" in completed.stdout
