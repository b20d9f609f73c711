"""Content digests of files, for keys that must follow what a file holds rather than where it lies."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["file_digest"]

_MEMO: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str], length: int = 16) -> str:
    """sha256 prefix of the file's bytes; ``str(path)`` unchanged when it is not a file. Memoised per
    (resolved path, size, modification time), so planning many stages reads a large checkpoint once per
    process (a ResNet-50 checkpoint, ~100 MB, hashes in about half a second)."""
    p = Path(path)
    if not p.is_file():
        return str(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _MEMO[memo_key] = h.hexdigest()
    return _MEMO[memo_key][:length]
