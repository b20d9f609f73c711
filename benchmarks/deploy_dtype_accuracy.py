"""Accuracy of the deployed model in bf16 against fp32: the same trained weights, the same clips.

    python benchmarks/deploy_dtype_accuracy.py RUN_DIR [--stages step4 step1_rgb step3] [--out JSON]

For each deployable stage of a trained run folder (``modistill train`` / ``modistill demo``), the deployed model
(``modistill.deploy.load_deployed``) is loaded twice, with ``dtype="fp32"`` and ``dtype="bf16"`` (the weights
converted to bfloat16, the path ``dtype="auto"`` takes on a CPU with AVX-512 BF16 / AMX), and both run on every
clip of the run's prepared cache in the evaluation sampling of the run (``cache_datasets``: K evenly spaced
frames, no flip, the split of the run's protocol). Reported per stage and split: top-1 accuracy in each dtype,
their difference in points, the top-1 agreement (fraction of clips whose predicted class is the same) and the
largest absolute logit difference. The fp32 test accuracy is checked against the one the run recorded in its
``result.json`` (same weights, same clips: they must be equal).

Writes JSON (``--out``, default ``benchmarks/results/deploy_dtype_accuracy.json``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from modistill.deploy import load_deployed  # noqa: E402
from modistill.engine.utils import device_transform_of  # noqa: E402
from modistill.pipeline.session import cache_datasets, open_run  # noqa: E402

SPLITS = ("test", "val", "train")


def _logits(deployed, dataset, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, classes)`` logits and ``(N,)`` labels over ``dataset`` (items with "rgb" and "label"; uint8 items
    are normalised by the dataset's ``device_transform``, as the engine does, into (K, 3, S, S) floats)."""
    on_device = device_transform_of(dataset)
    out, labels = [], []
    for start in range(0, len(dataset), batch):
        items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        clips = {"rgb": torch.stack([it["rgb"] for it in items])}
        if on_device is not None:
            clips = on_device(clips)
        out.append(deployed.logits(clips["rgb"]))
        labels += [int(it["label"]) for it in items]
    return np.concatenate(out), np.asarray(labels)


def compare_stage(run_dir: Path, stage: str, batch: int = 16) -> dict:
    """fp32 vs bf16 of one stage, per split (see the module docstring)."""
    handle = open_run(run_dir)
    factory, _, _ = cache_datasets(handle.exp)
    models = {dt: load_deployed(run_dir, stage, dtype=dt) for dt in ("fp32", "bf16")}
    rows = {}
    for split in SPLITS:
        try:
            ds = factory(split, ("rgb",), False)
        except (ValueError, KeyError) as exc:  # e.g. a protocol without a validation split
            rows[split] = {"error": str(exc)}
            continue
        (l32, y), (l16, _) = (_logits(models[dt], ds, batch) for dt in ("fp32", "bf16"))
        p32, p16 = l32.argmax(1), l16.argmax(1)
        rows[split] = {
            "n": int(len(y)),
            "accuracy_fp32": float((p32 == y).mean()),
            "accuracy_bf16": float((p16 == y).mean()),
            "accuracy_diff_points": float(100 * ((p16 == y).mean() - (p32 == y).mean())),
            "top1_agreement": float((p32 == p16).mean()),
            "disagreements": int((p32 != p16).sum()),
            "max_abs_logit_diff": float(np.abs(l32 - l16).max()),
            "max_abs_logit_fp32": float(np.abs(l32).max()),
        }
    recorded = handle.stages[stage].result["test"]["accuracy"]
    rows["recorded_test_accuracy"] = float(recorded)
    rows["fp32_reproduces_recorded"] = bool(abs(rows["test"]["accuracy_fp32"] - recorded) < 1e-9)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a trained run folder")
    ap.add_argument("--stages", nargs="+", default=["step4"], help="deployable stages (default: step4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "deploy_dtype_accuracy.json"
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "run_dir": str(args.run_dir.resolve()),
        "torch": torch.__version__,
        "stages": {s: compare_stage(args.run_dir, s) for s in args.stages},
    }
    lines = [
        "| stage | split | clips | acc fp32 | acc bf16 | diff (points) | top-1 agreement | max abs logit diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage, rows in result["stages"].items():
        for split in SPLITS:
            r = rows[split]
            if "error" in r:
                continue
            lines.append(
                f"| {stage} | {split} | {r['n']} | {100 * r['accuracy_fp32']:.1f} | {100 * r['accuracy_bf16']:.1f} "
                f"| {r['accuracy_diff_points']:+.2f} | {100 * r['top1_agreement']:.1f} % ({r['disagreements']} "
                f"differ) | {r['max_abs_logit_diff']:.3f} (of {r['max_abs_logit_fp32']:.1f}) |"
            )
        same = rows["fp32_reproduces_recorded"]
        lines.append(f"<!-- {stage}: fp32 reproduces the recorded test accuracy: {same} -->")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
