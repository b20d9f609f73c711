"""A generic sample manifest (CSV or JSONL) for NTU and users' own RGB-D, RGB-only and flow data.

Columns / keys: ``sample`` (unique id, a safe file name: `modistill.data.paths.check_sample_id`), ``rgb``
(video path, or a folder of frame images), ``depth`` (optional: a folder of 16-bit PNGs or a lossless 16-bit
depth video; empty for RGB-only / flow data), ``skeleton`` (optional NTU ``.skeleton``), ``label`` (int,
0-based), ``subject``, ``view`` (camera), ``setup`` (optional), ``split`` (optional: train / val / test, on
every row or on none), ``class_name`` (optional: the name of the row's label; one name per label). Class
names can also come from a classes file (`modistill.data.classes.read_classes`: line k names label k). Relative paths
are resolved against the manifest's folder. The format is chosen by suffix: ``.csv`` or ``.jsonl``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modistill.core.atomic import write_bytes_atomic
from modistill.core.errors import ModistillError

from .classes import ClassNameCheck, ClassNamesError
from .ntu import parse_sample_name, read_missing_list
from .paths import UnsafePathError, check_sample_id

__all__ = [
    "ManifestEntry",
    "ManifestError",
    "MANIFEST_FIELDS",
    "SPLIT_VALUES",
    "read_manifest",
    "write_manifest",
    "ntu_manifest",
]

MANIFEST_FIELDS: tuple[str, ...] = (
    "sample",
    "rgb",
    "depth",
    "skeleton",
    "label",
    "subject",
    "view",
    "setup",
    "split",
    "class_name",
)
_REQUIRED = ("sample", "rgb", "label", "subject", "view")
SPLIT_VALUES: tuple[str, ...] = ("train", "val", "test")


class ManifestError(ModistillError, ValueError):
    """A manifest is malformed; the message names the file and line."""


@dataclass(frozen=True, kw_only=True)
class ManifestEntry:
    """One sample. Paths are absolute after reading; ``subject``/``view``/``setup`` are ints when the text
    is an integer (NTU), else strings (users' own ids); ``view`` is None for data without views (UCF101,
    HMDB51). ``split`` is "train" | "val" | "test" or None; ``class_name`` the label's name or None.
    Keyword-only; ``depth`` defaults to None (RGB-only / flow data)."""

    sample: str
    rgb: Path
    depth: Path | None = None
    label: int
    subject: int | str
    view: int | str | None
    skeleton: Path | None = None
    setup: int | str | None = None
    split: str | None = None
    class_name: str | None = None


def _id(v: object) -> int | str:
    s = str(v).strip()
    try:
        return int(s)
    except ValueError:
        return s


def _text(raw: dict, k: str) -> str | None:
    v = raw.get(k)
    return None if v is None or str(v).strip() == "" else str(v).strip()


def _entry(raw: dict, base: Path, where: str) -> ManifestEntry:
    unknown = set(raw) - set(MANIFEST_FIELDS)
    if unknown:
        raise ManifestError(
            f"{where}: unknown field(s) {sorted(unknown)}; allowed: {', '.join(MANIFEST_FIELDS)}"
        )
    for k in _REQUIRED:
        if raw.get(k) is None or str(raw[k]).strip() == "":
            raise ManifestError(f"{where}: required field {k!r} is missing or empty")
    label_raw = raw["label"]
    if isinstance(label_raw, bool):
        raise ManifestError(f"{where}: label must be an integer >= 0, got {label_raw!r}")
    try:
        label = int(str(label_raw).strip())
    except ValueError:
        raise ManifestError(f"{where}: label must be an integer >= 0, got {label_raw!r}") from None
    if label < 0:
        raise ManifestError(f"{where}: label must be 0-based (>= 0), got {label}")
    try:
        sample = check_sample_id(str(raw["sample"]).strip(), where)
    except UnsafePathError as exc:
        raise ManifestError(str(exc)) from None
    split = _text(raw, "split")
    if split is not None and split not in SPLIT_VALUES:
        raise ManifestError(
            f"{where}: split must be one of {', '.join(SPLIT_VALUES)} (or empty), got {split!r}"
        )

    def path(k: str) -> Path | None:
        v = _text(raw, k)
        if v is None:
            return None
        p = Path(os.path.expanduser(v))
        return p if p.is_absolute() else base / p

    setup = _text(raw, "setup")
    return ManifestEntry(
        sample=sample,
        rgb=path("rgb"),  # type: ignore[arg-type]  # required, checked above
        depth=path("depth"),
        skeleton=path("skeleton"),
        label=label,
        subject=_id(raw["subject"]),
        view=_id(raw["view"]),
        setup=None if setup is None else _id(setup),
        split=split,
        class_name=_text(raw, "class_name"),
    )


def _format(path: Path) -> str:
    suf = path.suffix.lower()
    if suf == ".csv":
        return "csv"
    if suf in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ManifestError(f"{path}: unknown manifest format {suf!r}; use .csv or .jsonl")


def read_manifest(
    path: str | Path, *, check_files: bool = False, classes: Sequence[str] | None = None
) -> list[ManifestEntry]:
    """Read a CSV (header row required) or JSONL (one object per line) manifest.

    Errors (``ManifestError``) name the file and line: unknown or missing fields, a non-integer or negative
    label, an unsafe or duplicate sample id (also ids that differ only in case: they collide on
    case-insensitive file systems), a split other than train/val/test or given on some rows only, a label
    with two class names (or a name used by two labels), malformed JSON; with ``classes`` (the names of a
    classes file) a label outside them or a ``class_name`` that disagrees; with ``check_files=True`` also
    missing rgb/depth/skeleton paths.
    """
    path = Path(path)
    fmt = _format(path)
    base = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest ({e})") from e
    rows: list[tuple[int, dict]] = []
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text))
        header: list[str] | None = None
        for row in reader:
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                if "sample" not in header:
                    raise ManifestError(f"{path}:{lineno}: the first row must be a header naming the columns")
                continue
            if len(row) != len(header):
                raise ManifestError(f"{path}:{lineno}: {len(row)} values for {len(header)} header columns")
            rows.append((lineno, dict(zip(header, row))))
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ManifestError(f"{path}:{lineno}: each line must be a JSON object")
            rows.append((lineno, obj))
    out: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    folded: dict[str, tuple[str, int]] = {}
    names = ClassNameCheck(classes)
    for lineno, raw in rows:
        where = f"{path}:{lineno}"
        e = _entry(raw, base, where)
        if e.sample in seen:
            raise ManifestError(f"{where}: duplicate sample id {e.sample!r} (first on line {seen[e.sample]})")
        other = folded.get(e.sample.lower())
        if other is not None:
            raise ManifestError(
                f"{where}: sample id {e.sample!r} differs from {other[0]!r} (line {other[1]}) only in case; "
                "their cache files would collide on case-insensitive file systems"
            )
        seen[e.sample] = lineno
        folded[e.sample.lower()] = (e.sample, lineno)
        try:
            names.add(e.label, e.class_name, where)
        except ClassNamesError as exc:
            raise ManifestError(str(exc)) from None
        if out and (e.split is None) != (out[0].split is None):
            raise ManifestError(
                f"{where}: split is {'empty' if e.split is None else repr(e.split)} here but "
                f"{'empty' if out[0].split is None else 'given'} on line {rows[0][0]}; give a split on every "
                "row or on none"
            )
        if check_files:
            for k in ("rgb", "depth", "skeleton"):
                p = getattr(e, k)
                if p is not None and not p.exists():
                    raise ManifestError(f"{where}: {k} path {p} does not exist")
        out.append(e)
    return out


def write_manifest(path: str | Path, entries: Iterable[ManifestEntry], *, relative: bool = True) -> None:
    """Write entries as CSV or JSONL (by suffix); paths below the manifest's folder are written relative
    to it when ``relative`` (so the dataset folder can be moved with its manifest)."""
    path = Path(path)
    fmt = _format(path)
    base = path.resolve().parent

    def ps(p: Path | None) -> str:
        if p is None:
            return ""
        p = Path(p)
        if relative and p.resolve().is_relative_to(base):
            return p.resolve().relative_to(base).as_posix()
        return str(p)

    recs = []
    for e in entries:
        recs.append(
            {
                "sample": e.sample,
                "rgb": ps(e.rgb),
                "depth": ps(e.depth),
                "skeleton": ps(e.skeleton),
                "label": int(e.label),
                "subject": e.subject,
                "view": "" if e.view is None else e.view,
                "setup": "" if e.setup is None else e.setup,
                "split": e.split or "",
                "class_name": e.class_name or "",
            }
        )
    fh = io.StringIO(newline="")
    if fmt == "csv":
        w = csv.DictWriter(fh, fieldnames=list(MANIFEST_FIELDS), lineterminator="\n")
        w.writeheader()
        w.writerows(recs)
    else:
        for r in recs:
            fh.write(json.dumps({k: v for k, v in r.items() if v != ""}) + "\n")
    write_bytes_atomic(path, fh.getvalue().encode("utf-8"))


def ntu_manifest(
    root: str | Path,
    names: Iterable[str] | None = None,
    missing_list: str | Path | Iterable[str] | None = None,
    *,
    on_missing: str = "error",
) -> list[ManifestEntry]:
    """Build a manifest from the NTU layout under ``root`` (docs/ARCHITECTURE.md "On-disk layouts").

    ``names=None`` discovers samples from ``nturgb+d_rgb/*_rgb.avi`` and ``nturgb+d_depth_masked/*/``.
    A sample lacking its RGB video or depth folder is an error (``on_missing="error"``) or left out
    (``"skip"``). ``skeleton`` is set when the file exists and the sample is not in ``missing_list`` (a path
    to an official list or a set of names); label = action - 1, subject = performer, view = camera.
    """
    root = Path(root)
    rgb_dir, depth_dir, sk_dir = (
        root / "nturgb+d_rgb",
        root / "nturgb+d_depth_masked",
        root / "nturgb+d_skeletons",
    )
    if on_missing not in ("error", "skip"):
        raise ValueError(f"ntu_manifest: on_missing must be 'error' or 'skip', got {on_missing!r}")
    if names is None:
        if not rgb_dir.is_dir() and not depth_dir.is_dir():
            raise ManifestError(f"{root}: no nturgb+d_rgb/ or nturgb+d_depth_masked/ folder, not an NTU root")
        found: set[str] = set()
        if rgb_dir.is_dir():
            found |= {p.name[: -len("_rgb.avi")] for p in rgb_dir.glob("*_rgb.avi")}
        if depth_dir.is_dir():
            found |= {p.name for p in depth_dir.iterdir() if p.is_dir()}
        names = sorted(found)
    if missing_list is None:
        missing: set[str] = set()
    elif isinstance(missing_list, str | Path):
        missing = read_missing_list(missing_list)
    else:
        missing = set(missing_list)
    out: list[ManifestEntry] = []
    for raw in names:
        n = parse_sample_name(raw)
        s = str(n)
        rgb, depth, sk = rgb_dir / f"{s}_rgb.avi", depth_dir / s, sk_dir / f"{s}.skeleton"
        lacking = [
            what for what, p, ok in (("RGB", rgb, rgb.is_file()), ("depth", depth, depth.is_dir())) if not ok
        ]
        if lacking:
            if on_missing == "error":
                raise ManifestError(
                    f"{root}: sample {s} has no {' or '.join(lacking)} data (expected {rgb} and {depth}/)"
                )
            continue
        out.append(
            ManifestEntry(
                sample=s,
                rgb=rgb,
                depth=depth,
                skeleton=sk if sk.is_file() and s not in missing else None,
                label=n.label,
                subject=n.subject,
                view=n.camera,
                setup=n.setup,
            )
        )
    return out
