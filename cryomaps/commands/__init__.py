"""Subcommands of the ``cryomaps`` command line; see :mod:`cryomaps.cli` for the module contract."""
