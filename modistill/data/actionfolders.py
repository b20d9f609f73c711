"""UCF101 and HMDB51: class-folder video layouts with their official split files -> manifest-style entries.

UCF101 (Soomro et al. 2012; the official ``ucfTrainTestlist`` folder)::

    <root>/<ClassName>/v_<ClassName>_gXX_cYY.avi
    <splits>/classInd.txt            "1 ApplyEyeMakeup"            1-based class ids, 101 lines
    <splits>/trainlist0N.txt         "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"   path + 1-based label
    <splits>/testlist0N.txt          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"     path only

N = 1, 2, 3. Labels here are 0-based: ``classInd id - 1``. A test video's label comes from its class folder
(the path's first component). The group ``gXX`` (the same actor/scene; the official splits keep groups apart)
is kept in the entry so leakage can be checked.

HMDB51 (Kuehne et al. 2011; the official ``testTrainMulti_7030_splits`` folder)::

    <root>/<class>/<video>.avi
    <splits>/<class>_test_split<N>.txt    "<video>.avi <id>"   id 1 = train, 2 = test, 0 = unused

N = 1, 2, 3. Class names come from the split file names; labels are the 0-based positions of the class names
in sorted (alphabetical) order, our choice (the official release defines no class ids). Videos with id 0 are
not used by the split and are counted, not returned. HMDB51 file names read ``<movie>_<class>_<tags>_<n>``
(Kuehne et al. 2011: clips cut from movies and web videos, with visibility / camera / quality tags and a clip
number); the entry's ``group`` is the source movie (the text before ``_<class>_``, else the name without its
trailing ``_<n>``), so clips of one movie can be kept in one split.

Both readers accept CRLF files and trailing blanks (the official files have both), and raise
:class:`LayoutError` naming the split file and line for unknown classes, malformed lines, label mismatches,
duplicate entries, missing videos, video names that are not safe sample ids and paths that leave the dataset
root (`modistill.data.paths`: the names become cache file names; the videos are only read); nothing is
skipped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modistill.core.errors import ModistillError

from .paths import UnsafePathError, check_sample_id

__all__ = ["LayoutError", "VideoEntry", "VideoList", "hmdb51_entries", "hmdb51_movie", "ucf101_entries"]

SPLITS = (1, 2, 3)
_UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)$")


class LayoutError(ModistillError, ValueError):
    """A dataset layout or split file is invalid; the message names the file (and line)."""


def _safe_stem(name: str, where: str) -> str:
    try:
        return check_sample_id(Path(name).stem, where)
    except UnsafePathError as exc:
        raise LayoutError(str(exc)) from None


def hmdb51_movie(stem: str, class_name: str) -> str:
    """The source movie of an HMDB51 clip ``<movie>_<class>_<tags>_<n>``: the text before ``_<class>_``, else
    the name without a trailing ``_<n>``, else the name itself."""
    cut = stem.rfind(f"_{class_name}_")
    if cut > 0:
        return stem[:cut]
    m = re.fullmatch(r"(.+)_\d+", stem)
    return m.group(1) if m else stem


@dataclass(frozen=True)
class VideoEntry:
    """One video of a split: ``sample`` (the file stem, unique), ``path`` (absolute), ``label`` (0-based),
    ``split`` ("train" | "test"), ``class_name``, ``group`` (UCF101 ``gXX``; HMDB51 the source movie)."""

    sample: str
    path: Path
    label: int
    split: str
    class_name: str
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass
class VideoList:
    """Entries of one official split plus the class names (index = label)."""

    dataset: str
    split_id: int
    class_names: list[str]
    entries: list[VideoEntry]
    unused: int = 0  # HMDB51 videos marked 0 (not in this split)
    sources: list[Path] = field(default_factory=list)  # split files read

    def subset(self, split: str) -> list[VideoEntry]:
        """The ``"train"`` or ``"test"`` entries."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return [e for e in self.entries if e.split == split]


