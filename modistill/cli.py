"""The `modistill` console script.

Each subcommand lives in its own module under `modistill.commands` and exposes
`register(parser) -> None`, which fills its own argparse sub-parser and sets `func(args) -> int` as default.
Modules are imported lazily so `modistill --help` stays fast and one command's heavy imports never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from modistill.commands._common import fail, user_error_message

# (command module, one-line help); order is the order shown in --help.
COMMANDS: list[tuple[str, str]] = [
    ("models", "list the registered models with parameter counts"),
    ("synth", "generate a synthetic NTU-format RGB-D action dataset"),
    ("prepare", "decode, align, crop and cache a dataset for fast training"),
    ("pretrain", "pretrain stream trunks on synthetic body parts (the stand-in for ImageNet init)"),
    ("train", "train a recipe (all stages or one)"),
    ("eval", "evaluate a trained stage on a split"),
    ("ablation", "run and tabulate a set of recipe variants (paper Table 2)"),
    ("robustness", "depth-noise robustness study (paper Table 3)"),
    ("report", "write the Markdown/HTML report of a run directory"),
    ("export", "export the deployed RGB-only model to ONNX"),
    ("predict", "top-k classes for an RGB video with the deployed model"),
    ("demo", "synthetic data -> the full staged recipe -> report"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modistill", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS:
        try:
            module = importlib.import_module(f"modistill.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"modistill.commands.{name}":
                raise
            continue  # command not built in this checkout
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.register(p)
    return parser


def _version() -> str:
    from modistill import __version__

    return f"modistill {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Dotted KEY=VALUE overrides may follow options (`train CFG --resume train.lr=1e-4`); argparse only takes
    # them before, so leftovers that look like overrides join the command's overrides.
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # user errors: one line, no traceback; anything else is a bug and re-raised
        message = user_error_message(exc)
        if message is None:
            raise
        return fail(message, getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    sys.exit(main())
