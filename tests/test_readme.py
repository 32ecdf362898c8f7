"""The README's Python examples run as written (as gemmi tests its docs).

Each ```python block of README.md is run in a fresh folder. The model file an example reads
(``model.cif``: the reader's own model) is the built-in example peptide written under that name,
so the examples need no shared data.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from cryomaps.io.example import write_example_peptide

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
STRUCTURE_FILE = re.compile(r"""["']([\w./-]+\.(?:cif|pdb))["']""")


def test_the_readme_has_a_python_example():
    assert PYTHON_BLOCKS


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in STRUCTURE_FILE.findall(code):
        write_example_peptide(tmp_path / name)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    coords = namespace.get("coords")
    if isinstance(coords, torch.Tensor) and coords.requires_grad:  # the renderer example: "coords.grad: (N, 3)"
        assert coords.grad is not None and coords.grad.shape == coords.shape == (coords.shape[0], 3)
        assert torch.isfinite(coords.grad).all() and coords.grad.abs().sum() > 0
