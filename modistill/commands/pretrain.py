"""`modistill pretrain OUT`: the stand-in for ImageNet initialisation (docs/pretrain.md).

Renders labelled still frames of random poses of performers and rooms the benchmark never uses, trains the
benchmark's ResNet trunk on body-part maps and 2D joints, and writes ``OUT/<modality>-<key>/backbone.safetensors``
(torchvision key names) for ``model.pretrained``. Cached: a second call with the same settings reuses it.
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (content-addressed sub-folders are created under it)")
    parser.add_argument("--modality", choices=["rgb", "depth", "both"], default="both",
                        help="which stream's trunk to pretrain (default both: one checkpoint each)")
    parser.add_argument("--backbone", choices=["resnet18", "resnet34", "resnet50"], default="resnet18",
                        help="trunk architecture; must equal the experiment's model.backbone (default resnet18)")
    parser.add_argument("--width", type=float, default=0.25,
                        help="channel width; must equal model.width (default 0.25, the demo's)")
    parser.add_argument("--size", type=int, default=64, help="frame side; use the prepared cache's (default 64)")
    parser.add_argument("--frames", type=int, default=None, help="pretext frames (default 6144)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 12)")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per step (default 64)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frames and of the training (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.data.synth.pretext import PretextConfig
    from modistill.engine import distributed as D
    from modistill.pipeline.pretrain import PretrainConfig, pretrain_modalities

    from ._common import setup_logging

    setup_logging()
    pt = PretextConfig(seed=args.seed, size=args.size,
                       **({"frames": args.frames} if args.frames is not None else {}))
    opts = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr") if getattr(args, k) is not None}
    base = PretrainConfig(backbone=args.backbone, width=args.width, seed=args.seed, pretext=pt, **opts)
    mods = ("rgb", "depth") if args.modality == "both" else (args.modality,)
    with D.job():  # under torchrun: one DDP job per trunk, rank 0 writes
        paths = pretrain_modalities(args.out, base, mods, workers=args.workers, progress=not args.no_progress)
        main = D.is_main()
    if main:
        for m, p in paths.items():
            print(f"{m}: {p}")
    return 0
