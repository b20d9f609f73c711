"""`modistill prepare --flow`: add optical flow to an existing prepared cache (motion distillation, REF §6).

For every sample already in the cache index, the flow at each cached frame is computed on the *same* source
frames and the *same* crop as the cached RGB, so flow and RGB stay pixel-aligned:

- frames: the record's ``source_frames`` (0-based source indices of the F cached frames); cached frame k
  holds the flow of pairs (i, i+1) ... (i+L-1, i+L) with i = source_frames[k] (`flow.flow_pair_starts`:
  pair starts past the video's last pair repeat it);
- crop: recomputed from the record's ``alignment`` and the cache settings (``extra.alignment``,
  ``extra.keep_aspect``) with `align.aligned_crop_geometry`, the function `crop_aligned` uses for the RGB
  crop; caches without depth resize the whole frame, as `prepare_sample` does. The RGB crop box does not
  depend on the depth frame size (the intersection's colour-side edges are ``b + a * w`` with
  ``a ∝ 1 / w``), so no depth file is read;
- resolution: frames are cropped, resized to ``compute_size`` (default: the cache side S, INTER_AREA, as
  the RGB) and the flow is computed there; the stored flow is always in pixels of the S x S crop
  (`flow.prepare_flow_sample`).

Stored as ``<cache>/flow/<sample>.npy`` uint8 ``(F, S, S, 2L)`` (quantised with bound 20 px by default, REF §6;
``bound`` / ``--flow-bound`` changes it), written atomically. ``cache_config.json`` lists ``"flow"`` among its
modalities and records the settings under ``extra.flow`` = {method, stack, bound, compute_size, params}
(`CacheConfig.flow_bound`); a second run with other settings is refused once flow arrays exist (before that,
the new settings replace the recorded ones). The videos are found through the source the cache records
(`sources.Source.from_config`: NTU root, manifest, UCF101/HMDB51 split files) unless ``src``/``manifest``
override it.
Resumable (samples whose flow file exists are skipped), sharded (``shard=(i, n)`` takes
``sorted(names)[i::n]``) and parallel (worker processes); failures never stop the job: each goes to
``flow_failures[.shard-i-of-n].jsonl`` with the stage and the error (naming the file), and
`FlowResult.exit_status` is 3 when any failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import cache as C
from .align import Alignment, AlignmentError, aligned_crop_geometry
from .flow import FLOW_BOUND, FLOW_METHODS, flow_cache_path, prepare_flow_sample, write_flow
from .pool import run_tasks
from .prepare_sample import EXIT_FAILURES, PrepareError
from .records import FailureRecord
from .sources import Source, SourceError, list_source
from .video import VideoReadError

__all__ = [
    "FlowOptions",
    "FlowResult",
    "CropSpec",
    "crop_spec",
    "prepare_flow",
    "flow_failures_path",
    "read_flow_failures",
    "flow_settings",
]

FLOW_KEY = "flow"  # the modality name and the key of the settings in cache_config.json "extra"


@dataclass(frozen=True)
class FlowOptions:
    """How flow is computed (all of it is recorded in ``cache_config.json`` under ``extra.flow``).

    method: ``"tvl1"`` (default, the MARS/I3D estimator), ``"dis"`` or ``"farneback"`` (20-100x cheaper,
        docs/motion.md has the measured costs). params: estimator keywords (`flow.compute_flow`).
    stack: L flow fields stacked per cached frame (2L channels). compute_size: side the flow is computed at
        (None: the cache side S). bound: quantisation clip in pixels (20, REF §6).
    """

    method: str = "tvl1"
    stack: int = 1
    compute_size: int | None = None
    bound: float = FLOW_BOUND
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.method not in FLOW_METHODS:
            raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {self.method!r}")
        if self.stack < 1:
            raise ValueError(f"flow stack L must be >= 1, got {self.stack}")
        if self.compute_size is not None and self.compute_size < 8:
            raise ValueError(f"flow compute_size must be >= 8 pixels, got {self.compute_size}")
        if not self.bound > 0:
            raise ValueError(f"flow bound must be > 0, got {self.bound}")

    def record(self, size: int) -> dict[str, Any]:
        """The settings as stored in ``cache_config.json`` (``compute_size`` resolved against the side S)."""
        return {
            "method": self.method,
            "stack": int(self.stack),
            "bound": float(self.bound),
            "compute_size": int(self.compute_size or size),
            "params": {k: v for k, v in sorted(self.params)},
        }


@dataclass
class FlowResult:
    """Outcome of one `prepare_flow` run (of one shard)."""

    total: int = 0
    skipped: list[str] = field(default_factory=list)  # flow file already present
    done: list[str] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return EXIT_FAILURES if self.failures else 0


@dataclass(frozen=True)
class CropSpec:
    """How a sample's RGB frames were cropped by `prepare_sample` (plain data, so it pickles to workers).

    mode: ``"aligned"`` (skeleton or fallback alignment), ``"registered"`` (depth stretched over the whole RGB
    frame) or ``"resize"`` (a cache without depth: the whole frame is resized).
    """

    mode: str
    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    keep_aspect: bool = False

    def crop_fn(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """``(n, H, W, 3) -> (n, h, w, 3)`` integer crop of the RGB box, or None for ``"resize"``."""
        if self.mode == "resize":
            return None
        a = Alignment(scale=self.scale, tx=self.tx, ty=self.ty, method=self.mode)
        boxes: dict[tuple[int, int], tuple[int, int, int, int]] = {}

        def crop(frames: np.ndarray) -> np.ndarray:
            hw = (int(frames.shape[1]), int(frames.shape[2]))
            if hw not in boxes:
                kw: dict[str, Any] = {"keep_aspect": self.keep_aspect}
                if self.mode == "registered":
                    kw.update(nominal_color=(hw[1], hw[0]), nominal_depth=(hw[1], hw[0]))
                # The colour-side box is independent of the depth size (see the module docstring).
                boxes[hw] = aligned_crop_geometry(hw, hw, a, **kw).rgb_box
            x0, y0, x1, y1 = boxes[hw]
            return frames[:, y0:y1, x0:x1]

        return crop


def crop_spec(record: dict[str, Any], config: C.CacheConfig) -> CropSpec:
    """The crop `prepare_sample` applied to ``record``'s RGB frames (from its index record and the config)."""
    keep = bool(config.extra.get("keep_aspect", False))
    if "depth" not in config.modalities:
        return CropSpec("resize")
    if config.extra.get("alignment") == "registered":
        return CropSpec("registered", keep_aspect=keep)
    a = record.get("alignment") or {}
    if any(a.get(k) is None for k in ("scale", "tx", "ty")):
        raise ValueError(f"index record of {record.get('name')}: no usable alignment {a}")
    return CropSpec("aligned", float(a["scale"]), float(a["tx"]), float(a["ty"]), keep)


