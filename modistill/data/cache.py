"""The prepared cache: on-disk layout, its typed files and readers.

Layout of a cache folder (written by `modistill prepare`, read by `CachedClipDataset`)::

    cache_config.json                 `CacheConfig`: size, frames, modalities, depth units/encoding, source,
                                      classes
    samples.txt                       every sample name of the source (splits are drawn over this list)
    <modality>/<sample>.npy           uint8 (F, S, S, C) per modality ("rgb", "depth", "flow"); mmap-able
    index.jsonl                       one `records.IndexRecord` per finished sample (unsharded run)
    index.shard-<i>-of-<n>.jsonl      the same for `--shard i/n`; readers merge every index file
    failures.jsonl                    one `records.FailureRecord` per sample that failed in the last run
    failures.shard-<i>-of-<n>.jsonl   the same per shard
    warnings[.shard-<i>-of-<n>].jsonl one `records.WarningRecord` per warning of the samples in that index
    fallback_alignment.json           `FallbackFile`: per-group alignments lent to samples without skeletons

Every path built from a sample name goes through `array_path`, which refuses unsafe names and paths outside
the cache folder (`modistill.data.paths`).

The two JSON files are `modistill.core.schema.VersionedFile` s (``"format"`` + ``"version"`` keys; files
written before they carried them read as version 1). The JSON-lines record fields are defined once, in
`modistill.data.records`.

Crash safety: arrays and JSON files are written with `modistill.core.atomic` (temporary file + ``os.replace``),
and a sample's index record is appended only after all its arrays are in place, so an index record always
implies complete arrays. A run killed while appending can leave a torn last line; readers ignore a torn *last*
line and writers cut it off before appending again. Each index/failures file has one writer (the main process
of one shard), so shards on several machines sharing a folder never write the same file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from modistill.core.atomic import (
    write_text_atomic,
)
from modistill.core.errors import ModistillError, SchemaError

from .cache_files import (  # noqa: F401 - re-exported: the cache's files are read as C.CacheConfig etc.
    DEPTH_ENCODINGS,
    KNOWN_MODALITIES,
    MODALITIES,
    SOURCE_KINDS,
    CacheConfig,
    FallbackFile,
)
from .paths import check_sample_id, contained_path
from .records import FailureRecord, IndexRecord, WarningRecord

CONFIG_NAME = "cache_config.json"
FALLBACK_NAME = "fallback_alignment.json"
SAMPLES_NAME = "samples.txt"
_SHARD_FILE = re.compile(r"^(index|failures|warnings)\.shard-(\d+)-of-(\d+)\.jsonl$")


class CacheError(ModistillError, RuntimeError):
    """A cache folder is missing, incomplete, corrupt or incompatible; the message names the file."""


# --------------------------------------------------------------------------------------------------- paths


def array_path(root: str | os.PathLike, modality: str, name: str) -> Path:
    """``<root>/<modality>/<name>.npy``; an unsafe sample name or modality, or a path that would leave
    ``root``, is an `UnsafePathError` (`modistill.data.paths`)."""
    check_sample_id(name, f"{root}")
    check_sample_id(modality, f"{root}")
    return contained_path(root, modality, f"{name}.npy")


def shard_suffix(shard: tuple[int, int] | None) -> str:
    """``""`` for an unsharded run, ``".shard-i-of-n"`` otherwise."""
    if shard is None:
        return ""
    i, n = shard
    return f".shard-{i}-of-{n}"


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based i, 0 <= i < n) as used by ``--shard``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return i, n


def select_shard(names: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """The deterministic subset of a shard: ``sorted(names)[i::n]``; disjoint across i and covering all."""
    ordered = sorted(names)
    if shard is None:
        return ordered
    i, n = shard
    return ordered[i::n]


def index_path(root: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    return Path(root) / f"index{shard_suffix(shard)}.jsonl"


def failures_path(root: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    return Path(root) / f"failures{shard_suffix(shard)}.jsonl"


def _part_files(root: Path, kind: str) -> list[Path]:
    """The unsharded file (if any) followed by all shard parts, in a stable order."""
    out = []
    plain = root / f"{kind}.jsonl"
    if plain.is_file():
        out.append(plain)
    parts = []
    for p in root.glob(f"{kind}.shard-*-of-*.jsonl"):
        m = _SHARD_FILE.match(p.name)
        if m and m.group(1) == kind:
            parts.append((int(m.group(3)), int(m.group(2)), p))
    out.extend(p for _, _, p in sorted(parts))
    return out


def warnings_path(root: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    return Path(root) / f"warnings{shard_suffix(shard)}.jsonl"


def index_files(root: str | os.PathLike) -> list[Path]:
    """All index parts of a cache: ``index.jsonl`` and every ``index.shard-i-of-n.jsonl``."""
    return _part_files(Path(root), "index")


# ------------------------------------------------------------------------------------------ JSON lines


class JsonlAppender:
    """Single-writer append-only JSON-lines file; cuts off a torn last line left by a killed run.

    ``truncate=True`` starts the file empty (used for the failures file of a new run).
    """

    def __init__(self, path: str | os.PathLike, truncate: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate or not self.path.exists():
            self.path.write_text("", encoding="utf-8")
        else:
            _repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: IndexRecord | FailureRecord | dict[str, Any]) -> None:
        # One write of one whole line, flushed and synced: a crash loses at most this line.
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _repair_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSON-lines file. A torn (unterminated, unparsable) last line is ignored; any other bad
    line raises `CacheError` naming the file and line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if no == len(lines):  # unterminated last line: a write interrupted by a kill
                break
            raise CacheError(f"{path}: line {no} is not valid JSON ({exc.msg})") from exc
        if not isinstance(rec, dict):
            raise CacheError(f"{path}: line {no} is not a JSON object")
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------ readers


def load_config(root: str | os.PathLike) -> CacheConfig:
    """Read ``<root>/cache_config.json``; `CacheError` naming the file when absent or invalid."""
    path = Path(root) / CONFIG_NAME
    if not path.is_file():
        raise CacheError(f"{path}: not found; is {root} a cache folder written by `modistill prepare`?")
    try:
        return CacheConfig.read(path)
    except SchemaError as exc:  # unreadable JSON, another kind of file, an unknown version, missing fields
        raise CacheError(f"invalid cache config: {exc}") from exc
    except (TypeError, ValueError) as exc:  # a field of the wrong type or value (CacheConfig checks)
        raise CacheError(f"{path}: invalid cache config ({exc})") from exc


def read_index(root: str | os.PathLike) -> list[IndexRecord]:
    """All index records of a cache, merged over shard parts, one per sample name, sorted by name.

    A sample listed twice (e.g. re-prepared after its files were deleted) keeps the record read last.
    """
    root = Path(root)
    files = index_files(root)
    if not files:
        raise CacheError(
            f"{root / 'index.jsonl'}: no index file (index.jsonl or index.shard-*.jsonl) in {root}"
        )
    merged: dict[str, dict[str, Any]] = {}
    for path in files:
        for rec in read_jsonl(path):
            if "name" not in rec:
                raise CacheError(f"{path}: index record without a 'name': {rec}")
            merged[rec["name"]] = rec
    return [cast(IndexRecord, merged[k]) for k in sorted(merged)]


def read_failures(root: str | os.PathLike) -> list[FailureRecord]:
    """Failure records (sample, stage, error) of the last run of every shard."""
    out: list[FailureRecord] = []
    for path in _part_files(Path(root), "failures"):
        out.extend(cast(list[FailureRecord], read_jsonl(path)))
    return out


def read_warnings(root: str | os.PathLike) -> list[WarningRecord]:
    """Warning records (sample, warning) of every shard's index, as of each shard's last run."""
    out: list[WarningRecord] = []
    for path in _part_files(Path(root), "warnings"):
        out.extend(cast(list[WarningRecord], read_jsonl(path)))
    return out


def write_warnings(root: str | os.PathLike, shard: tuple[int, int] | None = None) -> list[WarningRecord]:
    """Rewrite ``warnings[.shard-i-of-n].jsonl`` from the warnings of the records in the shard's index file
    (so samples finished by earlier runs keep theirs listed); returns the records written."""
    index = index_path(root, shard)
    recs = read_jsonl(index) if index.is_file() else []
    latest = {r["name"]: r for r in recs if "name" in r}  # a re-prepared sample: its last record
    rows = [
        WarningRecord(sample=name, warning=str(w))
        for name, r in sorted(latest.items())
        for w in r.get("warnings") or []
    ]
    write_text_atomic(warnings_path(root, shard), "".join(json.dumps(w, sort_keys=True) + "\n" for w in rows))
    return rows


def has_finished_samples(root: str | os.PathLike) -> bool:
    """Whether any index file of ``root`` holds a record (a sample some run finished)."""
    return any(read_jsonl(p) for p in index_files(root))


# Everything `modistill prepare` writes into a cache folder (for `clear_cache`): files, and folders of arrays.
_CACHE_FILES = (CONFIG_NAME, SAMPLES_NAME, FALLBACK_NAME)
_CACHE_GLOBS = ("index*.jsonl", "failures*.jsonl", "warnings*.jsonl", "flow_failures*.jsonl")


def clear_cache(root: str | os.PathLike) -> int:
    """Delete what `modistill prepare` wrote into the cache folder ``root`` (its config, sample list, index,
    failures, warnings, fallback table and the ``.npy`` arrays and temporary files of every modality folder),
    for ``prepare --restart``. Other files are left alone; modality folders are removed only when empty.
    Returns the number of files deleted."""
    root = Path(root)
    n = 0
    files = [root / f for f in _CACHE_FILES] + [p for g in _CACHE_GLOBS for p in root.glob(g)]
    for m in KNOWN_MODALITIES:
        folder = root / m
        if folder.is_dir() and not folder.is_symlink():
            files += [p for p in folder.iterdir() if p.suffix in (".npy", ".tmp") and p.is_file()]
    for p in files:
        if p.is_file():
            p.unlink()
            n += 1
    for m in KNOWN_MODALITIES:
        folder = root / m
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    return n


def write_sample_list(root: str | os.PathLike, names: Iterable[str]) -> None:
    """Write ``<root>/samples.txt``: every sample name of the source (one per line, sorted).

    Splits are computed over this full list (not only over what was cached), so a failed sample cannot shift
    a drawn validation split (REF §4 cross-view rule).
    """
    write_text_atomic(Path(root) / SAMPLES_NAME, "".join(f"{n}\n" for n in sorted(names)))


def read_sample_list(root: str | os.PathLike) -> list[str]:
    """The names in ``<root>/samples.txt``."""
    path = Path(root) / SAMPLES_NAME
    try:
        return [s for s in path.read_text(encoding="utf-8").split() if s]
    except OSError as exc:
        raise CacheError(f"{path}: cannot read the sample list ({exc})") from exc


def is_complete(root: str | os.PathLike, name: str, modalities: Iterable[str]) -> bool:
    """Whether every modality array of ``name`` exists."""
    return all(array_path(root, m, name).is_file() for m in modalities)


def load_array(
    root: str | os.PathLike, modality: str, name: str, mmap: bool = True, expect: Sequence[int] | None = None
) -> np.ndarray:
    """Load ``<root>/<modality>/<name>.npy`` -> uint8 ``(F, S, S, C)`` (C = 3; 2L for flow), memory-mapped.

    Raises `CacheError` naming the file when it is missing, unreadable or has the wrong dtype/shape.
    """
    path = array_path(root, modality, name)
    if not path.is_file():
        again = "modistill prepare --flow" if modality.startswith("flow") else "modistill prepare"
        raise CacheError(f"{path}: cached {modality} array of sample {name} is missing (re-run `{again}`)")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable cached array ({exc})") from exc
    if arr.dtype != np.uint8 or arr.ndim != 4 or (arr.shape[-1] != 3 and not modality.startswith("flow")):
        raise CacheError(f"{path}: expected uint8 (F, S, S, 3), found {arr.dtype} {tuple(arr.shape)}")
    if expect is not None and tuple(arr.shape) != tuple(expect):
        raise CacheError(f"{path}: expected shape {tuple(expect)}, found {tuple(arr.shape)}")
    return arr
