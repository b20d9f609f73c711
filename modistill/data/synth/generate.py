"""Write synthetic samples in the exact NTU RGB+D layout, serially or in parallel, resumably.

Layout under ``root`` (docs/ARCHITECTURE.md "On-disk layouts"):
``nturgb+d_rgb/<sample>_rgb.avi``, ``nturgb+d_depth_masked/<sample>/MDepth-%08d.png`` (1-based),
``nturgb+d_skeletons/<sample>.skeleton``, ``synth_truth/<sample>.json``, plus ``classes.json`` and
``synth_config.json``. Every file (and the depth folder) is written under a temporary name and renamed into
place, so a file that exists under its final name is complete; a sample is complete when all four exist.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import av
import numpy as np

from modistill.core.atomic import remove_stale_temps, write_text_atomic

from ..depth import write_depth_frames
from ..skeleton import write_skeleton
from .actions import ACTIONS
from .config import SynthConfig, make_config, sample_names
from .sample import SampleData, synthesize

__all__ = ["generate_dataset", "generate_sample", "sample_paths", "is_complete", "write_sample"]

RGB_DIR, DEPTH_DIR = "nturgb+d_rgb", "nturgb+d_depth_masked"
SKELETON_DIR, TRUTH_DIR = "nturgb+d_skeletons", "synth_truth"
_TMP = ".tmp-"
# Keys of synth_config.json that do not change a sample's bytes (a dataset may be extended or resumed).
_NON_CONTENT_KEYS = ("subjects", "cameras", "replications", "subject_replications")


def sample_paths(root: str | Path, name: str) -> dict[str, Path]:
    """The four outputs of sample ``name`` under ``root``."""
    root = Path(root)
    return {
        "rgb": root / RGB_DIR / f"{name}_rgb.avi",
        "depth": root / DEPTH_DIR / name,
        "skeleton": root / SKELETON_DIR / f"{name}.skeleton",
        "truth": root / TRUTH_DIR / f"{name}.json",
    }


def is_complete(root: str | Path, name: str) -> bool:
    """All outputs of ``name`` exist (each appears only once fully written, see the module docstring)."""
    return all(p.exists() for p in sample_paths(root, name).values())


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}{_TMP}{os.getpid()}")


def write_video(path: Path, frames: np.ndarray, *, fps: int, codec: str = "mpeg4", quality: int = 4) -> None:
    """``(F, H, W, 3)`` uint8 RGB frames -> an AVI (NTU's container), no B-frames: one packet per frame.

    MPEG-4 part 2 by default: FFmpeg's own encoder gives the same bytes in every process. libx264 (what NTU
    used) is offered, but its output was found to differ between processes for identical frames (observed
    with PyAV 18's bundled x264, single-threaded), which would break "parallel == serial".
    """
    n, h, w, _ = frames.shape
    with av.open(str(path), mode="w", format="avi") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1  # samples are the unit of parallelism
        if codec == "libx264":
            stream.options = {"crf": str(quality), "preset": "veryfast", "bf": "0", "threads": "1"}
        else:
            # Constant quantiser: FFmpeg's CLI "-q:v" is no codec option, qmin = qmax is its equivalent.
            stream.options = {"qmin": str(quality), "qmax": str(quality), "bf": "0"}
        for img in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


def _write_json(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=None, separators=(",", ":")) + "\n")


def write_sample(
    root: str | Path, data: SampleData, *, fps: int = 30, codec: str = "mpeg4", quality: int = 4
) -> None:
    """Write one synthesized sample atomically (depth folder, video, skeleton, then the truth sidecar)."""
    paths = sample_paths(root, data.name)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp_depth = _tmp(paths["depth"])
    if tmp_depth.exists():
        shutil.rmtree(tmp_depth)
    write_depth_frames(tmp_depth, data.depth)
    if paths["depth"].exists():
        shutil.rmtree(paths["depth"])  # an older partial run's copy: replace it wholesale
    os.replace(tmp_depth, paths["depth"])
    tmp = _tmp(paths["rgb"])
    write_video(tmp, data.rgb, fps=fps, codec=codec, quality=quality)
    os.replace(tmp, paths["rgb"])
    write_skeleton(paths["skeleton"], data.skeleton)  # atomic itself
    _write_json(paths["truth"], data.truth)


def generate_sample(cfg: SynthConfig, root: str | Path, name: str, *, skip_complete: bool = True) -> bool:
    """Generate and write sample ``name``; returns False when it was already complete and skipped."""
    if skip_complete and is_complete(root, name):
        return False
    write_sample(root, synthesize(cfg, name), fps=cfg.fps, codec=cfg.codec, quality=cfg.quality)
    return True


def _check_or_write_config(root: Path, cfg: SynthConfig) -> None:
    """Refuse to mix datasets: an existing synth_config.json must match on everything that shapes samples."""
    path = root / "synth_config.json"
    new = cfg.to_dict()
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{path}: unreadable generator config ({e}); remove it or use a new folder"
            ) from e
        diff = sorted(
            k for k in set(old) | set(new) if k not in _NON_CONTENT_KEYS and old.get(k) != new.get(k)
        )
        if diff:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise ValueError(
                f"{path}: this folder was generated with different parameters ({detail}); "
                "generate into a new folder (or delete the old one) instead of mixing two datasets"
            )
        for k in _NON_CONTENT_KEYS:  # extending a dataset: record the union
            if isinstance(new.get(k), list):
                new[k] = sorted(set(old.get(k, [])) | set(new[k]))
            elif isinstance(new.get(k, old.get(k)), dict):
                merged = dict(old.get(k, {}))
                for s, r in new.get(k, {}).items():
                    merged[s] = max(int(merged.get(s, 0)), int(r))
                new[k] = dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
            elif k in new:
                new[k] = max(old.get(k, 0), new[k])
    _write_json(path, new)


def _classes_table(cfg: SynthConfig) -> dict[str, dict]:
    by_name = {a.name: a for a in ACTIONS}
    out = {}
    for i, name in enumerate(cfg.classes):
        a = by_name[name]
        out[str(i + 1)] = {
            "action": i + 1,
            "label": i,
            "name": a.name,
            "description": a.description,
            "kind": a.kind,
            "pair": a.pair if a.pair in cfg.classes else None,
        }
    return out


def _remove_stale_temps(root: Path) -> None:
    """Temporary files of killed runs (never read, but they would waste space): the video and depth-folder
    temporaries named by `_tmp`, and those of `modistill.core.atomic` (skeletons, JSON)."""
    remove_stale_temps(root, (SKELETON_DIR, TRUTH_DIR))
    for sub in (RGB_DIR, DEPTH_DIR, SKELETON_DIR, TRUTH_DIR, ""):
        d = root / sub
        if not d.is_dir():
            continue
        for p in d.glob(f"*{_TMP}*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


_WORKER_CFG: SynthConfig | None = None
_WORKER_ROOT: Path | None = None


def _init_worker(cfg_dict: dict, root: str) -> None:
    global _WORKER_CFG, _WORKER_ROOT
    import cv2

    cv2.setNumThreads(1)  # parallelism is across samples
    _WORKER_CFG = SynthConfig.from_dict(cfg_dict)
    _WORKER_ROOT = Path(root)


def _work(name: str) -> tuple[str, bool]:
    assert _WORKER_CFG is not None and _WORKER_ROOT is not None
    return name, generate_sample(_WORKER_CFG, _WORKER_ROOT, name, skip_complete=False)


def generate_dataset(
    root: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    workers: int = 1,
    rgb_size: tuple[int, int] = (320, 180),
    depth_size: tuple[int, int] = (128, 106),
    classes: list[str | int] | int | None = None,
    *,
    progress: bool = False,
    **overrides,
) -> list[str]:
    """Generate a synthetic NTU-layout dataset under ``root`` and return all its sample names (sorted).

    ``preset``: "tiny" (12 short samples, seconds), "small" (144), "demo" (288 = 12 classes x 8 subjects x 3
    cameras). ``overrides`` set any :class:`SynthConfig` field (``subjects``, ``cameras``, ``setups``,
    ``replications``, ``frames``, ``missing_skeleton_rate``, ``noise_body_rate``, ``rgb_noise``, ``codec``,
    ``quality``, ``position_jitter_m``, ``yaw_jitter_deg``, ``fps``, ``subject_replications``). Samples are a pure
    function of ``(seed, name)``, so ``workers > 1`` (processes) writes the same bytes as a serial run; complete
    samples are skipped, so an interrupted run resumes. ``progress=True`` shows a tqdm bar. Workers are *spawned*
    processes (they never inherit the caller's threads, e.g. torch's), so scripts calling this with ``workers > 1``
    need the usual ``if __name__ == "__main__":`` guard.
    """
    cfg = make_config(preset, seed, rgb_size, depth_size, classes, **overrides)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_or_write_config(root, cfg)
    _write_json(root / "classes.json", _classes_table(cfg))
    _remove_stale_temps(root)
    names = sample_names(cfg)
    todo = [n for n in names if not is_complete(root, n)]
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(names), initial=len(names) - len(todo), unit="sample", desc="synth")
    tick = (lambda: bar.update(1)) if bar is not None else (lambda: None)
    try:
        if workers <= 1 or len(todo) <= 1:
            for n in todo:
                generate_sample(cfg, root, n, skip_complete=False)
                tick()
        else:
            # spawn: workers never inherit the parent's threads (torch, OpenCV pools) mid-operation.
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(todo)), _init_worker, (cfg.to_dict(), str(root))) as pool:
                for _ in pool.imap_unordered(_work, todo, chunksize=1):
                    tick()
    finally:
        if bar is not None:
            bar.close()
    return names
