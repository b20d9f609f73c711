"""The deployed RGB-only model: a run folder's deployed stage as one module with its `DeploySpec`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from modistill.data import cache as C
from modistill.pipeline.session import open_run

from .precision import prepare_module, resolve_dtype
from .spec import CropSpec, DeploySpec, crop_from_cache

__all__ = ["Deployed", "DeployedModel", "load_deployed"]


# -------------------------------------------------------------------------------------------- the model
class DeployedModel(nn.Module):
    """The RGB-only deployed model: ``forward(clips (B, K, 3, S, S)) -> logits (B, num_classes)`` float32.

    Runs ``streams`` of ``net`` (a MultiStreamNet) with the single input ``input_key``; connections between
    the run streams are active, the prediction is the network's fusion of them (late fusion, REF §1). The clips
    are cast to the weights' dtype on entry and the logits back to float32 (a bf16 module, see precision.py,
    keeps the float32 interface; for a float32 module neither cast is traced into an ONNX export)."""

    def __init__(self, net: nn.Module, streams: Sequence[str], input_key: str = "rgb") -> None:
        super().__init__()
        wrong = {s: net.specs[s].modality for s in streams if net.specs[s].modality != input_key}
        if not streams or wrong:
            raise ValueError(
                f"deployed streams {list(streams)} must all read {input_key!r}; these do not: {wrong}"
            )
        self.net, self.streams, self.input_key = net, tuple(streams), input_key

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, clips: Tensor) -> Tensor:
        dtype = self.dtype
        x = clips if clips.dtype == dtype else clips.to(dtype)
        logits = self.net({self.input_key: x}, streams=self.streams).logits
        return logits if logits.dtype == torch.float32 else logits.float()


@dataclass
class Deployed:
    """A deployed model loaded from a run folder: ``module`` + its :class:`DeploySpec` (``cache``: the
    prepared cache the run trained on, for reference clips; ``dtype``: "fp32" or "bf16", the module's)."""

    module: DeployedModel
    spec: DeploySpec
    cache: Path | None = None
    dtype: str = "fp32"

    @property
    def streams(self) -> tuple[str, ...]:
        return self.spec.streams

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.spec.input,)

    @property
    def frames(self) -> int:
        return self.spec.frames

    @property
    def size(self) -> int:
        return self.spec.size

    @property
    def class_names(self) -> list[str]:
        return self.spec.class_names

    @property
    def crop(self) -> CropSpec:
        return self.spec.crop

    @torch.inference_mode()
    def logits(self, clips: np.ndarray | Tensor) -> np.ndarray:
        """``(B, K, 3, S, S)`` float32 -> ``(B, num_classes)`` float32 logits (numpy), computed in ``dtype``."""
        dev = next(self.module.parameters()).device
        return self.module(torch.as_tensor(clips, dtype=torch.float32, device=dev)).cpu().numpy()


def load_deployed(
    run_dir: str | os.PathLike,
    stage: str | None = None,
    *,
    cache: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str = "auto",
) -> Deployed:
    """The deployed model of ``stage`` of a run folder, with the best weights, in eval mode.

    ``stage`` defaults to the stage the run's recipe deploys (``step4``, ``motion_final``, ``hoffman_<loss>``:
    `modistill.pipeline.session.deployed_stage`). ``cache`` overrides the run's ``data.cache`` (its
    ``cache_config.json`` gives S and the class names, its index the crop).
    ``dtype``: "auto" (the fastest the device offers: bf16 on a CPU with AVX-512 BF16 / AMX, see
    precision.py), "fp32" or "bf16"; the weights are converted to it (load "fp32" to export)."""
    dtype = resolve_dtype(dtype, device)
    handle = open_run(run_dir)
    stage = stage or handle.deployed_stage
    ev = handle.stage(stage).stage.evaluate
    if tuple(ev.inputs) != ("rgb",):
        raise ValueError(
            f"{run_dir}: stage {stage!r} is evaluated on {list(ev.inputs)}; deployment takes RGB only "
            f"(the run deploys {handle.deployed_stage!r}; other stages evaluated on rgb alone work too)"
        )
    root = Path(cache or handle.exp.data.cache)
    if not (root / C.CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{root / C.CONFIG_NAME}: the run's prepared cache is needed for the input size "
            "and the crop; pass cache= (--cache) or use an export folder"
        )
    cfg = C.load_config(root)
    names = handle.class_names or cfg.class_names or [f"class_{i}" for i in range(handle.num_classes)]
    spec = DeploySpec(
        frames=handle.exp.data.frames,
        size=cfg.size,
        class_names=list(names),
        crop=crop_from_cache(root),
        stage=stage,
        streams=tuple(ev.streams),
        input=ev.inputs[0],
        run_dir=str(Path(run_dir).resolve()),
    )
    module = DeployedModel(handle.model(stage), ev.streams, ev.inputs[0]).to(device)
    return Deployed(prepare_module(module, dtype), spec, root, dtype)
