"""Names from untrusted lists stay inside their folders: sample ids and the cache paths built from them.

Manifests and split files come from other people. A sample id becomes a file name in the prepared cache
(``<cache>/<modality>/<id>.npy``), so an id such as ``../../escaped`` or ``/etc/x`` would make `modistill
prepare` write outside the cache. Two checks, applied where the names enter and where the paths are made:

- `check_sample_id`: 1-200 characters from a safe set (ASCII letters, digits and ``_ . - + ( ) [ ] { } # ! &
  , ' @ = ~ % $ ;``; HMDB51's file names use several of these), not starting with ``.`` or ``-`` (no hidden
  files, nothing that reads as a command-line option). Path separators (``/``, ``\\``),
  drive colons, wildcards, quotes, whitespace and control characters are refused, and so is ``..`` anywhere;
- `contained_path`: joins a root with name parts and checks that the result, with every ``..`` applied, is
  still under the root.

Paths that manifests and split files point to (videos, depth) are only ever read, never written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from modistill.core.errors import ModistillError

__all__ = ["SAFE_ID_CHARS", "UnsafePathError", "check_sample_id", "contained_path", "is_safe_id"]

SAFE_ID_CHARS = "A-Za-z0-9_.+()\\[\\]{}#!&,'@=~%$;-"
_SAFE_ID = re.compile(rf"[A-Za-z0-9_+()\[\]{{}}#!&,'@=~%$;][{SAFE_ID_CHARS}]{{0,199}}")
_PRINTABLE = re.compile(r"[\x21-\x7e]")


class UnsafePathError(ModistillError, ValueError):
    """A sample id or a path built from one would leave its folder; the message names where it came from."""


def is_safe_id(name: str) -> bool:
    """Whether ``name`` may be a sample id (see the module docstring for the rule)."""
    return isinstance(name, str) and _SAFE_ID.fullmatch(name) is not None and ".." not in name


def check_sample_id(name: str, where: str = "") -> str:
    """Return ``name`` if it is a safe sample id, else raise `UnsafePathError` saying why, prefixed with
    ``where`` (e.g. ``"manifest.csv:7"``)."""
    if is_safe_id(name):
        return name
    prefix = f"{where}: " if where else ""
    if not isinstance(name, str) or not name:
        why = "is empty"
    elif len(name) > 200:
        why = f"is {len(name)} characters long (at most 200)"
    elif os.path.isabs(name) or re.match(r"^([A-Za-z]:|\\\\)", name):
        why = "is an absolute path"
    elif "/" in name or "\\" in name:
        why = "contains a path separator"
    elif ".." in name:
        why = "contains '..'"
    elif name.startswith((".", "-")):
        why = "starts with '.' or '-'"
    else:
        bad = sorted({c for c in name if not _SAFE_ID.fullmatch("a" + c) or not _PRINTABLE.fullmatch(c)})
        why = f"contains the character(s) {''.join(bad)!r}"
    raise UnsafePathError(
        f"{prefix}sample id {name!r} {why}; ids become file names in the cache, so they may only use "
        f"letters, digits and _ . - + ( ) [ ] {{ }} # ! & , ' @ = ~ % $ ; and must not start with '.' or '-'"
    )


def contained_path(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts...``, after checking that it stays under ``root`` once ``.``/``..`` and absolute parts
    are applied (lexically: a symbolic link the user placed inside the cache, e.g. ``rgb/`` on another disk,
    is their own choice and is followed); `UnsafePathError` naming both otherwise."""
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    target = os.path.normpath(os.path.join(base, *parts))
    if os.path.commonpath([base, target]) != base or target == base and parts:
        raise UnsafePathError(
            f"{os.path.join(os.fspath(root), *parts)}: outside the cache folder {base}; refused"
        )
    return Path(root).joinpath(*parts)
