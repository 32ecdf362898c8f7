"""LightningModules (training logic) and their losses; networks come from :mod:`cryomaps.models`."""
