"""The one atomic file writer: readers see the old file or the new one, whole, never a partial file.

Every write goes to a temporary file in the destination folder, is flushed and fsynced, then replaces the
destination with ``os.replace``; the folder is fsynced afterwards so the rename survives a power cut. The
temporary name carries host and process id (``.<name>.<host>.<pid>.<rand>.tmp``) so that writers on several
machines sharing one folder (``prepare --shard i/n``) never collide, and `remove_stale_temps` can delete what a
killed writer on this host left behind without touching files of writers still running.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "remove_stale_temps",
    "save_array_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: str | os.PathLike, mode: str, write: Callable[[IO[Any]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _write_atomic(path, "w", lambda f: f.write(text))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _write_atomic(path, "wb", lambda f: f.write(data))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_array_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as ``.npy`` (no pickle) at ``path`` atomically."""
    return _write_atomic(path, "wb", lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(root: str | os.PathLike, subdirs: Iterable[str] = ()) -> int:
    """Delete temporary files left in ``root`` and ``root/<subdir>`` by killed writers on this host.

    Only temporary files of this host whose process is gone (or is this process) are removed, so writers
    running concurrently (other shards on this machine or on others) keep theirs. Returns the number removed.
    """
    host = socket.gethostname()
    n = 0
    for d in [Path(root), *(Path(root) / s for s in subdirs)]:
        if not d.is_dir():
            continue
        for p in d.glob(f".*.{host}.*.tmp"):
            try:
                pid = int(p.name.rsplit(".", 3)[-3])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue
            p.unlink(missing_ok=True)
            n += 1
    return n
