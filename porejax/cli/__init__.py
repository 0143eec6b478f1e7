"""The `porejax` command. Each sub-command is a thin layer over the library; errors print one line.

Axis names: x, y, z are array axes 0, 1, 2 of a volume as read (the TauFactor / PoreSpy convention).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable, Sequence

from porejax import host
from porejax.cli import analysis, generation, training
from porejax.cli.training import add_training_arguments, train_with_arguments, training_configs
from porejax.errors import PorejaxError

__all__ = [
    "add_training_arguments",
    "build_parser",
    "main",
    "os_error_message",
    "train_with_arguments",
    "training_configs",
]

COMMANDS: list[Callable] = [
    generation.add_init,
    training.add_train,
    training.add_demo,
    generation.add_synth,
    generation.add_generate,
    generation.add_info,
    generation.add_import_torch,
    analysis.add_characterise,
    analysis.add_compare,
    analysis.add_design,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="porejax", description=__doc__.splitlines()[0])
    debug_help = "show the full traceback of an error instead of its one-line message"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():  # `porejax CMD ... --debug` too (SUPPRESS keeps a --debug given before CMD)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


# what to do about an OSError, by errno; the message names the path involved
_OS_FIXES = {
    errno.ENOSPC: "no space left on device writing {path}: free space there (`df -h`) or write to another folder",
    errno.EDQUOT: "disk quota exceeded writing {path}: free space in your quota or write to another folder",
    errno.EROFS: "{path} is on a read-only file system: write to another folder",
    errno.EACCES: "permission denied for {path}: check its permissions or use another path",
    errno.EPERM: "operation not permitted on {path}: check its permissions or use another path",
    errno.EISDIR: "{path} is a directory: give a file name",
    errno.ENOTDIR: "a part of {path} is a file, not a folder: check the path",
    errno.EEXIST: "{path} already exists: remove it or choose another name",
    errno.ENOENT: "{path} does not exist: check the path",
    errno.ENOTEMPTY: "{path} is a folder that is not empty: remove it or choose another name",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the problem with the path involved, and the fix."""
    path = exc.filename if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        path = f"{exc.filename} -> {exc.filename2}"
    template = _OS_FIXES.get(exc.errno)
    if template is None:
        return f"{exc.strerror or exc} ({path})"
    return template.format(path=path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure a user can cause or meet ends as one line on stderr and status 2
    (130 when interrupted), unless --debug asks for the traceback."""
    args = build_parser().parse_args(argv)
    if not args.debug:  # orbax's logs and its orphaned reads of damaged checkpoints would bury the one line
        logging.getLogger("absl").setLevel(logging.CRITICAL)
        sys.unraisablehook = lambda unraisable: None
    host.use_compilation_cache()  # compiled programs kept on disk: later runs start in seconds less
    try:
        return args.run(args)
    except (PorejaxError, OSError) as exc:
        if args.debug:
            raise
        message = os_error_message(exc) if isinstance(exc, OSError) else " ".join(str(exc).split("\n"))
        print(f"porejax {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"porejax {args.command}: interrupted", file=sys.stderr)
        return 130
