"""Fusion registry: ``register_fusion(name)`` class decorator, ``create_fusion(name, ...)``, ``list_fusions()``.

A leaf: it knows no fusion module. Modules register themselves where they are defined (``fusion.py``:
``"mean"``; ``attention_fusion.py``: ``"attention"``), and ``modistill/models/__init__.py`` imports those
modules, so every built-in fusion is registered once ``modistill.models`` is imported. The interface a
registered class implements is described in ``fusion.py``.

Errors: an unknown name raises :class:`~modistill.models.errors.UnknownNameError` (a ``KeyError``); a
duplicate name raises :class:`~modistill.models.errors.ModelConfigError` (a ``ValueError``); a class that is
not an ``nn.Module`` raises ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from .errors import ModelConfigError, UnknownNameError

__all__ = ["register_fusion", "create_fusion", "list_fusions"]

_FUSIONS: dict[str, type[nn.Module]] = {}
_F = TypeVar("_F", bound=type[nn.Module])


def register_fusion(name: str) -> Callable[[_F], _F]:
    """Class decorator registering a fusion module under ``name`` (duplicates are an error)."""

    def deco(cls: _F) -> _F:
        if name in _FUSIONS:
            raise ModelConfigError(
                f"fusion {name!r} is already registered (by {_FUSIONS[name].__qualname__})"
            )
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"fusion {name!r} must be an nn.Module subclass, got {cls!r}")
        _FUSIONS[name] = cls
        return cls

    return deco


def list_fusions() -> list[str]:
    """Names of the registered fusion modules (sorted)."""
    return sorted(_FUSIONS)


def create_fusion(
    name: str, *, streams: tuple[str, ...], num_classes: int, feature_dims: dict[str, int], **options: Any
) -> nn.Module:
    """Build the fusion module registered as ``name`` (see ``fusion.py`` for the interface)."""
    if name not in _FUSIONS:
        raise UnknownNameError(f"unknown fusion {name!r}; registered: {', '.join(sorted(_FUSIONS))}")
    return _FUSIONS[name](
        streams=tuple(streams), num_classes=num_classes, feature_dims=dict(feature_dims), **options
    )
