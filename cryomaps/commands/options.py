"""Shared validation of command-line input: one set of checks used by every subcommand.

Two kinds of helpers:

- argparse ``type=`` functions (:func:`positive_float`, :func:`resolution`, :func:`voxel_size`,
  :func:`padding`, :func:`int_range`, :func:`device`, :func:`output_file`, ...). They return the
  parsed value or raise ``argparse.ArgumentTypeError``; the parser then prints one line naming the
  option and the problem and exits with status 2. Use them as
  ``parser.add_argument("--voxel-size", type=voxel_size, ...)``.
- checks run once the inputs are known (:func:`check_distinct_paths`, :func:`check_model_in_grid`,
  :func:`check_map_informative`); they raise :class:`cryomaps.errors.InputError`.

This module imports only the standard library at import time (``cryomaps --help`` stays fast).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

MAX_NAME_BYTES = 255
"""Longest file name (bytes) that Linux file systems accept."""

VOXEL_SIZE_RANGE_A = (0.01, 100.0)
"""Accepted voxel edge lengths (Å)."""

RESOLUTION_RANGE_A = (0.1, 1000.0)
"""Accepted resolutions (Å); ``0``, negative and infinite values are refused by every command."""

MAX_PADDING_A = 10_000.0
"""Largest margin (Å) around a model."""


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (``nan`` and ``inf`` are refused)."""
    return _number(text)


def float_range(minimum: float | None = None, maximum: float | None = None, *, unit: str = "",
                exclusive_minimum: bool = False):
    """A ``type=`` function accepting finite numbers in ``[minimum, maximum]``.

    ``exclusive_minimum`` makes the lower bound strict (``> minimum``); ``unit`` (e.g. "Å") is shown
    in the message.
    """
    suffix = f" {unit}" if unit else ""

    def parse(text: str) -> float:
        value = _number(text)
        too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
        too_high = maximum is not None and value > maximum
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {_describe_range(minimum, maximum, exclusive_minimum)}"
                                             f"{suffix}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _describe_range(minimum, maximum, exclusive_minimum: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"{'above' if exclusive_minimum else 'at least'} {minimum:g} and at most {maximum:g}"
    if minimum is not None:
        if minimum == 0:
            return "positive" if exclusive_minimum else "non-negative"
        return f"{'above' if exclusive_minimum else 'at least'} {minimum:g}"
    return f"at most {maximum:g}"


positive_float = float_range(0.0, exclusive_minimum=True)
"""A finite number > 0."""

non_negative_float = float_range(0.0)
"""A finite number >= 0."""

resolution = float_range(*RESOLUTION_RANGE_A, unit="Å")
"""A resolution in Å within :data:`RESOLUTION_RANGE_A`."""

voxel_size = float_range(*VOXEL_SIZE_RANGE_A, unit="Å")
"""A voxel edge length in Å within :data:`VOXEL_SIZE_RANGE_A`."""

padding = float_range(0.0, MAX_PADDING_A, unit="Å")
"""A margin in Å in ``[0, MAX_PADDING_A]``."""


def int_range(minimum: int | None = None, maximum: int | None = None, *, multiple_of: int | None = None):
    """A ``type=`` function accepting integers in ``[minimum, maximum]``, optionally multiples of a step."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {_describe_range(minimum, maximum, False)}, got {value}")
        if multiple_of is not None and value % multiple_of:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple_of}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def device(text: str) -> str:
    """A torch device that exists here: ``cpu``, ``cuda``, ``cuda:N`` (N below the GPU count) or ``mps``."""
    if text == "cpu":  # the common case needs no torch import at parse time
        return text
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (use cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (use cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine (use cpu)")
    elif parsed.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (use cpu, cuda or cuda:N)")
    return text


def output_file(text: str) -> str:
    """A file that can be written: non-empty name within 255 bytes, not a folder, in a writable folder.

    An existing read-only file is refused rather than replaced. Returns ``text`` unchanged.
    """
    problem = output_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}" if text else problem)
    return text


def output_problem(text: str) -> str | None:
    """Why ``text`` cannot be written as an output file (None when it can)."""
    if not text or not text.strip():
        return "an empty output file name"
    path = Path(text)
    if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in path.parts):
        return f"file name longer than {MAX_NAME_BYTES} bytes"
    if text.endswith(os.sep) or path.is_dir():
        return "is a folder, not a file name"
    folder = path.parent
    if not folder.is_dir():
        return f"output folder {folder} does not exist"
    if not _writable(folder):
        return f"output folder {folder} is read-only"
    if path.exists() and not _writable(path):
        return "exists and is read-only (make it writable to replace it)"
    return None


def _writable(path: Path) -> bool:
    """Writable by this process and not marked read-only (no write bit; respected even for root)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def input_folder(text: str) -> str:
    """An existing folder to read from. Returns ``text``."""
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name")
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'is not a folder' if Path(text).exists() else 'no such folder'}")
    return text


