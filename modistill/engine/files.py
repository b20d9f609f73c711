"""The JSON files the engine writes, one typed, versioned schema class each (`modistill.core.schema`).

    <run_dir>/run_config.json             RunConfigFile     stage, world size, TrainConfig, the caller's config
    <run_dir>/checkpoints/<name>.json     CheckpointMeta    a checkpoint's sidecar (see `checkpoint.py`)
    <run_dir>/metrics.jsonl               MetricsHeader     the first line; one record per line after it

Every class writes ``"format"`` and ``"version"`` next to the keys it always had, and reads files written
before the classes existed (no ``format``/``version``) as version 1. A newer version, another kind or a
missing field is a `SchemaError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from modistill.core.schema import VersionedFile

__all__ = ["CheckpointMeta", "MetricsHeader", "RunConfigFile"]


@dataclass
class RunConfigFile(VersionedFile):
    """``run_config.json``: what a stage was trained with (written by rank 0 at the start of `train_stage`)."""

    KIND: ClassVar[str] = "modistill-run-config"
    VERSION: ClassVar[int] = 1
    stage: str
    world_size: int
    train: dict[str, Any]  # TrainConfig.to_dict()
    config: Any = None  # the caller's config_dict (JSON data)


@dataclass
class CheckpointMeta(VersionedFile):
    """``<name>.json``, the sidecar of ``<name>.safetensors`` (+ ``<name>.optim.safetensors``).

    The typed fields are what `save_checkpoint` itself records; everything the caller passes as ``meta``
    lives in ``unknown_fields`` (the `VersionedFile` slot for keys outside the typed fields) and is stored at
    the top level of the file. The trainer's meta is ``kind, stage,
    epoch, global_step, scheduler, rng, best, history, world_size, train_config, config`` (docs/engine.md).
    """

    KIND: ClassVar[str] = "modistill-checkpoint"
    VERSION: ClassVar[int] = 1
    token: str  # also in both safetensors headers: files of different writes are never mixed silently
    weights: str  # file name of the weights, next to the sidecar
    created: str = ""
    torch_version: str = ""
    optimizer: dict[str, Any] | None = None  # {"file": <name>.optim.safetensors, "state_dict": tagged tree}
    unknown_fields: dict[str, Any] = field(default_factory=dict)  # the caller's meta

    @classmethod
    def reserved_keys(cls) -> frozenset[str]:
        """Keys a caller's meta may not use (they would shadow the sidecar's own)."""
        return frozenset({f.name for f in fields(cls)} | {"format", "version"})


@dataclass
class MetricsHeader(VersionedFile):
    """The first line of ``metrics.jsonl``: ``{"format": "modistill-metrics", "version": 1}``.

    The lines after it are the step and epoch records (`metrics_log`); they carry no schema keys of their own.
    A file without the header is version 1.
    """

    KIND: ClassVar[str] = "modistill-metrics"
    VERSION: ClassVar[int] = 1

    def line(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def is_header(record: dict[str, Any]) -> bool:
        return "format" in record and "kind" not in record
