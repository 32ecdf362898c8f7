"""Shared fixtures: the real-data root, which tests skip without (with the reason shown), and what
several test files read from it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cryomaps.data.manifest import read_manifest
from cryomaps.data_root import ENV_VAR, find_data_root
from cryomaps.io.weights import bundled_weights_path
from cryomaps.models.weights import load_network

EXAMPLE_MANIFEST = Path(__file__).resolve().parents[1] / "data_manifests" / "example_pairs.csv"


@pytest.fixture(scope="session")
def data_root():
    root = find_data_root()
    if root is None:
        pytest.skip(f"shared data not found: set {ENV_VAR} or place it at ../shared/data")
    return root


@pytest.fixture(scope="session")
def shared_pairs(data_root):
    """Rows of pairs/pairs.csv with absolute ``map_path`` and ``model_path`` added."""
    with open(data_root / "pairs" / "pairs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["map_path"] = data_root / "pairs" / row["map_file"]
        row["model_path"] = data_root / "pairs" / row["model_file"]
    return rows


@pytest.fixture(scope="session")
def structures_dir(data_root):
    return data_root / "structures"


@pytest.fixture(scope="session")
def small_model(structures_dir):
    """A small real model: chain A of 2VA0, 99 residues (gzipped PDB)."""
    return structures_dir / "2va0A_99res.pdb.gz"


@pytest.fixture(scope="session")
def example_entries(data_root):
    """The eight shared pairs of ``data_manifests/example_pairs.csv``, paths in the data root."""
    return read_manifest(EXAMPLE_MANIFEST, data_root=data_root)


@pytest.fixture(scope="session")
def bundled_generator():
    """The bundled struc2map generator and its metadata (loaded once)."""
    return load_network(bundled_weights_path("generator"), "generator")


@pytest.fixture(scope="session")
def bundled_cryores():
    """The bundled CryoRes network and its metadata (loaded once)."""
    return load_network(bundled_weights_path("cryores"), "cryores")