def flow_failures_path(root: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    """``<cache>/flow_failures[.shard-i-of-n].jsonl``: kept apart from the RGB/depth failures file."""
    return Path(root) / f"flow_failures{C.shard_suffix(shard)}.jsonl"


def read_flow_failures(root: str | os.PathLike) -> list[FailureRecord]:
    """Failure records of the last flow run of every shard."""
    root = Path(root)
    out: list[FailureRecord] = []
    for p in sorted(root.glob("flow_failures*.jsonl")):
        out.extend(cast(list[FailureRecord], C.read_jsonl(p)))
    return out


def flow_settings(root: str | os.PathLike) -> dict[str, Any] | None:
    """The flow settings recorded in ``<root>/cache_config.json`` (None when the cache has no flow)."""
    cfg = C.load_config(root)
    return cfg.extra.get(FLOW_KEY) if FLOW_KEY in cfg.modalities else None


# ------------------------------------------------------------------------------------------- sources


def _video_paths(
    cfg: C.CacheConfig,
    names: Sequence[str],
    src: str | os.PathLike | None,
    manifest: str | os.PathLike | None,
) -> dict[str, Path | str]:
    """Sample name -> RGB video (or why there is none), from ``src`` / ``manifest`` or else the source the
    cache records."""
    if src is not None and manifest is not None:
        raise PrepareError("give at most one of a source folder and a manifest file")
    try:
        if manifest is not None:
            source = Source("manifest", Path(manifest))
        elif src is not None:
            # The recorded kind (NTU or a UCF101/HMDB51 tree) at the given place (the data may have moved).
            rec = Source.from_config(cfg) if cfg.source in ("ucf101", "hmdb51") else None
            split_dir = (
                rec.split_dir if rec is not None and rec.split_dir and rec.split_dir.exists() else None
            )
            source = Source(cfg.source if rec else "ntu", Path(src), rec.split if rec else None, split_dir)
        else:
            source = Source.from_config(cfg)
        if not source.path.exists():
            raise SourceError(
                f"{source.path}: source not found (the data may have moved: pass SRC or --manifest)"
            )
        if source.kind == "ntu":  # the path is known from the name: a missing video fails naming it
            return {n: source.path / "nturgb+d_rgb" / f"{n}_rgb.avi" for n in names}
        entries = {e.sample: e.rgb for e in list_source(source).entries}
    except SourceError as exc:
        raise PrepareError(str(exc)) from exc
    except OSError as exc:
        raise PrepareError(f"{manifest or src or cfg.source_path}: cannot read the source ({exc})") from exc
    # A sample absent from the source is reported as a failure naming it, not silently skipped.
    return {
        n: Path(entries[n]) if n in entries else f"{source.path}: sample {n} is not listed" for n in names
    }


def _open_flow_config(root: Path, opts: FlowOptions) -> C.CacheConfig:
    """Record flow in ``cache_config.json``, or check that the recorded settings match ``opts``."""
    cfg = C.load_config(root)
    want = opts.record(cfg.size)
    have = cfg.extra.get(FLOW_KEY)
    flow_dir = root / FLOW_KEY
    if have is not None and have != want and not (flow_dir.is_dir() and any(flow_dir.glob("*.npy"))):
        have = None  # no flow array was written with the recorded settings: take the new ones
    if have is not None:
        if have != want:
            diff = "; ".join(
                f"{k}: {have.get(k)!r} (cache) vs {want[k]!r} (requested)"
                for k in want
                if have.get(k) != want[k]
            )
            raise PrepareError(
                f"{root / C.CONFIG_NAME}: the cache holds flow computed with other settings ({diff}); use the "
                f"same settings, or delete the folder {flow_dir} and run again (the recorded settings are "
                "replaced when no flow array exists)"
            )
        if FLOW_KEY in cfg.modalities:
            return cfg
    cfg.extra = {**cfg.extra, FLOW_KEY: want}
    if FLOW_KEY not in cfg.modalities:
        cfg.modalities = (*cfg.modalities, FLOW_KEY)
    cfg.write(root / C.CONFIG_NAME)
    return cfg


# --------------------------------------------------------------------------------------------- workers


def _flow_worker(task: tuple[str, str, list[int], CropSpec, int, FlowOptions, str]) -> tuple[str, Any]:
    """Never raises: ("ok", name) | ("fail", FailureRecord)."""
    name, video, indices, spec, size, opts, out = task
    stage = "rgb"
    try:
        if not Path(video).exists():
            raise FileNotFoundError(f"{video}: video not found")
        arr = prepare_flow_sample(
            video,
            indices,
            size,
            opts.method,
            opts.stack,
            crop_fn=spec.crop_fn(),
            compute_size=opts.compute_size,
            bound=opts.bound,
            **dict(opts.params),
        )
        expect = (len(indices), size, size, 2 * opts.stack)
        if arr.shape != expect:  # pragma: no cover - prepare_flow_sample guarantees it
            raise ValueError(f"{video}: flow of shape {arr.shape}, expected {expect}")
        stage = "write"
        write_flow(out, name, arr)
    except (FileNotFoundError, VideoReadError, AlignmentError, ValueError, OSError, C.CacheError) as exc:
        return ("fail", FailureRecord(sample=name, stage=stage, error=str(exc)))
    except Exception as exc:  # noqa: BLE001 - one bad sample must not stop the job; the error is recorded
        return ("fail", FailureRecord(sample=name, stage="unexpected", error=f"{type(exc).__name__}: {exc}"))
    return ("ok", name)


def _worker_died(task: tuple, exc: BaseException) -> tuple[str, Any]:
    return ("fail", FailureRecord(sample=task[0], stage="worker", error=f"worker process died ({exc})"))


def prepare_flow(
    cache: str | os.PathLike,
    src: str | os.PathLike | None = None,
    *,
    manifest: str | os.PathLike | None = None,
    options: FlowOptions | None = None,
    workers: int = 0,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    limit: int | None = None,
) -> FlowResult:
    """Compute ``<cache>/flow/<sample>.npy`` for every sample in the cache index (see the module docstring).

    ``src`` / ``manifest`` locate the RGB videos (default: the source recorded in ``cache_config.json``).
    Raises `PrepareError` when the job cannot start (no cache, other flow settings recorded, no source);
    per-sample problems become `FlowResult.failures` (also written to the flow failures file).
    """
    t0 = time.perf_counter()
    opts = options or FlowOptions()
    root = Path(cache)
    try:
        cfg = _open_flow_config(root, opts)
        records = C.read_index(root)
    except C.CacheError as exc:
        raise PrepareError(str(exc)) from exc
    by_name = {r["name"]: r for r in records}
    mine = C.select_shard(list(by_name), shard)
    if limit is not None:
        mine = mine[:limit]
    res = FlowResult(total=len(mine))
    res.skipped = [n for n in mine if flow_cache_path(root, n).is_file()]
    have = set(res.skipped)
    todo = [n for n in mine if n not in have]
    videos = _video_paths(cfg, todo, src, manifest) if todo else {}
    tasks = []
    with C.JsonlAppender(flow_failures_path(root, shard), truncate=True) as fails:

        def fail(record: FailureRecord) -> None:
            fails.append(record)
            res.failures.append(record)

        for n in todo:
            rec = by_name[n]
            if isinstance(videos[n], str):  # not in the manifest
                fail(FailureRecord(sample=n, stage="rgb", error=str(videos[n])))
                continue
            try:
                spec = crop_spec(rec, cfg)
                indices = [int(i) for i in rec["source_frames"]]
                if len(indices) != int(rec["frames"]):
                    raise ValueError(f"{len(indices)} source frames for a budget of F={rec['frames']}")
            except (KeyError, TypeError, ValueError) as exc:
                error = f"{root}: index record of {n}: {exc!r}"
                fail(FailureRecord(sample=n, stage="index", error=error))
                continue
            tasks.append((n, str(videos[n]), indices, spec, int(cfg.size), opts, str(root)))
        # The same spawned, single-threaded-OpenCV worker pool as `modistill prepare`.
        for kind, payload in run_tasks(_flow_worker, tasks, workers, progress, "flow", _worker_died):
            if kind == "ok":
                res.done.append(payload)
            else:
                fail(payload)
    res.done.sort()
    res.seconds = time.perf_counter() - t0
    return res
