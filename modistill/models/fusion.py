"""Late fusion of stream predictions, and a registry so learned fusion modules can plug in.

The paper's fusion (Garcia et al. 2018 §3.1; REF §1 "Prediction") is the mean of the streams' video logits:
``"mean"``, the default of :class:`~modistill.models.multistream.MultiStreamNet`.

Fusion module interface (what a registered class must implement):

- constructor: ``cls(*, streams: tuple[str, ...], num_classes: int, feature_dims: dict[str, int], **options)``
  where ``streams`` are the names listed in the network's ``fuse`` (in that order), ``num_classes`` is K and
  ``feature_dims[name]`` is the channel count C of that stream's ``features["pooled"]``. Unknown options
  should raise ``TypeError`` (Python does so by itself if the signature has no ``**kwargs``).
- ``forward(outputs: dict[str, StreamOutput]) -> Tensor (B, K)``: ``outputs`` maps the *run* streams among
  ``streams`` (a non-empty subset, same order; a stream may not have been run, e.g. an RGB-only evaluation) to
  their :class:`~modistill.models.stream.StreamOutput`. A learned module may use ``video_logits`` (B, K),
  ``frame_logits`` (B, T, K) or features such as ``features["pooled"]`` (B*T, C) and ``features["layer4"]``
  (B*T, C, h, w); B and T can be read from ``frame_logits.shape[:2]``.
- it is an ``nn.Module``, so its parameters are part of the network's state_dict (key prefix ``fusion.``) and
  are trained with the rest.

Register with ``@register_fusion("name")``; build with ``create_fusion("name", streams=..., num_classes=...,
feature_dims=..., **options)``. Registering an existing name is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .stream import StreamOutput

__all__ = ["register_fusion", "create_fusion", "list_fusions", "MeanFusion"]

_FUSIONS: dict[str, type[nn.Module]] = {}
_F = TypeVar("_F", bound=type[nn.Module])


def register_fusion(name: str) -> Callable[[_F], _F]:
    """Class decorator registering a fusion module under ``name`` (duplicates raise ValueError)."""

    def deco(cls: _F) -> _F:
        if name in _FUSIONS:
            raise ValueError(f"fusion {name!r} is already registered (by {_FUSIONS[name].__qualname__})")
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"fusion {name!r} must be an nn.Module subclass, got {cls!r}")
        _FUSIONS[name] = cls
        return cls

    return deco


def list_fusions() -> list[str]:
    """Names of the registered fusion modules (sorted)."""
    _load_plugins()
    return sorted(_FUSIONS)


def create_fusion(
    name: str, *, streams: tuple[str, ...], num_classes: int, feature_dims: dict[str, int], **options: Any
) -> nn.Module:
    """Build the fusion module registered as ``name`` (see the module docstring for the interface)."""
    _load_plugins()
    if name not in _FUSIONS:
        raise KeyError(f"unknown fusion {name!r}; registered: {', '.join(sorted(_FUSIONS))}")
    return _FUSIONS[name](
        streams=tuple(streams), num_classes=num_classes, feature_dims=dict(feature_dims), **options
    )


def _load_plugins() -> None:
    # Learned fusions live in their own modules (e.g. attention_fusion.py, owned separately); importing them
    # registers them. A missing optional module is fine; an error inside one is not hidden.
    import importlib

    try:
        importlib.import_module("modistill.models.attention_fusion")
    except ModuleNotFoundError as exc:
        if exc.name != "modistill.models.attention_fusion":
            raise


@register_fusion("mean")
class MeanFusion(nn.Module):
    """Mean of the run streams' video logits (Garcia et al. 2018 late fusion): (B, K). No parameters."""

    def __init__(
        self,
        *,
        streams: tuple[str, ...] = (),
        num_classes: int = 0,
        feature_dims: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.streams = tuple(streams)

    def forward(self, outputs: dict[str, StreamOutput]) -> Tensor:
        if not outputs:
            raise ValueError("MeanFusion got no stream outputs to fuse")
        return torch.stack([o.video_logits for o in outputs.values()]).mean(dim=0)
