"""Model registry: ``register_model(name)`` decorator, ``create_model(name, **kwargs)``, ``list_models()``.

Built-in entries (all accept ``num_classes`` and ``width``; backbones and streams also ``in_channels``):

- ``resnet18``, ``resnet34``, ``resnet50``: 2D backbones on (N, C, H, W); at width 1 drop-ins for
  torchvision's.
- ``stream_resnet18/34/50``: a :class:`VideoStream` on clips (B, T, C, H, W) with temporal convs (REF §1).
- ``twostream_resnet18/34/50``: a :class:`MultiStreamNet` with streams ``rgb`` and ``depth`` (reading batch
  keys ``"rgb"`` and ``"depth"``), depth -> rgb connections at all four stages and mean late fusion: the
  paper's step-2 teacher (Garcia et al. 2018 §3.2; the paper uses ResNet-50).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from . import resnet as _resnet
from .multistream import Connection, MultiStreamNet, StreamSpec
from .stream import VideoStream

__all__ = ["register_model", "create_model", "list_models", "model_description"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_Fn = TypeVar("_Fn", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[_Fn], _Fn]:
    """Decorator registering a factory ``fn(**kwargs) -> nn.Module`` as ``name``; duplicates: ValueError."""

    def deco(fn: _Fn) -> _Fn:
        if not isinstance(name, str) or not name:
            raise ValueError(f"model name must be a non-empty string, got {name!r}")
        if name in _MODELS:
            raise ValueError(
                f"model {name!r} is already registered "
                f"(by {getattr(_MODELS[name], '__qualname__', _MODELS[name])})"
            )
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with the factory's keyword arguments."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def model_description(name: str) -> str:
    """First line of the factory's docstring."""
    doc = (_MODELS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _register_builtins() -> None:
    for depth in (18, 34, 50):
        base = f"resnet{depth}"
        register_model(base)(getattr(_resnet, base))

        def stream(
            num_classes: int = 1000,
            in_channels: int = 3,
            width: float = 1.0,
            temporal: bool = True,
            channels_last: bool = True,
            _base: str = base,
        ) -> VideoStream:
            return VideoStream(_base, num_classes, in_channels, width, temporal, channels_last)

        stream.__doc__ = (
            f"VideoStream over a {base} backbone with identity-initialised temporal convs (clips)."
        )
        register_model(f"stream_{base}")(stream)

        def twostream(
            num_classes: int = 60,
            width: float = 1.0,
            in_channels: int = 3,
            connections: bool = True,
            variant: str = "paper",
            temporal: bool = True,
            _base: str = base,
        ) -> MultiStreamNet:
            specs = {
                m: StreamSpec(
                    backbone=_base, modality=m, width=width, in_channels=in_channels, temporal=temporal
                )
                for m in ("rgb", "depth")
            }
            conns = [Connection("depth", "rgb", (1, 2, 3, 4), variant)] if connections else []  # type: ignore[arg-type]
            return MultiStreamNet(specs, num_classes, conns, fusion="mean")

        twostream.__doc__ = f"rgb + depth {base} streams, depth->rgb connections at stages 1-4, mean fusion."
        register_model(f"twostream_{base}")(twostream)


_register_builtins()
