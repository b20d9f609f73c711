"""Class names of users' data: a classes file, a manifest's ``class_name`` column, their consistency.

A classes file holds one name per line; line k (counting from 0) names label k. A manifest may instead (or
as well) name each row's label in a ``class_name`` column: every label then has one name and every name one
label. Errors name the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modistill.core.errors import ModistillError

__all__ = ["ClassNameCheck", "ClassNamesError", "manifest_class_names", "read_classes"]


class ClassNamesError(ModistillError, ValueError):
    """A classes file or a manifest's class names are inconsistent; the message names the file and line."""


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names from a classes file: one name per line, line k (0-based) is label k.

    Surrounding blanks and trailing empty lines are ignored; an empty line between names (it would shift
    every later label), a duplicate name or an empty file is a `ClassNamesError` naming the file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassNamesError(f"{path}: cannot read the classes file ({exc})") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    seen: dict[str, int] = {}
    for no, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise ClassNamesError(f"{path}:{no}: empty line between class names (line k names label k - 1)")
        if name in seen:
            raise ClassNamesError(f"{path}:{no}: class {name!r} is listed twice (first on line {seen[name]})")
        seen[name] = no
        names.append(name)
    if not names:
        raise ClassNamesError(f"{path}: no class names")
    return names


class ClassNameCheck:
    """Checks the class names of a manifest as its rows are read (one name per label, one label per name)."""

    def __init__(self, classes: Sequence[str] | None) -> None:
        self.classes = list(classes) if classes is not None else None
        self.by_label: dict[int, tuple[str, str]] = {}  # label -> (name, where)
        self.by_name: dict[str, tuple[int, str]] = {}

    def add(self, label: int, name: str | None, where: str) -> None:
        if self.classes is not None:
            if label >= len(self.classes):
                raise ClassNamesError(
                    f"{where}: label {label} is outside the {len(self.classes)} classes of the classes file"
                )
            if name is not None and name != self.classes[label]:
                raise ClassNamesError(
                    f"{where}: class_name {name!r} disagrees with the classes file, which names label "
                    f"{label} {self.classes[label]!r}"
                )
        if name is None:
            return
        had = self.by_label.setdefault(label, (name, where))
        if had[0] != name:
            raise ClassNamesError(f"{where}: label {label} is named {name!r} here but {had[0]!r} at {had[1]}")
        used = self.by_name.setdefault(name, (label, where))
        if used[0] != label:
            raise ClassNamesError(
                f"{where}: class_name {name!r} is label {label} here but label {used[0]} at {used[1]}"
            )


def manifest_class_names(
    entries: Sequence[Any], classes: Sequence[str] | None = None
) -> tuple[list[str] | None, list[int]]:
    """(class names indexed by label, labels that got a placeholder name) of manifest entries
    (`ManifestEntry`: ``.label``, ``.class_name``).

        ``classes`` (a classes file's names) wins; else the ``class_name`` column gives the name of each label it
        covers and labels no row names become ``"class_<k>"`` (listed in the second value so the caller can say
        so); None when there are neither (the rows were checked by `read_manifest`).
    """
    if classes is not None:
        return list(classes), []
    named = {e.label: e.class_name for e in entries if e.class_name is not None}
    if not named:
        return None, []
    k = max(e.label for e in entries) + 1
    missing = [i for i in range(k) if i not in named]
    return [named.get(i) or f"class_{i}" for i in range(k)], missing
