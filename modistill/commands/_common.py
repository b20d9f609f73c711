"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import logging
import sys

from modistill.core.errors import ModistillError


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. train.lr=1e-4 recipe.step3_loss=gd",
    )


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr. Under torchrun only rank 0 logs progress (INFO): every rank runs the same stages, so the
    other ranks would repeat each line; their warnings and errors still show, marked with their rank."""
    from modistill.engine.distributed import env_rank  # imports torch (heavy): only when a command runs

    rank = env_rank()
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if rank == 0 else max(level, logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s " + (f"[rank {rank}] " if rank else "") + "%(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def fail(message: str, code: int = 2) -> int:
    """Print a user error the one way the CLI prints them (``modistill: error: ...``); returns ``code``."""
    print(f"modistill: error: {message}", file=sys.stderr)
    return code


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for a user-side error, or None for anything else (a bug: keep its traceback).

    User-side: every `ModistillError`, and a missing / unreadable path the user named (an OSError that carries
    a file name)."""
    if isinstance(exc, ModistillError):
        return str(exc)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror or exc}"
        return str(exc)
    return None
