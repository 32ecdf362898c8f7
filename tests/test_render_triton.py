"""The Triton kernels against the torch implementation, run on CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton decorates the kernels (at import), so the checks
run in a fresh Python process, which renders each case twice: with the CPU implementation (torch)
and inside :func:`cryomaps.render.ops.triton_kernels_on_cpu`. Running at all proves the interpreter
was used: without it, a Triton kernel cannot launch on CPU tensors.
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
    import contextlib
    import os
    import sys
    assert os.environ["TRITON_INTERPRET"] == "1"
    import torch
    from cryomaps.io.grid import Grid
    from cryomaps.render import render_density
    from cryomaps.render.ops import triton_kernels, triton_kernels_on_cpu

    launched = []  # the Triton functions that ran (else the comparison would be torch against torch)
    for name in ("gaussian_sum_forward", "gaussian_sum_backward"):
        kernel = getattr(triton_kernels(), name)
        setattr(triton_kernels(), name, lambda *args, kernel=kernel, name=name: launched.append(name) or kernel(*args))

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
            for kernels in ("torch", "triton"):
                inputs = [t.clone().requires_grad_() for t in (coords, b_factors, occupancies)]
                with triton_kernels_on_cpu() if kernels == "triton" else contextlib.nullcontext():
                    density = render_density(
                        inputs[0], numbers, grid, b_factors=inputs[1], occupancies=inputs[2], model=model,
                        sampling=sampling, resolution=2.5, resolution_mode=mode, molmap_occupancy=True,
                    )
                    (density * weights).sum().backward()
                results[kernels] = [density.detach()] + [t.grad for t in inputs]
            tolerance = 1e-12 if dtype == torch.float64 else 1e-5
            for name, expected, actual in zip(("map", "coords", "B", "occ"), results["torch"], results["triton"]):
                if expected is None:
                    assert actual is None
                    continue
                error = float((actual - expected).norm() / expected.norm())
                assert error < tolerance, (dtype, model, sampling, mode, name, error)
    assert set(launched) == {"gaussian_sum_forward", "gaussian_sum_backward"}, launched
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
