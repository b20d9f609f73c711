"""Load a local ImageNet ResNet checkpoint (torchvision or timm naming) into a backbone or a video stream.

REF §1/§3: every stream is ImageNet-initialised in the paper, the depth stream included (jet-coloured depth is
a 3-channel image). No download happens here: the caller gives a local file.

This is the one place weights are loaded: model constructors (``ResNet``, ``VideoStream``, ``MultiStreamNet``)
always build random (He) / identity-initialised models, and the caller (e.g. the pipeline runner, for each
stream whose init is ``pretrained``) calls ``load_pretrained(net.streams[name], path)`` afterwards.

- Formats: ``.safetensors`` (safetensors.torch.load_file) or anything else via
  ``torch.load(weights_only=True)``
  (``.pth``/``.pt``/``.bin``).
- Nesting: training checkpoints often wrap the weights, e.g. ``{"state_dict": {...}, "epoch": 3}`` or
  ``{"model": {...}}``; the weights dict is found under the usual keys (``state_dict``, ``model``, ``module``,
  ``net``, ``model_state``, ``model_state_dict``, ``ema``), recursively.
- Prefixes: a prefix carried by *every* key (``module.`` from DataParallel/DDP, ``model.``, ``backbone.``,
  ``encoder.``) is stripped, repeatedly. timm's ResNet names equal torchvision's for these models.
- Classifier: when ``fc`` has another class count than the model, the model's ``fc`` is re-initialised
  (``nn.Linear.reset_parameters``) instead of loaded.
- ``in_channels != 3``: ``conv1.weight`` (O, 3, 7, 7) is inflated to (O, in_channels, 7, 7) by averaging over
  the RGB input channels and repeating the mean (the usual cross-modality initialisation, e.g. Wang et al. TSN
  2016 for flow). A replicated grey input then gives in_channels/3 times the response of the RGB model to grey
  RGB.
- ``num_batches_tracked`` buffers missing from the file are tolerated (some exported checkpoints drop them;
  they are step counters, not weights) and keep the model's values.
- Anything else missing, unexpected or mis-shaped raises one ``CheckpointError`` (a ``ModistillError`` and a
  ``ValueError``) that names the file and lists the keys; a missing file raises ``CheckpointNotFoundError``
  (also a ``FileNotFoundError``).
- A :class:`VideoStream` receives the weights in its ``backbone``; its temporal convs are left as they are
  (identity-initialised).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import CheckpointError, CheckpointNotFoundError
from .resnet import ResNet
from .stream import VideoStream

__all__ = ["load_pretrained", "read_state_dict", "LoadReport"]

_NEST_KEYS = ("state_dict", "model", "module", "net", "model_state", "model_state_dict", "ema")
_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: counts and the keys handled specially."""

    path: str
    loaded: int
    reinitialised: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # tolerated missing buffers (num_batches_tracked)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint file; return the flat weights dict (nesting unwrapped, common prefixes stripped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"pretrained checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: object = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types; name the file in any case
            raise CheckpointError(
                f"{path}: cannot read as a torch checkpoint (weights_only=True): {exc}"
            ) from exc
    sd = _unwrap(obj, path)
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    for _ in range(8):  # bounded: checkpoints nest a few levels at most
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        nested = [k for k in _NEST_KEYS if isinstance(obj.get(k), Mapping)]
        if not nested:
            raise CheckpointError(
                f"{path}: no weights dict found (top-level keys: {sorted(map(str, obj))[:20]}; "
                f"looked for a dict of tensors or one of {_NEST_KEYS})"
            )
        obj = obj[nested[0]]
    raise CheckpointError(f"{path}: weights nested too deeply")


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Load ImageNet ResNet weights from ``path`` into a :class:`ResNet` or a :class:`VideoStream`.

    Raises:
        CheckpointNotFoundError (a FileNotFoundError): no such file.
        CheckpointError (a ValueError): unreadable file, or keys missing / unexpected / mis-shaped (all
            listed in the message).
        TypeError: ``model`` is neither a ResNet nor a VideoStream.
    """
    if isinstance(model, VideoStream):
        target: ResNet = model.backbone
    elif isinstance(model, ResNet):
        target = model
    else:
        raise TypeError(f"load_pretrained expects a ResNet or a VideoStream, got {type(model).__name__}")
    src = read_state_dict(path)
    own = target.state_dict()
    report = LoadReport(path=str(path), loaded=0)
    new: dict[str, Tensor] = {}
    missing, mis_shaped = [], []
    for key, cur in own.items():
        if key not in src:
            if key.endswith("num_batches_tracked"):
                report.kept.append(key)
                new[key] = cur
            else:
                missing.append(key)
            continue
        val = src[key]
        if tuple(val.shape) == tuple(cur.shape):
            new[key] = val
        elif (
            key == "conv1.weight"
            and val.dim() == 4
            and val.shape[1] == 3
            and val.shape[0] == cur.shape[0]
            and val.shape[2:] == cur.shape[2:]
        ):
            new[key] = val.float().mean(dim=1, keepdim=True).repeat(1, cur.shape[1], 1, 1)
            report.inflated.append(key)
        elif key in ("fc.weight", "fc.bias") and _only_class_count_differs(src, own):
            report.reinitialised.append(key)
        else:
            mis_shaped.append(f"{key}: file {tuple(val.shape)} vs model {tuple(cur.shape)}")
    unexpected = sorted(k for k in src if k not in own)
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"missing ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): {', '.join(unexpected)}")
        if mis_shaped:
            parts.append(f"mis-shaped ({len(mis_shaped)}): {'; '.join(mis_shaped)}")
        raise CheckpointError(f"{path}: checkpoint does not fit the model — " + " | ".join(parts))
    if report.reinitialised:
        target.fc.reset_parameters()
        fc_state = target.state_dict()
        for key in report.reinitialised:
            new[key] = fc_state[key]
    target.load_state_dict(new, strict=True)
    report.loaded = len(new) - len(report.kept) - len(report.reinitialised)
    return report


def _only_class_count_differs(src: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> bool:
    """True when the file's classifier differs from the model's in the number of classes only."""
    w, b = src.get("fc.weight"), src.get("fc.bias")
    if w is None or b is None or w.dim() != 2 or b.dim() != 1:
        return False
    return w.shape[1] == own["fc.weight"].shape[1] and w.shape[0] == b.shape[0] != own["fc.weight"].shape[0]
