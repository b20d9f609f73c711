"""ONNX export of the deployed RGB-only model, the onnxruntime predictor, and the export check.

Split from `modistill.deploy.spec` (kept under ~400 lines); ``onnxruntime`` is an optional dependency
(``pip install modistill[export]``), imported lazily here only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modistill.data import cache as C
from modistill.data.manifest import read_manifest
from modistill.data.sampling import sample_indices
from modistill.data.splits import source_kind

from .model import Deployed
from .precision import DeployDtypeError, onnx_dtype
from .preprocess import preprocess_frames, read_clip
from .spec import DEPLOY_FILE, MODEL_FILE, DeploySpec

__all__ = ["OnnxPredictor", "export_onnx", "check_onnx", "reference_clip"]


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("onnxruntime is needed for ONNX models: pip install 'modistill[export]'") from exc
    return onnxruntime


class OnnxPredictor:
    """An exported model run by onnxruntime: ``logits(clips (B, K, 3, S, S)) -> (B, num_classes)``; ``spec``
    is read from the ``deploy.json`` next to ``model.onnx``; ``threads``: onnxruntime's intra-op threads (None:
    its default, all cores). Runs float32 (the export's dtype, see precision.py)."""

    dtype = "fp32"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        ort = _ort()
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found")
        self.path = path
        self.spec = DeploySpec.load(path.with_name(DEPLOY_FILE))
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, clips: np.ndarray | Tensor) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(clips, dtype=np.float32))
        return self.session.run(None, {self.input_name: x})[0]


def export_onnx(
    deployed: Deployed, out_dir: str | os.PathLike, *, opset: int = 17, dtype: str = "auto"
) -> Path:
    """Write ``out_dir/model.onnx`` (input ``clips`` (batch, K, 3, S, S), output ``logits`` (batch, classes),
    dynamic batch axis) and ``out_dir/deploy.json``; returns the model path.

    Uses the TorchScript-based exporter (``dynamo=False``): the torch.export-based default of torch >= 2.9
    needs the ``onnxscript`` package. K and S are fixed: the temporal convs were trained on K-frame clips.
    ``dtype``: "auto" and "fp32" export float32, the fastest dtype onnxruntime runs on CPU; "bf16" is refused
    (:func:`~modistill.deploy.precision.onnx_dtype`). ``deployed`` must be float32 (``load_deployed(...,
    dtype="fp32")``): weights already rounded to bf16 would be exported rounded."""
    onnx_dtype(dtype)
    if deployed.dtype != "fp32":
        raise DeployDtypeError(
            f"the deployed model is {deployed.dtype}; export needs its float32 weights (load it with dtype='fp32')"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = deployed.module.cpu().eval()
    x = torch.zeros(2, deployed.frames, 3, deployed.size, deployed.size)
    path, tmp = out / MODEL_FILE, out / f".{MODEL_FILE}.{os.getpid()}.tmp"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings about shape checks
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                input_names=["clips"],
                output_names=["logits"],
                dynamic_axes={"clips": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=int(opset),
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    deployed.spec.save(out / DEPLOY_FILE)
    return path


def check_onnx(
    deployed: Deployed,
    onnx_path: str | os.PathLike,
    clips: dict[str, Tensor],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> list[dict[str, Any]]:
    """Compare onnxruntime with PyTorch on each named batch of ``clips`` ``(B, K, 3, S, S)``.

    A batch passes when ``max |onnx - torch| <= atol + rtol * max |torch logits|`` (tolerance relative to
    the logit scale); ``top1_agree`` is reported too (a near-tie may flip it). Returns one dict per batch:
    name, batch, max_abs_diff, tolerance, top1_agree, ok."""
    ort_model = OnnxPredictor(onnx_path)
    rows = []
    for name, x in clips.items():
        ref, got = deployed.logits(x), ort_model.logits(x.numpy())
        diff = float(np.abs(ref - got).max())
        tol = atol + rtol * float(np.abs(ref).max())
        agree = bool((ref.argmax(1) == got.argmax(1)).all())
        rows.append(
            {
                "name": name,
                "batch": int(x.shape[0]),
                "max_abs_diff": diff,
                "tolerance": tol,
                "top1_agree": agree,
                "ok": diff <= tol,
            }
        )
    return rows


def _source_video(cfg: C.CacheConfig, name: str) -> Path | None:
    """The source RGB video of cached sample ``name`` when it is still where the cache was prepared from: the
    NTU layout under the source root, or the ``rgb`` path of a manifest's row; None otherwise."""
    kind = source_kind(cfg)
    where = getattr(cfg, "source_path", "") or cfg.source  # caches before the kind/path split kept the path
    if not where:
        return None
    root = Path(where)
    if kind == "ntu":
        video = root / "nturgb+d_rgb" / f"{name}_rgb.avi"
        return video if video.is_file() else None
    if kind == "manifest" and root.is_file():
        try:
            entry = next((e for e in read_manifest(root) if e.sample == name), None)
        except ValueError:  # the manifest changed since: fall back to the cached frames
            return None
        return entry.rgb if entry is not None and entry.rgb.exists() else None
    return None


def reference_clip(deployed: Deployed) -> tuple[Tensor, str]:
    """One real clip ``(1, K, 3, S, S)`` for checking an export, and where it came from: the first sample of
    the run's cache read from its source video through the deployment preprocessing when the source (an NTU
    root or a manifest's video) is still there, else the sample's cached (already cropped) frames."""
    if deployed.cache is None:
        raise FileNotFoundError("the deployed model has no prepared cache to take a reference clip from")
    rec = C.read_index(deployed.cache)[0]
    cfg = C.load_config(deployed.cache)
    video = _source_video(cfg, rec["name"])
    if video is not None:
        clip, info = read_clip(video, deployed.spec)
        return clip[None], f"{video} (frames {info['indices']}, crop {info['crop_px']})"
    frames = C.load_array(deployed.cache, "rgb", rec["name"])
    idx = sample_indices(frames.shape[0], deployed.frames, "even")
    path = C.array_path(deployed.cache, "rgb", rec["name"])
    clip = preprocess_frames(np.asarray(frames[idx]), deployed.spec)
    return clip[None], f"{path} (cached frames {idx.tolist()})"