def output_folder(text: str) -> str:
    """A folder to write into: an existing writable folder, or one that can be created. Returns ``text``."""
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    existing = path
    while not existing.exists():  # the nearest folder that exists ("." or "/" at the latest)
        existing = existing.parent
    if not existing.is_dir() or not _writable(existing):
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not a writable folder")
    return text


def check_distinct_paths(inputs: dict[str, object], outputs: dict[str, object]) -> None:
    """Refuse an output that is one of the inputs or another output (symbolic and hard links resolved).

    Args:
        inputs: option name (e.g. "MODEL", "--like") -> path or None (absent options are skipped).
        outputs: option name (e.g. "-o", "--mask-out") -> path or None.
    Raises:
        InputError: naming the output, the clashing option and the file.
    """
    from cryomaps.errors import InputError

    seen = [(name, path) for name, path in inputs.items() if path is not None]
    for name, path in outputs.items():
        if path is None:
            continue
        for other_name, other_path in seen:
            if _same_file(path, other_path):
                role = "input" if other_name in inputs else "output"
                raise InputError(path, f"{name} would overwrite the {role} {other_name} ({other_path}); "
                                 "choose another output file")
        seen.append((name, path))


def _same_file(first, second) -> bool:
    first, second = Path(first), Path(second)
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist yet
        return False


def warn(message: str) -> None:
    """Print a one-line warning on stderr (``cryomaps: warning: ...``)."""
    print(f"cryomaps: warning: {message}", file=sys.stderr)


def check_model_in_grid(structure, grid, what: str) -> None:
    """Refuse a model with no atom inside ``grid``; warn when fewer than half of its atoms are.

    Args:
        structure: a :class:`cryomaps.io.Structure` (its ``source`` names the file).
        grid: the :class:`cryomaps.io.Grid` the model is rendered or scored on.
        what: how the grid was given, e.g. "the --like map ref.mrc".
    """
    from cryomaps.errors import InputError

    fraction = float(grid.has_nearest_voxel(structure.coords).mean())
    if fraction == 0.0:
        raise InputError(structure.source, f"no atom lies inside the box of {what}")
    if fraction < 0.5:
        warn(f"{structure.source}: only {100 * fraction:.1f}% of the atoms lie inside the box of {what}")


def check_resolution_sampled(resolution: float | None, resolution_mode: str, grid) -> None:
    """Refuse finite-resolution images finer than the grid can hold (d below 2 x voxel size).

    Beyond the grid's Nyquist limit the cut at 1/d is not representable, and the renderer's
    internal sampling (and memory: about 21 GB for d = 0.1 Å on a 2 Å grid) grows without bound.
    """
    from cryomaps.errors import InputError
    from cryomaps.io.grid import nyquist_resolution

    if resolution_mode != "finite" or resolution is None:
        return
    nyquist = nyquist_resolution(grid.voxel_size)
    if resolution < nyquist:
        raise InputError(None, f"--resolution {resolution:g} Å is finer than the grid's Nyquist limit {nyquist:g} Å "
                         "(2 x voxel size): finite-resolution images need a coarser resolution or smaller voxels")


def check_map_informative(density_map, path, minimum_edge: int = 2, require_variation: bool = True) -> None:
    """Refuse a map too small to use (an edge below ``minimum_edge`` voxels) or, when its values
    matter (``require_variation``; not for a map used only as a grid), one with constant values."""
    from cryomaps.errors import InputError

    shape = density_map.data.shape
    if min(shape) < minimum_edge:
        raise InputError(path, f"map of shape {shape} is too small (at least {minimum_edge} voxels per axis)")
    if require_variation and float(density_map.data.max()) == float(density_map.data.min()):
        raise InputError(path, f"map has the same value ({float(density_map.data.flat[0]):g}) everywhere")
