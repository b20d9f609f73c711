"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import logging
import sys


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. train.lr=1e-4 recipe.step3_loss=gd",
    )


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def fail(message: str, code: int = 2) -> int:
    print(f"modistill: error: {message}", file=sys.stderr)
    return code
