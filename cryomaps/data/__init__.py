"""Data handling: manifests of map-model pairs, fetching from EMDB/PDB, curation, patch sampling.

Submodules are imported explicitly (``from cryomaps.data.manifest import read_manifest``) so that
importing this package stays cheap.
"""
