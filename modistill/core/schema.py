"""`VersionedFile`: the base of every JSON file modistill writes and reads back.

Each file kind is one frozen dataclass subclass with a ``KIND`` (stored as ``"format"``) and a ``VERSION``
(stored as ``"version"``); `write` is atomic and `read` checks both, so a file of another kind, of a newer
version, or with missing fields is a `SchemaError` naming the file rather than a ``KeyError`` far away.
A subclass that declares an ``unknown_fields: dict`` field keeps keys it does not know (written by a newer
minor change) there instead of refusing them; without it, unknown keys are ignored on reading.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .atomic import write_json_atomic
from .errors import SchemaError

__all__ = ["VersionedFile"]

F = TypeVar("F", bound="VersionedFile")


@dataclasses.dataclass
class VersionedFile:
    """Subclass as a dataclass and set ``KIND`` and ``VERSION``; fields must be JSON-serialisable."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        extra = d.pop("unknown_fields", None) or {}
        return {**extra, **d, "format": self.KIND, "version": self.VERSION}

    @classmethod
    def from_dict(cls: type[F], data: dict[str, Any], origin: str = "<dict>") -> F:
        if not isinstance(data, dict):
            raise SchemaError(f"{origin}: expected a JSON object for {cls.KIND}, got {type(data).__name__}")
        cls.check_header(data, origin)
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise SchemaError(f"{origin}: {cls.KIND} lacks field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        if "unknown_fields" in names:
            kwargs["unknown_fields"] = {k: v for k, v in data.items()
                                        if k not in names and k not in ("format", "version")}
        return cls(**kwargs)

    @classmethod
    def check_header(cls, data: dict[str, Any], origin: str) -> int:
        """Check ``format`` and ``version`` of ``data``; returns the version (1 for files without a header)."""
        kind, version = data.get("format"), data.get("version")
        if kind is None and version is None:
            version = 1  # written before files carried their schema: the first version's layout
        if kind is not None and kind != cls.KIND:
            raise SchemaError(f"{origin}: is a {kind!r} file, expected {cls.KIND!r}")
        if not isinstance(version, int) or version > cls.VERSION or version < 1:
            raise SchemaError(f"{origin}: {cls.KIND} version {version!r} is not supported "
                              f"(this modistill reads versions 1..{cls.VERSION})")
        return version

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically as indented JSON."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def read(cls: type[F], path: str | os.PathLike) -> F:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemaError(f"{p}: not found (expected a {cls.KIND} file)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise SchemaError(f"{p}: unreadable {cls.KIND} file ({e})") from None
        return cls.from_dict(data, origin=str(p))
