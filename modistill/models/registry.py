"""Model registry: ``register_model(name)`` decorator, ``create_model(name, **kwargs)``, ``list_models()``.

A leaf: this module knows no architecture. Architectures register themselves where they are defined
(``resnet.py``: ``resnet18/34/50``; ``stream.py``: ``stream_resnet18/34/50``; ``multistream.py``:
``twostream_resnet18/34/50``), and ``modistill/models/__init__.py`` imports those modules, so that
``from modistill.models import create_model`` finds every built-in model. Every entry accepts ``num_classes``
and ``width``.

Errors: an unknown name raises :class:`~modistill.models.errors.UnknownNameError` (a ``KeyError``); a
duplicate or empty name raises :class:`~modistill.models.errors.ModelConfigError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from .errors import ModelConfigError, UnknownNameError

__all__ = ["register_model", "create_model", "list_models", "model_description"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_Fn = TypeVar("_Fn", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[_Fn], _Fn]:
    """Decorator registering a factory ``fn(**kwargs) -> nn.Module`` as ``name``; duplicates are an error."""

    def deco(fn: _Fn) -> _Fn:
        if not isinstance(name, str) or not name:
            raise ModelConfigError(f"model name must be a non-empty string, got {name!r}")
        if name in _MODELS:
            raise ModelConfigError(
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
        raise UnknownNameError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def model_description(name: str) -> str:
    """First line of the factory's docstring."""
    if name not in _MODELS:
        raise UnknownNameError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    doc = (_MODELS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
