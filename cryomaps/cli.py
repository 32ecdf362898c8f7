"""The ``cryomaps`` command.

Each subcommand lives in its own module under :mod:`cryomaps.commands`. Such a module is light at
import time (argparse only) and exposes::

    HELP: str                                   # one line shown by ``cryomaps --help``
    def add_arguments(parser) -> None           # declares its options
    def run(args) -> int | None                 # does the work; heavy imports happen in here

Subcommands driven by Hydra take ``key=value`` overrides as positional arguments
(``nargs="*"``) and compose the packaged configs inside ``run``. Errors of type
:class:`cryomaps.errors.CryomapsError` are printed as one line and give exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from cryomaps import __version__
from cryomaps.commands import (
    curate,
    demo,
    evaluate,
    fetch,
    finetune,
    fit,
    generate,
    info,
    locres,
    refine,
    simulate,
    train,
)
from cryomaps.errors import CryomapsError

# name -> command module; order is the order shown by --help.
COMMANDS = {
    "demo": demo,
    "info": info,
    "simulate": simulate,
    "generate": generate,
    "locres": locres,
    "evaluate": evaluate,
    "fit": fit,
    "refine": refine,
    "fetch": fetch,
    "curate": curate,
    "train": train,
    "finetune": finetune,
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit 2), without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cryomaps",
        description="Differentiable cryo-EM map simulation, map generation and local resolution.",
    )
    parser.add_argument("--version", action="version", version=f"cryomaps {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that wait for each other sleep instead of spinning (set before torch loads):
    # on a busy 2-core machine spinning made generate 2.4x and half-map locres 1.4x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        _take_late_overrides(parser, args, extras)
    except SystemExit as done:  # --help, --version, or a one-line parse error (status 2)
        return 0 if done.code is None else int(done.code)
    if args.command is None:
        parser.print_help()
        return 1
    previous_handler = _interrupt_on_sigterm()
    try:
        status = args._run(args)
    except CryomapsError as error:
        sys.stdout.flush()
        print(f"cryomaps {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cryomaps {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 141
    finally:
        _restore_sigterm(previous_handler)
    return int(status or 0)


def _interrupt_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt like Ctrl-C, so atomic writes clean up; returns the old handler."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave the handler alone
        return None


def _restore_sigterm(previous_handler) -> None:
    if previous_handler is not None:
        signal.signal(signal.SIGTERM, previous_handler)


def _take_late_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]) -> None:
    """Accept Hydra ``key=value`` overrides written after options (``curate M --out D key=value``).

    argparse fills a positional list only once, so such overrides arrive as unrecognised
    arguments; they are appended to ``args.overrides`` for commands that take overrides. Anything
    else unrecognised is an error, as with ``parse_args``.
    """
    late = [item for item in extras if "=" in item and not item.startswith("-")]
    if late and hasattr(args, "overrides"):
        args.overrides = list(args.overrides or []) + late
        extras = [item for item in extras if item not in late]
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")


if __name__ == "__main__":
    sys.exit(main())
