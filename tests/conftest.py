"""Shared fixtures: the real-data root, which tests skip without (with the reason shown)."""

from __future__ import annotations

import csv

import pytest

from cryomaps.data_root import ENV_VAR, find_data_root


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
