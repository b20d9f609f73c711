"""`modistill prepare`: decode, align, crop and resize every sample once into the prepared cache.

The job: list the samples (`modistill.data.sources`: NTU-layout root, manifest, UCF101/HMDB51 tree), skip
those already complete (resume), keep this shard's subset, run `prepare_sample` on each in worker processes,
append index records as they finish, and defer the samples without a usable skeleton until the fallback
alignment table is built (from the skeletons of the whole source, so every shard gets the same table).
Failures never stop the job: each is written to the failures file with its stage and error (which names the
file and the problem), and `PrepareResult.exit_status` is 3 when any sample failed; the warnings of the
finished samples are listed in the warnings file. Layout and crash safety: `modistill.data.cache`.

Retrying: a cache whose ``cache_config.json`` records other settings is refused only when it already holds
finished samples (the message says how to resume, where else to write, or ``restart=True`` / ``--restart``,
which deletes what `prepare` wrote there first); a cache with no finished sample (a first run that failed
or was interrupted early) simply takes the new settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from modistill.core.atomic import remove_stale_temps
from modistill.core.errors import SchemaError

from . import cache as C
from .manifest import ManifestEntry
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
from .records import FailureRecord, WarningRecord
from .sources import MISSING_LIST_NAMES, Source, SourceError, list_source, manifest_entries, ntu_entries

__all__ = [
    "ALIGNMENTS",
    "EXIT_FAILURES",
    "MISSING_LIST_NAMES",
    "AlignmentTable",
    "PrepareError",
    "PrepareOptions",
    "PrepareResult",
    "SampleFailure",
    "Source",
    "build_alignment_table",
    "manifest_entries",
    "ntu_entries",
    "prepare_cache",
    "prepare_sample",
]


@dataclass
class PrepareResult:
    """Outcome of one `prepare_cache` run (of one shard)."""

    total: int = 0  # samples in this shard
    skipped: list[str] = field(default_factory=list)  # already complete from an earlier run
    done: list[str] = field(default_factory=list)  # prepared by this run
    fallback: list[str] = field(default_factory=list)  # prepared with the fallback alignment
    failures: list[FailureRecord] = field(default_factory=list)
    warnings: list[WarningRecord] = field(default_factory=list)  # of the shard's finished samples
    notes: list[str] = field(default_factory=list)  # about the source or the cache folder, for the user
    modalities: tuple[str, ...] = ()  # what was built
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


# ---------------------------------------------------------------------------------------------------- job


def _open_config(out: Path, cfg: C.CacheConfig, restart: bool, notes: list[str]) -> None:
    """Write ``cache_config.json``, or check it against ``cfg`` (see the module docstring: retrying)."""
    path = out / C.CONFIG_NAME
    if restart and out.is_dir():
        n = C.clear_cache(out)
        notes.append(f"--restart: deleted {n} file(s) that an earlier prepare wrote into {out}")
    if path.is_file():
        try:
            have: C.CacheConfig | None = C.load_config(out)
        except C.CacheError:
            have = None  # unreadable: replaced below if nothing was finished with it
        diff = have.mismatches(cfg) if have is not None else ["the existing config is unreadable"]
        if not diff and have is not None:
            # Same content: keep what other passes recorded (flow), update where the data is and its classes.
            keys = ("source", "source_path", "source_split", "source_split_dir", "num_classes", "class_names")
            new = replace(have, **{k: getattr(cfg, k) for k in keys})
            if (have.source, have.source_path) != (cfg.source, cfg.source_path):
                notes.append(
                    f"{path} recorded source {have.source} {have.source_path!r}; "
                    f"this run reads {cfg.source} {cfg.source_path!r} (recorded now)"
                )
            if new != have:
                new.write(path)
            return
        if not C.has_finished_samples(out):
            notes.append(
                f"{path}: no sample was finished with the old settings ({'; '.join(diff)}); replaced"
            )
        else:
            n = len(C.read_index(out))
            raise PrepareError(
                f"{path}: this cache holds {n} sample(s) prepared with other settings ({'; '.join(diff)}). "
                "Re-run with the cache's settings to resume, write to another folder, or add --restart "
                "(restart=True) to delete what prepare wrote there and start again with the new settings"
            )
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


def _source_of(
    src: str | os.PathLike | None,
    manifest: str | os.PathLike | None,
    layout: str | None,
    split: int | None,
    split_dir: str | os.PathLike | None,
    classes: str | os.PathLike | None,
    missing_list: str | os.PathLike | None,
) -> Source:
    if (src is None) == (manifest is None):
        raise PrepareError(
            "give exactly one of a source folder (NTU layout, or UCF101/HMDB51 with --layout) or a manifest file"
        )
    if classes is not None and manifest is None:
        raise PrepareError(
            "--classes FILE names the classes of a manifest; NTU, UCF101 and HMDB51 name their own"
        )
    if layout is not None and manifest is not None:
        raise PrepareError("--layout ucf101|hmdb51 reads a class-folder tree given as SRC, not a manifest")
    if layout is None and (split is not None or split_dir is not None):
        raise PrepareError("--split/--split-dir choose the official split of --layout ucf101|hmdb51")
    opt = lambda p: None if p is None else Path(p)  # noqa: E731
    try:
        if manifest is not None:
            return Source("manifest", Path(manifest), classes=opt(classes))
        if layout is not None:
            return Source(layout, Path(src), split=split, split_dir=opt(split_dir))  # type: ignore[arg-type]
        return Source("ntu", Path(src), missing_list=opt(missing_list))  # type: ignore[arg-type]
    except SourceError as exc:
        raise PrepareError(str(exc)) from exc


def _open_job(out: Path, source: Source, opts: PrepareOptions, restart: bool, notes: list[str]):
    """Check the arguments, list the source, choose the modalities, create or check ``cache_config.json``,
    clean up after a killed run and write ``samples.txt``: (entries of the whole source, missing-skeleton
    names, the resolved options)."""
    if opts.alignment not in ALIGNMENTS:
        raise PrepareError(f"alignment must be one of {ALIGNMENTS}, got {opts.alignment!r}")
    try:
        listing = list_source(source)
    except SourceError as exc:
        raise PrepareError(str(exc)) from exc
    notes.extend(listing.notes)
    entries = listing.entries
    if not entries:
        raise PrepareError(f"{source.path}: no samples found")
    with_depth = sum(e.depth is not None for e in entries)
    if opts.modalities is None:  # as the data has them: depth when the source has it
        opts = replace(opts, modalities=("rgb", "depth") if with_depth else ("rgb",))
    elif "depth" in opts.modalities and not with_depth:
        raise PrepareError(
            f"{source.path}: no sample has depth ({source.kind} source); prepare it with --modalities rgb"
        )
    try:
        cfg = opts.cache_config(listing.num_classes, **source.record())
    except ValueError as exc:
        raise PrepareError(str(exc)) from exc
    cfg.class_names = listing.class_names
    _open_config(out, cfg, restart, notes)
    remove_stale_temps(out, opts.modalities or ())  # left by a killed run on this host
    C.write_sample_list(out, [e.sample for e in entries])
    return entries, listing.missing, opts


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
    layout: str | None = None,
    split: int | None = None,
    split_dir: str | os.PathLike | None = None,
    classes: str | os.PathLike | None = None,
    restart: bool = False,
) -> PrepareResult:
    """Prepare every sample of ``src`` (NTU layout; UCF101/HMDB51 tree with ``layout`` and official
    ``split`` N, split files in ``split_dir``, default inside ``src``) or ``manifest`` (with an optional
    ``classes`` file) into the cache folder ``out``.

    Resumable: samples with an index record and all their arrays are skipped. ``shard=(i, n)`` processes
    ``sorted(names)[i::n]`` and writes ``index.shard-i-of-n.jsonl`` / ``failures.shard-i-of-n.jsonl``; readers
    merge every index part, so shards need no merge step. ``limit`` keeps the first ``limit`` samples of the
    shard (sorted), for quick trials. ``restart`` deletes what an earlier prepare wrote into ``out`` first.
    Raises `PrepareError` when the job cannot start; per-sample problems become `PrepareResult.failures`
    (also written to the failures file).
    """
    t0 = time.perf_counter()
    out = Path(out)
    source = _source_of(src, manifest, layout, split, split_dir, classes, missing_list)
    res = PrepareResult()
    entries, missing, opts = _open_job(out, source, options or PrepareOptions(), restart, res.notes)
    res.modalities = tuple(opts.modalities or ())

    by_name = {e.sample: e for e in entries}
    mine = C.select_shard(list(by_name), shard)
    if limit is not None:
        mine = mine[:limit]
    res.total = len(mine)
    done = set()
    if C.index_files(out):
        done = {r["name"] for r in C.read_index(out) if C.is_complete(out, r["name"], res.modalities)}
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
    res.warnings = C.write_warnings(out, shard)
    res.seconds = time.perf_counter() - t0
    return res