def _check_split_id(split: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"official split must be one of {SPLITS}, got {split!r}")


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines; LayoutError if unreadable."""
    if not path.is_file():
        raise LayoutError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: cannot read split file ({exc})") from exc
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1) if s.strip()]


def _read_class_ind(path: Path) -> list[str]:
    names: dict[int, str] = {}
    for n, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise LayoutError(f"{path}:{n}: expected '<id> <ClassName>', got {line!r}")
        cid, name = int(parts[0]), parts[1]
        if cid in names or name in names.values():
            raise LayoutError(f"{path}:{n}: class id {cid} or name {name!r} defined twice")
        names[cid] = name
    if not names:
        raise LayoutError(f"{path}: no classes")
    if sorted(names) != list(range(1, len(names) + 1)):
        raise LayoutError(f"{path}: class ids must be 1..{len(names)} without gaps, got {sorted(names)}")
    return [names[i] for i in range(1, len(names) + 1)]


def ucf101_entries(
    root: str | os.PathLike,
    split: int = 1,
    split_dir: str | os.PathLike | None = None,
    check_files: bool = True,
) -> VideoList:
    """Train and test entries of official UCF101 split ``split`` (1-3).

    Args:
        root: the folder holding the 101 class folders (``UCF-101/``).
        split_dir: the folder with ``classInd.txt`` / ``trainlist0N.txt`` / ``testlist0N.txt``
            (default ``<root>/ucfTrainTestlist``).
        check_files: require every listed video to exist (a LayoutError names the split file and line).
    """
    _check_split_id(split)
    root = Path(root).resolve()
    sdir = Path(split_dir) if split_dir is not None else root / "ucfTrainTestlist"
    class_ind = sdir / "classInd.txt"
    classes = _read_class_ind(class_ind)
    by_name = {c: i for i, c in enumerate(classes)}
    # Fallback for case-only differences (the official files mix cases, e.g. v_HandStandPushups_*).
    by_lower = {c.lower(): i for i, c in enumerate(classes)}
    entries: list[VideoEntry] = []
    where: dict[str, str] = {}
    sources = [class_ind]
    for kind in ("train", "test"):
        path = sdir / f"{kind}list{split:02d}.txt"
        sources.append(path)
        for n, line in _lines(path):
            parts = line.split()
            if len(parts) not in ((2,) if kind == "train" else (1, 2)):
                want = "'<Class>/<video>.avi <label>'" if kind == "train" else "'<Class>/<video>.avi'"
                raise LayoutError(f"{path}:{n}: expected {want}, got {line!r}")
            rel = parts[0].replace("\\", "/")
            if rel.startswith("/") or ".." in rel.split("/") or re.match(r"^[A-Za-z]:", rel):
                raise LayoutError(f"{path}:{n}: video path {parts[0]!r} leaves the dataset folder")
            folder = rel.split("/")[0] if "/" in rel else ""
            label = by_name.get(folder, by_lower.get(folder.lower()))
            if label is None:
                raise LayoutError(f"{path}:{n}: unknown class folder {folder!r} (not in {class_ind})")
            if len(parts) == 2:
                if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                    raise LayoutError(
                        f"{path}:{n}: label {parts[1]!r} does not match class {folder!r} "
                        f"(id {label + 1} in {class_ind})"
                    )
            video = root / rel
            if check_files and not video.is_file():
                raise LayoutError(f"{path}:{n}: video not found: {video}")
            stem = _safe_stem(rel, f"{path}:{n}")
            m = _UCF_GROUP.search(stem)
            entries.append(
                VideoEntry(stem, video, label, kind, classes[label], f"g{m.group(1)}" if m else None)
            )
            if stem in where:
                raise LayoutError(f"{path}:{n}: video {stem!r} listed twice (also at {where[stem]})")
            where[stem] = f"{path}:{n}"
    return VideoList("ucf101", split, classes, entries, sources=sources)


def hmdb51_entries(
    root: str | os.PathLike,
    split: int = 1,
    split_dir: str | os.PathLike | None = None,
    check_files: bool = True,
) -> VideoList:
    """Train and test entries of official HMDB51 split ``split`` (1-3).

    Args:
        root: the folder holding the 51 class folders.
        split_dir: the folder with ``<class>_test_split<N>.txt`` files
            (default ``<root>/testTrainMulti_7030_splits``).
        check_files: require every train/test video to exist (a LayoutError names the split file and line).
    """
    _check_split_id(split)
    root = Path(root).resolve()
    sdir = Path(split_dir) if split_dir is not None else root / "testTrainMulti_7030_splits"
    if not sdir.is_dir():
        raise LayoutError(f"{sdir}: HMDB51 split folder not found")
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in sdir.iterdir() if p.name.endswith(suffix))
    if not files:
        raise LayoutError(f"{sdir}: no '<class>{suffix}' split files")
    classes = sorted(p.name[: -len(suffix)] for p in files)
    label_of = {c: i for i, c in enumerate(classes)}
    entries: list[VideoEntry] = []
    where: dict[str, str] = {}
    unused = 0
    for path in files:
        cls = path.name[: -len(suffix)]
        if check_files and not (root / cls).is_dir():
            raise LayoutError(f"{path}: class folder {root / cls} not found")
        for n, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise LayoutError(f"{path}:{n}: expected '<video>.avi <0|1|2>', got {line!r}")
            name, tag = parts
            if "/" in name or "\\" in name:
                raise LayoutError(f"{path}:{n}: expected a bare video file name, got {name!r}")
            stem = _safe_stem(name, f"{path}:{n}")
            if stem in where:
                raise LayoutError(f"{path}:{n}: video {stem!r} listed twice (also at {where[stem]})")
            where[stem] = f"{path}:{n}"
            if tag == "0":
                unused += 1
                continue
            video = root / cls / name
            if check_files and not video.is_file():
                raise LayoutError(f"{path}:{n}: video not found: {video}")
            split_name = "train" if tag == "1" else "test"
            entries.append(VideoEntry(stem, video, label_of[cls], split_name, cls, hmdb51_movie(stem, cls)))
    return VideoList("hmdb51", split, classes, entries, unused=unused, sources=files)
