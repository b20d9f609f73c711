"""The prepared cache: on-disk layout, atomic writers and readers.

Layout of a cache folder (written by `modistill prepare`, read by `CachedClipDataset`)::

    cache_config.json                 CacheConfig: size S, frame budget F, depth encoding, source, version
    samples.txt                       every sample name of the source (splits are drawn over this list)
    <modality>/<sample>.npy           uint8 (F, S, S, 3) per modality ("rgb", "depth"); np.load(mmap_mode="r")
    index.jsonl                       one JSON record per finished sample (unsharded run)
    index.shard-<i>-of-<n>.jsonl      the same for `--shard i/n`; readers merge every index file
    failures.jsonl                    one record per sample that failed in the last run: sample, stage, error
    failures.shard-<i>-of-<n>.jsonl   the same per shard
    fallback_alignment.json           per-(setup, camera) alignments lent to samples without skeletons

Crash safety: arrays are written to a temporary file and moved into place with `os.replace` (atomic on
POSIX), and a sample's index record is appended only after all its arrays are in place, so an index record
always implies complete arrays. A run killed while appending can leave a torn last line; readers ignore a
torn *last* line and writers cut it off before appending again. Each index/failures file has one writer (the
main process of one shard), so shards on several machines sharing a folder never write the same file.

Index record keys (JSON): ``name`` (str), ``label`` (int, 0-based), ``action``, ``subject``, ``camera``,
``setup``, ``replication`` (ints for NTU; free ids or null for manifests), ``frames`` (F), ``source_frames``
(list of F source-frame indices, 0-based), ``source_frame_counts`` ({"rgb", "depth", "skeleton"} -> int or
null), ``alignment`` ({"scale", "tx", "ty", "n_pairs", "method", "residual_px", "note"}; method "skeleton",
"fallback" or "registered"), ``warnings`` (list of str), ``shape`` ({modality: [F, S, S, 3]}).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1
CONFIG_NAME = "cache_config.json"
FALLBACK_NAME = "fallback_alignment.json"
SAMPLES_NAME = "samples.txt"
MODALITIES: tuple[str, ...] = ("rgb", "depth")
# Modalities a cache may hold: "flow" is written by the optical-flow extraction (modistill.data.flow).
KNOWN_MODALITIES: tuple[str, ...] = ("rgb", "depth", "flow")
DEPTH_ENCODINGS: tuple[str, ...] = ("jet", "raw")

_SHARD_FILE = re.compile(r"^(index|failures)\.shard-(\d+)-of-(\d+)\.jsonl$")


class CacheError(RuntimeError):
    """A cache folder is missing, incomplete, corrupt or incompatible; the message names the file."""


@dataclass
class CacheConfig:
    """What a cache folder holds; written once as ``cache_config.json``.

    ``size`` is the side S of the square crops, ``frames`` the frame budget F (evenly spaced source frames
    kept per sample), ``depth_encoding`` "jet" (jet colour map, paper supplement §2) or "raw" (depth scaled
    linearly to 0..255, 3 equal channels); ``depth_near_mm``/``depth_far_mm`` the range the encoding maps.
    """

    size: int
    frames: int
    depth_encoding: str = "jet"
    depth_near_mm: float | None = None
    depth_far_mm: float | None = None
    modalities: tuple[str, ...] = MODALITIES
    source: str = ""
    num_classes: int | None = None
    class_names: list[str] | None = None
    version: int = CACHE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        if self.size < 8:
            raise ValueError(f"cache size must be >= 8 pixels, got {self.size}")
        if self.frames < 1:
            raise ValueError(f"cache frame budget must be >= 1, got {self.frames}")
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}")
        unknown = set(self.modalities) - set(KNOWN_MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {KNOWN_MODALITIES}, got {self.modalities}"
            )

    # Fields that change the stored arrays: a resumed or sharded run must agree on all of them.
    CONTENT_FIELDS = (
        "size",
        "frames",
        "depth_encoding",
        "depth_near_mm",
        "depth_far_mm",
        "modalities",
        "version",
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CacheConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

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
        for key in ("alignment", "keep_aspect"):  # crop settings of `prepare`, kept in `extra`
            a, b = self.extra.get(key), other.extra.get(key)
            if a != b:
                out.append(f"{key}: {a!r} (cache) vs {b!r} (requested)")
        return out


# --------------------------------------------------------------------------------------------------- paths


def array_path(root: str | os.PathLike, modality: str, name: str) -> Path:
    """``<root>/<modality>/<name>.npy``."""
    return Path(root) / modality / f"{name}.npy"


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


def index_files(root: str | os.PathLike) -> list[Path]:
    """All index parts of a cache: ``index.jsonl`` and every ``index.shard-i-of-n.jsonl``."""
    return _part_files(Path(root), "index")


# --------------------------------------------------------------------------------------------- atomic I/O


def _tmp_name(path: Path) -> Path:
    # Host + pid make the temporary name unique across shards writing into one shared folder.
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def remove_stale_temps(root: str | os.PathLike, subdirs: Iterable[str] = ()) -> int:
    """Delete temporary files left in ``root`` and ``root/<subdir>`` by killed writers on this host.

    Only files named by `_tmp_name` for this host whose process is gone are removed, so writers running
    concurrently (other shards on this machine or elsewhere) keep theirs. Returns the number removed.
    """
    host = socket.gethostname()
    n = 0
    for d in [Path(root), *(Path(root) / s for s in subdirs)]:
        if not d.is_dir():
            continue
        for p in d.glob(f".*.{host}.*.tmp"):
            try:
                pid = int(p.name.rsplit(".", 2)[-2])
            except ValueError:
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue
            p.unlink(missing_ok=True)
            n += 1
    return n


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_array_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` at ``path`` via a temporary file + ``os.replace`` (no partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` via a temporary file + ``os.replace`` (readers see the old or the new file, whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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

    def append(self, record: dict[str, Any]) -> None:
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
        cfg = CacheConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CacheError(f"{path}: invalid cache config ({exc})") from exc
    if cfg.version > CACHE_VERSION:
        raise CacheError(
            f"{path}: cache version {cfg.version} is newer than this modistill ({CACHE_VERSION})"
        )
    return cfg


def read_index(root: str | os.PathLike) -> list[dict[str, Any]]:
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
    return [merged[k] for k in sorted(merged)]


def read_failures(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Failure records (sample, stage, error) of the last run of every shard."""
    out: list[dict[str, Any]] = []
    for path in _part_files(Path(root), "failures"):
        out.extend(read_jsonl(path))
    return out


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
        raise CacheError(
            f"{path}: cached {modality} array of sample {name} is missing (re-run `modistill prepare`)"
        )
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable cached array ({exc})") from exc
    if arr.dtype != np.uint8 or arr.ndim != 4 or (arr.shape[-1] != 3 and not modality.startswith("flow")):
        raise CacheError(f"{path}: expected uint8 (F, S, S, 3), found {arr.dtype} {tuple(arr.shape)}")
    if expect is not None and tuple(arr.shape) != tuple(expect):
        raise CacheError(f"{path}: expected shape {tuple(expect)}, found {tuple(arr.shape)}")
    return arr
