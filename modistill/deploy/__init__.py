"""Deployment: the RGB-only model of a run as a PyTorch module or an ONNX export, with its preprocessing.

    spec.py        DeploySpec (deploy.json) and the crop the training data used
    model.py       DeployedModel / Deployed / load_deployed (a run folder's deployed stage)
    precision.py   the dtype it runs in: "auto" = bf16 where the CPU has AVX-512 BF16 / AMX, else fp32
    preprocess.py  decode + crop + resize + normalise a clip, top-k
    onnx.py        export to ONNX, check against PyTorch, OnnxPredictor (onnxruntime)
"""

from __future__ import annotations

import os

from .model import Deployed, DeployedModel, load_deployed
from .onnx import OnnxPredictor, check_onnx, export_onnx
from .precision import DTYPE_CHOICES, DeployDtypeError, fastest_dtype, onnx_dtype, resolve_dtype
from .preprocess import preprocess_frames, read_clip, top_k
from .spec import (
    DEPLOY_FILE,
    MODEL_FILE,
    CropSpec,
    DeploySpec,
    crop_box_pixels,
    crop_fractions,
    crop_from_cache,
)

__all__ = [
    "DEPLOY_FILE",
    "DTYPE_CHOICES",
    "DeployDtypeError",
    "MODEL_FILE",
    "CropSpec",
    "DeploySpec",
    "Deployed",
    "DeployedModel",
    "OnnxPredictor",
    "check_onnx",
    "crop_box_pixels",
    "crop_fractions",
    "crop_from_cache",
    "export_onnx",
    "fastest_dtype",
    "load_deployed",
    "load_predictor",
    "onnx_dtype",
    "preprocess_frames",
    "read_clip",
    "resolve_dtype",
    "top_k",
]


def load_predictor(
    run: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    stage: str | None = None,
    cache: str | os.PathLike | None = None,
    dtype: str = "auto",
) -> Deployed | OnnxPredictor:
    """PyTorch from a run folder (``run``; ``stage`` default: the stage its recipe deploys) or onnxruntime from
    an export (``model``: folder or model.onnx).

    ``dtype`` (precision.py): "auto" runs PyTorch in the fastest dtype of the CPU (bf16 with AVX-512 BF16 / AMX)
    and an ONNX export in float32, its dtype; "fp32" forces float32; "bf16" is refused for ONNX exports."""
    if (run is None) == (model is None):
        raise ValueError("give exactly one of a run folder or an exported model")
    if model is not None:
        onnx_dtype(dtype)
        return OnnxPredictor(model)
    return load_deployed(run, stage, cache=cache, dtype=dtype)
