"""The errors ``modistill.models`` raises for bad settings, names, inputs or weight files.

Each derives from :class:`~modistill.core.errors.ModistillError` (so the CLI prints ``error: <message>``
without a traceback) *and* from the builtin type the models package raised before (``ValueError``,
``KeyError``, ``FileNotFoundError``), so ``except ValueError`` / ``except KeyError`` keep working.
Wrong *types* of Python objects (e.g. a non-ResNet backbone) stay plain ``TypeError``: those are bugs.

This module imports nothing but :mod:`modistill.core.errors`, so the registries can use it and stay leaves.
"""

from __future__ import annotations

from modistill.core.errors import ModistillError

__all__ = [
    "ModelConfigError",
    "UnknownNameError",
    "ModelInputError",
    "CheckpointError",
    "CheckpointNotFoundError",
]


class ModelConfigError(ModistillError, ValueError):
    """Settings that cannot build a model: width, class count, streams, connections, fusion, registration."""


class UnknownNameError(ModistillError, KeyError):
    """A name that is not there: an unregistered model or fusion, an unknown stream, a missing batch key."""

    def __str__(self) -> str:
        # KeyError's str() quotes its message; print the message as written.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ModelInputError(ModistillError, ValueError):
    """Tensors a model cannot take: wrong rank, channel count, frame count or sizes of connected streams."""


class CheckpointError(ModistillError, ValueError):
    """A weights file that cannot be read, or whose weights do not fit the model (keys, shapes)."""


class CheckpointNotFoundError(ModistillError, FileNotFoundError):
    """A weights file that does not exist."""
