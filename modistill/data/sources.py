"""What `modistill prepare` reads: the four kinds of source and the sample entries each one lists.

- ``"ntu"``: an NTU RGB+D-layout root (also what `modistill synth` writes), `ntu_entries`;
- ``"manifest"``: a CSV/JSONL manifest of users' own data (`modistill.data.manifest`), with an optional
  classes file;
- ``"ucf101"`` / ``"hmdb51"``: a class-folder tree with its official split files
  (`modistill.data.actionfolders`), official split N; RGB only. UCF101 lists train and test videos;
  HMDB51's videos marked 0 ("not in this split") are left out and counted in the notes.

Every kind becomes the same `ManifestEntry` list (sorted by sample id, ids checked by
`modistill.data.paths`), with the class names where the source has them. A `Source` is recorded in
``cache_config.json`` (``source``, ``source_path``, ``source_split``, ``source_split_dir``), so the flow pass
finds the videos again (`Source.from_config`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from modistill.core.errors import ModistillError

from .actionfolders import LayoutError, hmdb51_entries, ucf101_entries
from .cache_files import SOURCE_KINDS, CacheConfig
from .classes import ClassNamesError, manifest_class_names, read_classes
from .manifest import ManifestEntry, ManifestError, ntu_manifest, read_manifest
from .ntu import parse_sample_name, read_missing_list

__all__ = [
    "LAYOUTS",
    "MISSING_LIST_NAMES",
    "Source",
    "SourceError",
    "SourceListing",
    "list_source",
    "manifest_entries",
    "ntu_entries",
]

LAYOUTS = ("ucf101", "hmdb51")
MISSING_LIST_NAMES = (
    "NTU_RGBD_samples_with_missing_skeletons.txt",
    "NTU_RGBD120_samples_with_missing_skeletons.txt",
)


class SourceError(ModistillError, RuntimeError):
    """A source cannot be listed (missing folder, malformed manifest, classes or split file)."""


@dataclass(frozen=True)
class Source:
    """Where the samples come from: ``kind`` (`cache.SOURCE_KINDS`), ``path`` (NTU root, manifest file or
    UCF101/HMDB51 root), ``split``/``split_dir`` (official split N and its folder, UCF101/HMDB51),
    ``classes`` (a classes file for a manifest), ``missing_list`` (NTU missing-skeleton list)."""

    kind: str
    path: Path
    split: int | None = None
    split_dir: Path | None = None
    classes: Path | None = None
    missing_list: Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise SourceError(f"source kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.kind in LAYOUTS and self.split not in (1, 2, 3):
            raise SourceError(f"--layout {self.kind} needs --split 1, 2 or 3, got {self.split!r}")

    @classmethod
    def from_config(cls, cfg: CacheConfig) -> Source:
        """The source a cache records (raises `SourceError` when it records none)."""
        if not cfg.source or not cfg.source_path:
            raise SourceError("the cache records no source: pass the source folder or the manifest")
        split_dir = Path(cfg.source_split_dir) if cfg.source_split_dir else None
        return cls(cfg.source, Path(cfg.source_path), cfg.source_split, split_dir)

    def record(self) -> dict[str, object]:
        """The `CacheConfig` fields that record this source."""
        return {
            "source": self.kind,
            "source_path": str(self.path.resolve()),
            "source_split": self.split,
            "source_split_dir": str(self.split_dir.resolve()) if self.split_dir else None,
        }


@dataclass
class SourceListing:
    """The samples of a source: ``entries`` (sorted by id), ``missing`` (NTU missing-skeleton names),
    ``num_classes``, ``class_names`` (index = label, or None), ``notes`` (things the user should know)."""

    entries: list[ManifestEntry]
    missing: frozenset[str] = frozenset()
    num_classes: int | None = None
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def list_source(source: Source) -> SourceListing:
    """List ``source`` (module docstring); `SourceError` naming the file when that is not possible."""
    if source.kind == "ntu":
        entries, missing = ntu_entries(source.path, source.missing_list)
        num, names = _ntu_classes(entries, source.path)
        return SourceListing(entries, missing, num, names)
    if source.kind == "manifest":
        classes = None
        if source.classes is not None:
            try:
                classes = read_classes(source.classes)
            except ClassNamesError as exc:
                raise SourceError(str(exc)) from exc
        entries = manifest_entries(source.path, classes)
        names, placeholders = manifest_class_names(entries, classes)
        notes = []
        if placeholders:
            notes.append(
                f"{source.path}: no row names label(s) {placeholders}; they are called class_<k> "
                "(give --classes FILE to name every class)"
            )
        num = len(names) if names else (max(e.label for e in entries) + 1 if entries else None)
        return SourceListing(entries, num_classes=num, class_names=names, notes=notes)
    return _layout_listing(source)


def _layout_listing(source: Source) -> SourceListing:
    read = ucf101_entries if source.kind == "ucf101" else hmdb51_entries
    if not Path(source.path).is_dir():
        raise SourceError(f"{source.path}: {source.kind} root folder not found")
    try:
        vl = read(source.path, split=int(source.split), split_dir=source.split_dir)  # type: ignore[arg-type]
    except LayoutError as exc:
        raise SourceError(str(exc)) from exc
    entries = [
        ManifestEntry(
            sample=v.sample,
            rgb=v.path,
            depth=None,
            label=v.label,
            subject=v.group or v.sample,
            view=None,
            split=v.split,
            class_name=v.class_name,
        )
        for v in sorted(vl.entries, key=lambda v: v.sample)
    ]
    notes = []
    if vl.unused:
        notes.append(
            f"{source.kind} split {source.split}: {vl.unused} video(s) marked 0 (unused) are left out"
        )
    return SourceListing(
        entries, num_classes=len(vl.class_names), class_names=list(vl.class_names), notes=notes
    )


def manifest_entries(path: str | os.PathLike, classes: list[str] | None = None) -> list[ManifestEntry]:
    """Entries of a CSV/JSONL manifest sorted by id; `SourceError` if it is malformed."""
    try:
        return sorted(read_manifest(path, classes=classes), key=lambda e: e.sample)
    except ManifestError as exc:
        raise SourceError(str(exc)) from exc


def ntu_entries(
    root: str | os.PathLike, missing_list: str | os.PathLike | None = None
) -> tuple[list[ManifestEntry], frozenset[str]]:
    """Entries of every sample found under an NTU-layout root, and the missing-skeleton set.

    A sample lacking its RGB video or depth folder is kept (with the expected path) so that it is reported as
    a failure naming the missing path, rather than silently left out. ``missing_list=None`` uses an official
    list file found in ``root`` if any. Names that are not NTU sample names (stray files) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: source folder not found")
    if missing_list is None:
        found_lists = [root / n for n in MISSING_LIST_NAMES if (root / n).is_file()]
        missing_list = found_lists[-1] if found_lists else None
    missing = frozenset(read_missing_list(missing_list)) if missing_list is not None else frozenset()
    rgb_dir, depth_dir = root / "nturgb+d_rgb", root / "nturgb+d_depth_masked"
    if not rgb_dir.is_dir() and not depth_dir.is_dir():
        raise SourceError(
            f"{root}: no nturgb+d_rgb/ or nturgb+d_depth_masked/ folder; not an NTU-layout root "
            "(for UCF101/HMDB51 trees use --layout ucf101|hmdb51 --split N; for other data a --manifest)"
        )
    found: set[str] = set()
    if rgb_dir.is_dir():
        found |= {p.name[: -len("_rgb.avi")] for p in rgb_dir.glob("*_rgb.avi")}
    if depth_dir.is_dir():
        found |= {p.name for p in depth_dir.iterdir() if p.is_dir()}
    names = []
    for s in sorted(found):
        try:
            parse_sample_name(s)
        except ValueError:
            continue  # a stray file or folder, not a sample
        names.append(s)
    entries = {e.sample: e for e in ntu_manifest(root, names, missing_list=missing, on_missing="skip")}
    for s in names:
        if s in entries:
            continue
        n = parse_sample_name(s)
        sk = root / "nturgb+d_skeletons" / f"{s}.skeleton"
        entries[s] = ManifestEntry(
            sample=s,
            rgb=rgb_dir / f"{s}_rgb.avi",
            depth=depth_dir / s,
            skeleton=sk if sk.is_file() and s not in missing else None,
            label=n.label,
            subject=n.subject,
            view=n.camera,
            setup=n.setup,
        )
    return [entries[k] for k in sorted(entries)], missing


def _ntu_classes(entries: list[ManifestEntry], src: Path) -> tuple[int | None, list[str] | None]:
    """(num_classes, class names or None). A ``classes.json`` next to the data (written by the synthetic
    generator: ``{"<action>": {"label": int, "name": str}}``) gives both; else NTU names give 60 or 120 (any
    action above 60 means NTU-120)."""
    path = src / "classes.json"
    if path.is_file():
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
            by_label = {int(v["label"]): str(v["name"]) for v in table.values()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SourceError(f"{path}: malformed class table ({exc})") from exc
        if sorted(by_label) != list(range(len(by_label))):
            raise SourceError(f"{path}: class labels must be 0..K-1, got {sorted(by_label)}")
        if any(int(e.label) >= len(by_label) for e in entries):
            raise SourceError(
                f"{src}: a sample's label is outside the {len(by_label)} classes of classes.json"
            )
        return len(by_label), [by_label[i] for i in range(len(by_label))]
    labels = [int(e.label) for e in entries]
    if not labels:
        return None, None
    return (120 if max(labels) >= 60 else 60), None
