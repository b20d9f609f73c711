"""`modistill prepare`: decode, align, crop and resize every sample once into the prepared cache.

The job: list the samples (NTU-layout root or a manifest), skip those already complete (resume), keep this
shard's subset, run `prepare_sample` on each in worker processes, append index records as they finish, and
defer the samples without a usable skeleton until the fallback alignment table is built (from the skeletons of
the whole source, so every shard gets the same table). Failures never stop the job: each is written to the
failures file with its stage and error (which names the file and the problem), and
`PrepareResult.exit_status` is 3 when any sample failed. Layout and crash safety: `modistill.data.cache`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modistill.core.atomic import remove_stale_temps
from modistill.core.errors import SchemaError

from . import cache as C
from .manifest import ManifestEntry, ManifestError, ntu_manifest, read_manifest
from .ntu import parse_sample_name, read_missing_list
from .pool import run_tasks
from .prepare_sample import (
    ALIGNMENTS,
    EXIT_FAILURES,
    AlignmentTable,
    PrepareError,
    PrepareOptions,
    SampleFailure,
    _fit_worker,
    _sample_worker,
    group_key,
    prepare_sample,
)
from .records import FailureRecord

__all__ = [
    "ALIGNMENTS",
    "EXIT_FAILURES",
    "AlignmentTable",
    "PrepareError",
    "PrepareOptions",
    "PrepareResult",
    "SampleFailure",
    "build_alignment_table",
    "manifest_entries",
    "ntu_entries",
    "prepare_cache",
    "prepare_sample",
]

MISSING_LIST_NAMES = (
    "NTU_RGBD_samples_with_missing_skeletons.txt",
    "NTU_RGBD120_samples_with_missing_skeletons.txt",
)


@dataclass
class PrepareResult:
    """Outcome of one `prepare_cache` run (of one shard)."""

    total: int = 0  # samples in this shard
    skipped: list[str] = field(default_factory=list)  # already complete from an earlier run
    done: list[str] = field(default_factory=list)  # prepared by this run
    fallback: list[str] = field(default_factory=list)  # prepared with the fallback alignment
    failures: list[FailureRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return EXIT_FAILURES if self.failures else 0


# ------------------------------------------------------------------------------------------ runner
def build_alignment_table(
    entries: Sequence[ManifestEntry], workers: int = 0, per_group: int = 0, progress: bool = False
) -> AlignmentTable:
    """Fit the skeletons of ``entries`` (all of the source, so every shard gets the same table).

    ``per_group > 0`` caps the fits per group to that many samples, evenly spread over the group's sorted
    names (the median barely moves beyond a few dozen; saves a pass over every NTU skeleton).
    """
    by_group: dict[str, list[ManifestEntry]] = {}
    for e in sorted(entries, key=lambda e: e.sample):
        if e.skeleton is not None:
            by_group.setdefault(group_key(e), []).append(e)
    chosen: list[ManifestEntry] = []
    for members in by_group.values():
        if per_group > 0 and len(members) > per_group:
            pick = np.linspace(0, len(members) - 1, per_group).round().astype(int)
            members = [members[i] for i in pick]
        chosen.extend(members)
    table = AlignmentTable()
    fits = run_tasks(
        _fit_worker, chosen, workers, progress, "fallback table", lambda e, _: (group_key(e), None)
    )
    results = sorted(r for r in fits if r[1] is not None)
    for key, row in results:
        table.rows.setdefault(key, []).append(row)  # type: ignore[arg-type]
    return table


def _sample_died(task: tuple, exc: BaseException) -> tuple[str, FailureRecord]:
    error = f"worker process died ({exc})"
    return ("fail", FailureRecord(sample=task[0].sample, stage="worker", error=error))


# ------------------------------------------------------------------------------------------------ sources


def ntu_entries(
    root: str | os.PathLike, missing_list: str | os.PathLike | None = None
) -> tuple[list[ManifestEntry], frozenset[str]]:
    """Entries of every sample found under an NTU-layout root, and the missing-skeleton set.

    A sample lacking its RGB video or depth folder is kept (with the expected path) so that it is reported as
    a failure naming the missing path, rather than silently left out. ``missing_list=None`` uses an official
    list file found in ``root`` if any.
    """
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"{root}: source folder not found")
    if missing_list is None:
        found = [root / n for n in MISSING_LIST_NAMES if (root / n).is_file()]
        missing_list = found[-1] if found else None
    missing = frozenset(read_missing_list(missing_list)) if missing_list is not None else frozenset()
    rgb_dir, depth_dir = root / "nturgb+d_rgb", root / "nturgb+d_depth_masked"
    if not rgb_dir.is_dir() and not depth_dir.is_dir():
        raise PrepareError(
            f"{root}: no nturgb+d_rgb/ or nturgb+d_depth_masked/ folder; not an NTU-layout root"
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


def _classes(
    entries: Iterable[ManifestEntry], ntu: bool, src: Path | None
) -> tuple[int | None, list[str] | None]:
    """(num_classes, class names or None). A ``classes.json`` next to the data (written by the synthetic
    generator: ``{"<action>": {"label": int, "name": str}}``) gives both; else NTU names give 60 or 120
    (any action above 60 means NTU-120), and a manifest gives ``max(label) + 1``."""
    if src is not None and (src / "classes.json").is_file():
        path = src / "classes.json"
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
            by_label = {int(v["label"]): str(v["name"]) for v in table.values()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PrepareError(f"{path}: malformed class table ({exc})") from exc
        if sorted(by_label) != list(range(len(by_label))):
            raise PrepareError(f"{path}: class labels must be 0..K-1, got {sorted(by_label)}")
        return len(by_label), [by_label[i] for i in range(len(by_label))]
    labels = [int(e.label) for e in entries]
    if not labels:
        return None, None
    if ntu:
        return (120 if max(labels) >= 60 else 60), None
    return max(labels) + 1, None


def manifest_entries(path: str | os.PathLike) -> list[ManifestEntry]:
    """Entries of a CSV/JSONL manifest (`modistill.data.manifest`); `PrepareError` if it is malformed."""
    try:
        return sorted(read_manifest(path), key=lambda e: e.sample)
    except ManifestError as exc:
        raise PrepareError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------------- job


def _open_config(out: Path, cfg: C.CacheConfig) -> None:
    path = out / C.CONFIG_NAME
    if path.is_file():
        have = C.load_config(out)
        diff = have.mismatches(cfg)
        if diff:
            raise PrepareError(
                f"{path}: the existing cache was prepared with different settings ({'; '.join(diff)}); "
                "use another output folder or the same settings"
            )
        if have.source != cfg.source:
            print(
                f"note: {path} records source {have.source!r}; this run reads {cfg.source!r}", file=sys.stderr
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    cfg.write(path)


def _load_table(out: Path, entries: Sequence[ManifestEntry], workers: int, per_group: int, progress: bool):
    path = out / C.FALLBACK_NAME
    stamp = {"candidates": sum(e.skeleton is not None for e in entries), "per_group": per_group}
    if path.is_file():
        try:
            saved = C.FallbackFile.read(path)
            if saved.stamp == stamp:
                return AlignmentTable(saved.groups)
        except SchemaError:
            pass  # unreadable or stale: rebuild (it is derived data)
    table = build_alignment_table(entries, workers, per_group, progress)
    C.FallbackFile(groups=table.rows, stamp=stamp).write(path)
    return table


def _open_job(
    out: Path,
    src: str | os.PathLike | None,
    manifest: str | os.PathLike | None,
    opts: PrepareOptions,
    missing_list: str | os.PathLike | None,
) -> tuple[list[ManifestEntry], frozenset[str]]:
    """Check the arguments, list the source, create or check ``cache_config.json``, clean up after a killed
    run and write ``samples.txt``: (entries of the whole source, missing-skeleton names)."""
    if opts.alignment not in ALIGNMENTS:
        raise PrepareError(f"alignment must be one of {ALIGNMENTS}, got {opts.alignment!r}")
    if (src is None) == (manifest is None):
        raise PrepareError("give exactly one of an NTU-layout source folder or a manifest file")
    if manifest is not None:
        entries, missing, ntu = manifest_entries(manifest), frozenset(), False
        source = str(Path(manifest).resolve())
    else:
        entries, missing = ntu_entries(src, missing_list)  # type: ignore[arg-type]
        ntu, source = True, str(Path(src).resolve())  # type: ignore[arg-type]
    if not entries:
        raise PrepareError(f"{source}: no samples found")
    num_classes, class_names = _classes(entries, ntu, Path(source) if ntu else None)
    if class_names is not None and any(int(e.label) >= len(class_names) for e in entries):
        raise PrepareError(
            f"{source}: a sample's label is outside the {len(class_names)} classes of classes.json"
        )
    try:
        cfg = opts.cache_config(source, num_classes)
    except ValueError as exc:
        raise PrepareError(str(exc)) from exc
    cfg.class_names = class_names
    _open_config(out, cfg)
    remove_stale_temps(out, opts.modalities)  # left by a killed run on this host
    C.write_sample_list(out, [e.sample for e in entries])
    return entries, missing


def prepare_cache(
    out: str | os.PathLike,
    src: str | os.PathLike | None = None,
    *,
    manifest: str | os.PathLike | None = None,
    options: PrepareOptions | None = None,
    workers: int = 0,
    shard: tuple[int, int] | None = None,
    missing_list: str | os.PathLike | None = None,
    fallback_per_group: int = 0,
    progress: bool = False,
    limit: int | None = None,
) -> PrepareResult:
    """Prepare every sample of ``src`` (NTU layout) or ``manifest`` into the cache folder ``out``.

    Resumable: samples with an index record and all their arrays are skipped. ``shard=(i, n)`` processes
    ``sorted(names)[i::n]`` and writes ``index.shard-i-of-n.jsonl`` / ``failures.shard-i-of-n.jsonl``; readers
    merge every index part, so shards need no merge step. ``limit`` keeps the first ``limit`` samples of the
    shard (sorted), for quick trials. Raises `PrepareError` when the job cannot start; per-sample problems
    become `PrepareResult.failures` (also written to the failures file).
    """
    t0 = time.perf_counter()
    opts = options or PrepareOptions()
    out = Path(out)
    entries, missing = _open_job(out, src, manifest, opts, missing_list)

    by_name = {e.sample: e for e in entries}
    mine = C.select_shard(list(by_name), shard)
    if limit is not None:
        mine = mine[:limit]
    res = PrepareResult(total=len(mine))
    done = set()
    if C.index_files(out):
        done = {r["name"] for r in C.read_index(out) if C.is_complete(out, r["name"], opts.modalities)}
    todo = [by_name[n] for n in mine if n not in done]
    res.skipped = [n for n in mine if n in done]

    with (
        C.JsonlAppender(C.index_path(out, shard)) as index,
        C.JsonlAppender(C.failures_path(out, shard), truncate=True) as fails,
    ):

        def consume(results: Iterable) -> list[tuple[str, str]]:
            deferred = []
            for r in results:
                if r[0] == "ok":
                    index.append(r[1])
                    res.done.append(r[1]["name"])
                    if r[1]["alignment"]["method"] == "fallback":
                        res.fallback.append(r[1]["name"])
                elif r[0] == "fail":
                    fails.append(r[1])
                    res.failures.append(r[1])
                else:
                    deferred.append((r[1], r[2]))
            return deferred

        tasks = [(e, str(out), opts, missing, None) for e in todo]
        deferred = consume(run_tasks(_sample_worker, tasks, workers, progress, "prepare", _sample_died))
        if deferred:
            table = _load_table(out, entries, workers, fallback_per_group, progress)
            tasks = [(by_name[n], str(out), opts, missing, table) for n, _ in sorted(deferred)]
            desc = "prepare (fallback alignment)"
            consume(run_tasks(_sample_worker, tasks, workers, progress, desc, _sample_died))
    res.seconds = time.perf_counter() - t0
    return res
