"""The typed JSON files of a prepared cache: ``cache_config.json`` (`CacheConfig`) and
``fallback_alignment.json`` (`FallbackFile`), both `modistill.core.schema.VersionedFile` s.

`modistill.data.cache` (the layout and readers) re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from modistill.core.errors import SchemaError
from modistill.core.schema import VersionedFile

__all__ = ["DEPTH_ENCODINGS", "KNOWN_MODALITIES", "MODALITIES", "SOURCE_KINDS", "CacheConfig", "FallbackFile"]

MODALITIES: tuple[str, ...] = ("rgb", "depth")
# Modalities a cache may hold: "flow" is written by the optical-flow extraction (modistill.data.flow).
KNOWN_MODALITIES: tuple[str, ...] = ("rgb", "depth", "flow")
DEPTH_ENCODINGS: tuple[str, ...] = ("jet", "raw")
# What a cache was prepared from (`CacheConfig.source`): an NTU-layout root (also `modistill synth`), a
# manifest, or a UCF101 / HMDB51 class-folder tree with its official split files.
SOURCE_KINDS: tuple[str, ...] = ("ntu", "manifest", "ucf101", "hmdb51")


@dataclass
class CacheConfig(VersionedFile):
    """What a cache folder holds; written once as ``cache_config.json`` (`VersionedFile` ``cache_config``).

    ``size`` is the side S of the square crops, ``frames`` the frame budget F (evenly spaced source frames
    kept per sample), ``modalities`` the arrays built ("rgb", "depth" when the source has depth and it was
    asked for, "flow" once the flow pass ran). Depth (all None without depth): ``depth_encoding`` "jet" (jet
    colour map, paper supplement §2) or "raw" (depth scaled linearly to 0..255, 3 equal channels),
    ``depth_near_mm``/``depth_far_mm`` the range the encoding maps, ``depth_scale`` the source's depth units
    per metre (1000 = mm) and ``depth_decode`` "plain" or "sunrgbd" (a 3-bit rotation undone before scaling;
    `modistill.data.depth_units`). ``source`` is the kind of source (one of `SOURCE_KINDS` when `modistill
    prepare` wrote it; hand-made caches may hold other text), ``source_path`` its absolute path (NTU root,
    manifest file, UCF101/HMDB51 root), ``source_split``/``source_split_dir`` the official split N and
    split-file folder of UCF101/HMDB51. ``num_classes``/``class_names`` (index = label;
    None when the source names none, e.g. NTU). ``extra`` holds the settings of the passes that wrote the
    arrays: ``alignment`` and ``keep_aspect`` (`modistill prepare`), ``flow`` (`modistill.data.prepare_flow`:
    method, stack, bound, compute_size, params; `flow_bound` reads the bound).

    Version 2 added the depth units, the source kind and path fields; version-1 files (``source`` = the
    path) load as version 2: kind from the path (a .csv/.jsonl file is a manifest, else an NTU root), depth
    in millimetres.
    """

    KIND: ClassVar[str] = "cache_config"
    VERSION: ClassVar[int] = 2
    # Fields that change the stored arrays: a resumed or sharded run must agree on all of them.
    CONTENT_FIELDS: ClassVar[tuple[str, ...]] = (
        "size",
        "frames",
        "depth_encoding",
        "depth_near_mm",
        "depth_far_mm",
        "depth_scale",
        "depth_decode",
        "modalities",
    )

    size: int
    frames: int
    depth_encoding: str | None = "jet"
    depth_near_mm: float | None = None
    depth_far_mm: float | None = None
    depth_scale: float | None = None
    depth_decode: str | None = None
    modalities: tuple[str, ...] = MODALITIES
    source: str = ""
    source_path: str = ""
    source_split: int | None = None
    source_split_dir: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        if self.size < 8:
            raise ValueError(f"cache size must be >= 8 pixels, got {self.size}")
        if self.frames < 1:
            raise ValueError(f"cache frame budget must be >= 1, got {self.frames}")
        has_depth = "depth" in self.modalities
        if (has_depth or self.depth_encoding is not None) and self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}")
        if self.depth_scale is not None and not self.depth_scale > 0:
            raise ValueError(f"depth scale (units per metre) must be > 0, got {self.depth_scale!r}")
        if self.depth_decode not in (None, "plain", "sunrgbd"):
            raise ValueError(f"depth decode must be 'plain' or 'sunrgbd', got {self.depth_decode!r}")
        if not isinstance(self.source, str):
            raise ValueError(f"cache source must be a string (one of {SOURCE_KINDS}), got {self.source!r}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"cache config 'extra' must be a mapping, got {self.extra!r}")
        unknown = set(self.modalities) - set(KNOWN_MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {KNOWN_MODALITIES}, got {self.modalities}"
            )
        if self.class_names is not None and self.num_classes is not None:
            if len(self.class_names) != self.num_classes:
                raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def flow_bound(self) -> float | None:
        """The flow quantisation bound in pixels (``extra.flow.bound``), None when the cache has no flow."""
        flow = self.extra.get("flow") if "flow" in self.modalities else None
        return float(flow["bound"]) if isinstance(flow, dict) and "bound" in flow else None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "modalities": list(self.modalities)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "<dict>") -> CacheConfig:
        if isinstance(data, dict) and cls.check_header(data, origin) == 1:
            data = _upgrade_v1(data)
        return super().from_dict(data, origin)

    def mismatches(self, other: CacheConfig) -> list[str]:
        """Human-readable differences in the content-defining fields."""
        out = []
        for name in self.CONTENT_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if name == "modalities":
                # Flow is added to a finished cache by its own pass (prepare_flow.py, which checks its own
                # settings): re-running `prepare` on such a cache must not see it as a conflict.
                a, b = (tuple(m for m in v if not m.startswith("flow")) for v in (a, b))
            if a != b:
                out.append(f"{name}: {a!r} (cache) vs {b!r} (requested)")
        crop_keys = ("alignment", "keep_aspect")  # crop settings of `prepare`, kept in `extra`
        if "depth" not in self.modalities and "depth" not in other.modalities:
            crop_keys = ()  # without depth the whole frame is resized whatever they say
        for key in crop_keys:
            a, b = self.extra.get(key), other.extra.get(key)
            if a != b:
                out.append(f"{key}: {a!r} (cache) vs {b!r} (requested)")
        return out


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``cache_config.json`` as version 2 (see `CacheConfig`)."""
    new = dict(data)
    path = str(data.get("source") or "")
    kind = (
        ""
        if not path
        else "manifest"
        if Path(path).suffix.lower() in (".csv", ".jsonl", ".ndjson")
        else "ntu"
    )
    new.update(source=kind, source_path=path, version=CacheConfig.VERSION)
    if "depth" in (data.get("modalities") or MODALITIES):
        new.update(depth_scale=1000.0, depth_decode="plain")  # version 1 read every depth as millimetres
    return new


@dataclass
class FallbackFile(VersionedFile):
    """``fallback_alignment.json``: the fallback alignment table of `modistill prepare` (derived data).

    ``groups``: group key ``"<setup>|<view>"`` -> ``[[scale, tx, ty], ...]``, the skeleton fits of the group;
    ``stamp``: ``{"candidates": samples with a skeleton file, "per_group": --fallback-samples}`` of the source
    it was fitted on (a table whose stamp differs from the run's is rebuilt).
    """

    KIND: ClassVar[str] = "fallback_alignment"
    VERSION: ClassVar[int] = 1

    groups: dict[str, list[list[float]]]
    stamp: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.groups, dict) or not isinstance(self.stamp, dict):
            raise SchemaError(f"{self.KIND}: 'groups' and 'stamp' must be JSON objects")
