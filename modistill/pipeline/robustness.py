"""Depth-noise robustness study (Garcia et al. 2018 Table 3, REF §3-5).

The step-2 teacher is evaluated with multiplicative (speckle) noise on its depth input, I = I * n per pixel,
at the table's levels v in {0, 1e-3, 1e-2, 1e-1, 1, 10} (core/paper.py), and with "void" depth (no depth: a
black image), next to the RGB-only final model. Noise is applied to the image the network sees, in [0, 1]
intensity units (before the ImageNet mean/std normalisation the dataset applies): the paper's depth image I.

Two readings of v (``reading``): ``"std"`` (default: the released code draws n ~ N(1, v), v the standard
deviation; the paper's numbers came from that code) and ``"variance"`` (the paper heads the column sigma^2:
n ~ N(1, sqrt(v))). ``clip`` (default True, the released code): the noisy image is saturated to the valid range
[0, 1] (the code's uint8 range); False keeps the unclipped product of the paper's formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from modistill.core.paper import NOISE_SIGMA2
from modistill.data.normalize import denormalize, normalize
from modistill.engine import distributed as D
from modistill.engine.evaluate import eval_kwargs, evaluate

from .files import RobustnessFile
from .runner import predictor
from .session import cache_datasets, open_run

__all__ = ["NOISE_READINGS", "noise_std", "speckle_transform", "void_transform", "run_robustness"]

Reading = Literal["std", "variance"]
NOISE_READINGS: tuple[str, ...] = ("std", "variance")


def noise_std(level: float, reading: str = "std") -> float:
    """The standard deviation of n for the table's level ``level`` under ``reading`` (see the module doc)."""
    if reading not in NOISE_READINGS:
        raise ValueError(f"reading must be one of {NOISE_READINGS}, got {reading!r}")
    if level < 0:
        raise ValueError(f"noise level (sigma / sigma^2) must be >= 0, got {level}")
    return float(level) if reading == "std" else math.sqrt(level)


def speckle_transform(key: str, sigma2: float, seed: int = 0, *, reading: Reading = "std",
                      clip: bool = True) -> Callable[[dict], dict]:
    """A batch transform multiplying ``batch[key]`` (normalised clips ``(B, T, 3, H, W)``) by n ~ N(1, s) in image
    space, s = ``noise_std(sigma2, reading)``, then saturating to [0, 1] when ``clip``. The noise stream is seeded,
    so a study is reproducible. Level 0 is exactly the identity."""
    sigma = noise_std(sigma2, reading)
    gen = torch.Generator().manual_seed(seed)

    def apply(batch: dict) -> dict:
        if sigma == 0:
            return batch
        img = denormalize(batch[key])
        noise = 1.0 + sigma * torch.randn(img.shape, generator=gen, dtype=torch.float32).to(
            img.device, img.dtype
        )
        noisy = img * noise
        return {**batch, key: normalize(noisy.clamp(0.0, 1.0) if clip else noisy)}

    return apply


def void_transform(key: str) -> Callable[[dict], dict]:
    """Replace ``batch[key]`` by a black image (all-zero intensities), i.e. no depth at all."""

    def apply(batch: dict) -> dict:
        return {**batch, key: normalize(torch.zeros_like(batch[key]))}

    return apply


def noise_levels(values: Sequence[float] | None = None) -> list[float]:
    return list(NOISE_SIGMA2 if values is None else values)


def run_robustness(
    run_dir: str | Path,
    sigma2: Sequence[float] | None = None,
    *,
    seed: int = 0,
    teacher_stage: str = "step2",
    final_stage: str = "step4",
    reading: Reading = "std",
    clip: bool = True,
) -> dict[str, Any]:
    """Table 3 for the run in ``run_dir``: the teacher's test accuracy under each noise level and with void
    depth, next to the final RGB-only model's. Writes ``<run_dir>/robustness.json`` and returns it."""
    noise_std(0.0, reading)  # a bad reading fails before anything is loaded
    run = open_run(run_dir)
    exp = run.exp
    factory, num_classes, _ = cache_datasets(exp)
    teacher = run.model(teacher_stage)
    ev = run.stages[teacher_stage].stage.evaluate
    if "depth" not in ev.inputs:
        raise ValueError(f"stage {teacher_stage!r} does not read depth (inputs {ev.inputs})")
    data = factory("test", ev.inputs, False)

    def acc(model, predict, dataset) -> float:
        return evaluate(model, predict, dataset, **eval_kwargs(
            exp.train, clips_per_video=exp.data.clips_per_video, num_classes=num_classes, progress=False)).accuracy

    levels = noise_levels(sigma2)
    out: dict[str, Any] = {
        "stage": teacher_stage,
        "sigma2": levels,
        "seed": seed,
        "reading": reading,
        "clip": clip,
        "accuracy": [acc(teacher, predictor(ev, speckle_transform("depth", s, seed, reading=reading, clip=clip)),
                         data) for s in levels],
    }
    out["void"] = acc(teacher, predictor(ev, void_transform("depth")), data)
    out["rgb_final"] = run.result(final_stage)["test"]["accuracy"] if final_stage in run.stages else None
    if D.is_main():
        RobustnessFile(**out).write(Path(run_dir) / "robustness.json")
    return out
