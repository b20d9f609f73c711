"""`modistill models`: list the registered models with their parameter counts."""

from __future__ import annotations

import argparse
import fnmatch
import json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-classes", type=int, default=60, help="classifier outputs K (default 60, NTU-60)"
    )
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    parser.add_argument("--filter", default="*", help="glob on model names, e.g. 'stream_*' (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def model_rows(num_classes: int = 60, width: float = 1.0, pattern: str = "*") -> list[dict[str, object]]:
    """One row per registered model: name, class name, parameter counts, description.

    Models are built on the ``meta`` device (why: no memory is allocated and nothing is initialised for real,
    so even full-width ResNet-50 streams are counted in milliseconds).
    """
    import torch

    from modistill.models import create_model, list_models, model_description

    rows: list[dict[str, object]] = []
    for name in list_models():
        if not fnmatch.fnmatch(name, pattern):
            continue
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, width=width)
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append(
            {
                "name": name,
                "type": type(model).__name__,
                "params": params,
                "trainable": trainable,
                "description": model_description(name),
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    if args.num_classes < 1 or not args.width > 0:
        print(f"error: --num-classes must be >= 1 and --width > 0 (got {args.num_classes}, {args.width})")
        return 2
    rows = model_rows(args.num_classes, args.width, args.filter)
    if not rows:
        print(f"no registered model matches {args.filter!r}")
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"registered models (num_classes={args.num_classes}, width={args.width}):")
    w_name = max(len("name"), *(len(str(r["name"])) for r in rows))
    w_type = max(len("type"), *(len(str(r["type"])) for r in rows))
    print(f"{'name':<{w_name}}  {'type':<{w_type}}  {'params':>12}  description")
    for r in rows:
        print(f"{r['name']:<{w_name}}  {r['type']:<{w_type}}  {r['params']:>12,}  {r['description']}")
    return 0
