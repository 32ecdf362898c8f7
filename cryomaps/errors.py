"""Exception types of cryomaps.

Every problem with user input is raised as a :class:`CryomapsError` whose message is one line that
names the file (when there is one) and the problem. The command line prints that line and exits
with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class CryomapsError(Exception):
    """Base class of the errors cryomaps reports to users as one clear line."""


class InputError(CryomapsError):
    """A file or argument given by the user cannot be used.

    Args:
        path: the offending file, or ``None`` when the problem is not tied to a file.
        problem: what is wrong, as a short phrase ("not an MRC/CCP4 map", "contains 12 NaN values").
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{self.path}: {problem}")

    def __reduce__(self):  # pickled with its two arguments (errors cross process boundaries)
        return type(self), (self.path, self.problem)


class OutputError(CryomapsError):
    """A result cannot be written (e.g. it holds NaN values); the destination is left untouched.

    Args:
        path: the destination file.
        problem: what is wrong with the result.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


def require_file(path: str | os.PathLike, kind: str = "file", missing: str | None = None) -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is an existing file; else an :class:`InputError`
    saying "is a folder, not a ``kind``" or "no such ``missing``" (default: ``kind``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"is a folder, not a {kind}" if path.is_dir() else f"no such {missing or kind}")
    return path
