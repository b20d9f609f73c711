"""`CachedClipDataset`: the torch Dataset over a prepared cache (see `modistill.data.cache`).

An item is ``{"rgb": (T, 3, S, S) float32, "depth": (T, 3, S, S) float32, "label": int64 scalar tensor,
"sample": str, "index": int}`` (one key per requested modality). Choices, with their sources:

- Frames: ``T`` (default 5, REF §3) indices among the ``F`` frames kept in the cache, from
  `modistill.data.sampling.sample_indices`: ``"train"`` mode in training (the released code's even/random
  mix, REF §4), ``"even"`` otherwise; the SAME indices for every modality of a sample (REF §4).
- Flip: training only, one horizontal flip with p = 0.5 shared by all modalities (`sampling.maybe_flip`,
  REF §4); flow modalities are flipped by `flow.flip_flow`, which negates every x channel of stacked flow.
- Normalisation: `normalize.normalize_frames`, plain ``(x / 255 - mean) / std`` with the ImageNet mean/std
  (torchvision's values) for RGB and for the encoded depth too, since the depth stream is ImageNet-initialised
  (REF §4). No clipping: REF §4 notes that a clipped mean subtraction once kept an RGB stream from learning.
  Flow (uint8, bound 20 px) becomes ``(q - 127.5) / 127.5`` in [-1, 1] (`flow.flow_to_tensor`).
- Output (``output``): ``"float"`` (default) returns the normalised float32 items above. ``"uint8"`` returns
  the frames as cached, uint8 ``(T, S, S, C)`` (flip and frame choice already applied, so the randomness is
  the same), and ``device_transform`` (`normalize.BatchNormalizer`) normalises a collated batch where it is,
  to the same values: the training engine applies a dataset's ``device_transform`` right after moving each
  batch to the device. Batches then cross to the GPU as uint8 (a quarter of the bytes, pinned, non-blocking)
  and the loader workers do no float work.
- Determinism: the randomness of item ``i`` comes from ``np.random.default_rng([seed, epoch, i])``, so it
  does not depend on DataLoader workers or on the order items are read; call ``set_epoch(e)`` before each
  epoch (a resumed run then sees exactly the samples/augmentations of an uninterrupted one). With
  ``persistent_workers=True`` the workers keep the dataset copy they started with, so use non-persistent
  workers (the default) or recreate the loader after ``set_epoch``.
- ``clips_per_video=C`` (evaluation): each video yields C items, clip ``c`` taking the frames
  ``floor((j + (c + 0.5) / C) * F / T)``, j = 0..T-1 (C evenly offset copies of the "even" sampling; C = 1
  is exactly "even"). Items of one video are consecutive (``index // C`` is the video) and share
  ``"sample"``, so an evaluator can average their logits per sample. Training draws every clip at random.
- Splits: ``split`` in "train"/"val"/"test" under a `splits.SplitRule` (``protocol`` names one with its
  defaults): NTU protocols on an NTU-layout cache split the names of ``<cache>/samples.txt`` (all source
  samples, written by `modistill prepare`; the paper's validation rules), so a failed sample never shifts the
  cross-view validation draw; every other case (manifests, UCF101/HMDB51, the ``manifest``/``subjects``/
  ``views`` protocols) splits by the index records' own fields (`modistill.data.splits`). A sample of the
  source that is not in the cache is an error (``on_missing="error"``) or skipped with a warning (``"skip"``).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import cache as C
from . import normalize as N
from .normalize import IMAGENET_MEAN, IMAGENET_STD  # torchvision's values, shared with predict/export
from .sampling import flip_arrays, maybe_flip, sample_indices
from .splits import SPLITS, Selection, SplitRule, cache_split

# Memory maps a dataset keeps open (per process), the least recently used closed first. Opening the map for
# every item (path checks, header parse, mmap) cost 15x copying its frames out (0.20 vs 0.013 ms per array on
# the demo's 64 px cache; benchmarks/data_throughput.py). Bounded, far below Linux's default vm.max_map_count
# (65530), so a dataset of NTU's size (56,880 videos x 2 modalities) never holds a map per file.
OPEN_MAPS = 1024


def _norm_stats(modality: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of a modality's normalisation: ImageNet for 3-channel images, 0.5 for flow."""
    if modality.startswith("flow"):
        return (0.5,) * channels, (0.5,) * channels
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    raise ValueError(f"modality {modality!r}: no normalisation defined for {channels} channels")


def clip_indices(num_frames: int, k: int, clip: int, clips: int) -> np.ndarray:
    """Evaluation frame indices ``(k,)`` int64 of clip ``clip`` of ``clips`` over ``N = num_frames``:
    ``floor((j + (clip + 0.5) / clips) * N / k)``; ``clips == 1`` equals `sample_indices(N, k, "even")`.
    """
    if not 0 <= clip < clips:
        raise ValueError(f"clip must be in [0, {clips}), got {clip}")
    j = np.arange(k, dtype=np.float64)
    idx = np.floor((j + (clip + 0.5) / clips) * num_frames / k).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


class CachedClipDataset(Dataset):
    """Clips of ``frames`` frames from a prepared cache.

    Args:
        root: the cache folder (``cache_config.json``, ``index*.jsonl``, ``<modality>/<sample>.npy``).
        split: "train" | "val" | "test" under ``rule`` (or ``protocol``), or None for every cached sample.
        protocol: a protocol of `modistill.data.splits` with its default settings ("xsub", "xview", "xsub120",
            "xset120", "manifest"); ignored when ``rule`` is given.
        rule: the full split rule (`splits.SplitRule`: held-out subjects or views, validation, seed).
        frames: T, frames per clip.
        train: training mode (random "train" sampling + shared flip) or evaluation (deterministic).
        modalities: batch keys to load, each a cached modality.
        seed: base seed of the per-item generators.
        clips_per_video: evaluation clips per video (see module docstring).
        samples: an explicit list of sample names (instead of ``split``), e.g. for users' own splits.
        sampling: override the frame sampling mode (default "train" when training, else "even").
        flip_p: flip probability in training (0 disables).
        on_missing: "error" | "skip" for split samples absent from the cache.
        check_files: verify at construction that every array file exists (a clear error instead of a failure
            in a DataLoader worker mid-epoch).
        output: "float" (normalised items) or "uint8" (raw frames + ``device_transform``; module docstring).

    Attributes: ``num_classes``; ``labels`` (per item, ``len(labels) == len(self)``); ``records`` (the index
    records of the videos); ``samples`` (video names); ``config`` (`CacheConfig`); ``device_transform``
    (`normalize.BatchNormalizer` with ``output="uint8"``, else None).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        protocol: str = "xsub",
        frames: int = 5,
        train: bool = False,
        modalities: Sequence[str] = ("rgb", "depth"),
        seed: int = 0,
        *,
        clips_per_video: int = 1,
        samples: Sequence[str] | None = None,
        sampling: str | None = None,
        flip_p: float = 0.5,
        on_missing: str = "error",
        check_files: bool = True,
        rule: SplitRule | None = None,
        output: str = "float",
    ) -> None:
        self.root = Path(root)
        self.config = C.load_config(self.root)
        self.modalities = tuple(modalities)
        unknown = [m for m in self.modalities if m not in self.config.modalities]
        if unknown:
            raise C.CacheError(
                f"{self.root / C.CONFIG_NAME}: modalities {unknown} are not in this cache "
                f"(it holds {list(self.config.modalities)})"
            )
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        rule = rule if rule is not None else SplitRule(protocol)
        if on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        if frames < 1 or clips_per_video < 1:
            raise ValueError(f"frames and clips_per_video must be >= 1, got {frames}, {clips_per_video}")
        self.frames, self.train, self.seed = int(frames), bool(train), int(seed)
        self.clips_per_video = int(clips_per_video)
        self.sampling = sampling or ("train" if train else "even")
        self.flip_p = float(flip_p) if train else 0.0
        self.protocol, self.rule, self.split = rule.protocol, rule, split
        self.epoch = 0
        self._maps: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._set_output(output)

        by_name = {r["name"]: r for r in C.read_index(self.root)}
        sel = self._select(by_name, split, rule, samples)
        self.split_notes = sel.notes
        if sel.absent:
            _report_absent(self.root, split, sel, on_missing)
        self.records: list[dict[str, Any]] = [by_name[n] for n in sel.names if n in by_name]
        if not self.records and not sel.allow_empty:
            raise C.CacheError(
                f"{self.root}: split {split!r} of protocol {rule.protocol!r} has no cached samples"
            )
        if check_files:
            for rec in self.records:
                for m in self.modalities:
                    if not C.array_path(self.root, m, rec["name"]).is_file():
                        raise C.CacheError(
                            f"{C.array_path(self.root, m, rec['name'])}: cached {m} array of sample "
                            f"{rec['name']} is missing although the index lists it (re-run "
                            "`modistill prepare`)"
                        )
        self.samples = [r["name"] for r in self.records]
        labels = [int(r["label"]) for r in self.records]
        self.num_classes = int(self.config.num_classes or (max(labels, default=-1) + 1))
        self.labels = [lab for lab in labels for _ in range(self.clips_per_video)]

    def _select(
        self, by_name: dict[str, dict], split: str | None, rule: SplitRule, samples: Sequence[str] | None
    ) -> Selection:
        if samples is not None:
            return Selection(list(samples), [n for n in samples if n not in by_name])
        if split is None:
            return Selection(sorted(by_name))
        return cache_split(self.root, rule, split, records=list(by_name.values()), config=self.config)

    def _set_output(self, output: str) -> None:
        """Item format: normalised floats, or raw uint8 frames normalised later by ``device_transform``."""
        if output not in ("float", "uint8"):
            raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
        self.output = output
        self.device_transform: N.BatchNormalizer | None = None
        if output == "uint8":
            # Image modalities are 3-channel (rgb, jet-coloured depth); normalize_frames checks it per batch.
            flows = tuple(m for m in self.modalities if m.startswith("flow"))
            images = tuple((m, *_norm_stats(m, 3)) for m in self.modalities if m not in flows)
            self.device_transform = N.BatchNormalizer(images=images, flows=flows)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random frames/flips ``__getitem__`` returns (see module docstring)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records) * self.clips_per_video

    def item_indices(self, index: int) -> tuple[np.ndarray, bool]:
        """The cached-frame indices ``(T,)`` and the flip decision of item ``index`` at the current epoch."""
        idx, rng = self._draw(index)
        # maybe_flip draws exactly one rng.random() for its decision; replay it.
        return idx, self.flip_p > 0 and bool(rng.random() < self.flip_p)

    def _draw(self, index: int) -> tuple[np.ndarray, np.random.Generator]:
        rec = self.records[index // self.clips_per_video]
        n = int(rec["frames"])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train or self.sampling != "even":
            idx = sample_indices(n, self.frames, self.sampling, rng)
        else:
            idx = clip_indices(n, self.frames, index % self.clips_per_video, self.clips_per_video)
        return idx, rng

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rec = self.records[index // self.clips_per_video]
        idx, rng = self._draw(index)
        arrays = {}
        for m in self.modalities:
            arrays[m] = np.ascontiguousarray(self._array(m, rec)[idx])  # (T, S, S, C) uint8, read from the mmap
        flows = [m for m in arrays if m.startswith("flow")]
        if self.flip_p > 0 and not flows:
            arrays = maybe_flip(arrays, rng, p=self.flip_p)
        elif self.flip_p > 0 and rng.random() < self.flip_p:  # the same single draw maybe_flip makes
            # Stacked flow (2L channels) negates every x channel: flow.flip_flow, not sampling's channel 0.
            from .flow import flip_flow

            images = flip_arrays({m: a for m, a in arrays.items() if m not in flows})
            arrays = {m: flip_flow(a) if m in flows else images[m] for m, a in arrays.items()}
        item: dict[str, Any] = {}
        for m, a in arrays.items():
            if self.output == "uint8":  # (T, S, S, C) as cached; normalised on the device (device_transform)
                item[m] = torch.from_numpy(a)
                continue
            if m in flows:
                from .flow import flow_to_tensor

                item[m] = flow_to_tensor(a)  # (T, 2L, S, S) in [-1, 1] = (q - 127.5) / 127.5
                continue
            item[m] = N.normalize_frames(a, *_norm_stats(m, a.shape[-1]))  # (T, C, S, S) float32
        item["label"] = torch.tensor(int(rec["label"]), dtype=torch.int64)
        item["sample"] = rec["name"]
        item["index"] = int(index)
        return item

    def _array(self, modality: str, rec: dict[str, Any]) -> np.ndarray:
        """The cached ``(F, S, S, C)`` uint8 memory map of a sample, from the open maps (:data:`OPEN_MAPS`)."""
        key = (modality, rec["name"])
        arr = self._maps.get(key)
        if arr is not None:
            self._maps.move_to_end(key)
            return arr
        arr = C.load_array(self.root, modality, rec["name"], mmap=True)
        if arr.shape[0] != rec["frames"]:
            path = C.array_path(self.root, modality, rec["name"])
            raise C.CacheError(f"{path}: {arr.shape[0]} frames, but the index says {rec['frames']}")
        self._maps[key] = arr
        if len(self._maps) > OPEN_MAPS:
            self._maps.popitem(last=False)
        return arr

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers receive a pickled copy: without this, every open map would be pickled as a full
        # in-memory array. Each worker opens its own.
        return {**self.__dict__, "_maps": OrderedDict()}


def _report_absent(root: Path, split: str | None, sel: Selection, on_missing: str) -> None:
    """Samples of the source missing from the cache: an error, or a warning with ``on_missing="skip"``."""
    if sel.absent_split_known:
        what = f"{len(sel.absent)} of {len(sel.names)} samples of split {split!r}"
    else:
        what = f"{len(sel.absent)} samples of the source (whose split is unknown)"
    msg = (
        f"{root}: {what} are not in the cache (first: {', '.join(sel.absent[:5])}); "
        f"see {root}/failures*.jsonl or re-run `modistill prepare`"
    )
    if on_missing == "error":
        raise C.CacheError(msg + "; set data.on_missing=skip (on_missing='skip') to go on without them")
    warnings.warn(msg + "; skipping them", stacklevel=3)


def denormalize(x: torch.Tensor, modality: str = "rgb") -> torch.Tensor:
    """Invert the normalisation of ``modality``: ``(..., C, H, W)`` float -> values in [0, 1] (for display
    and tests; `normalize.denormalize` with the modality's statistics)."""
    return N.denormalize(x, *_norm_stats(modality, x.shape[-3]))


__all__ = ["CachedClipDataset", "IMAGENET_MEAN", "IMAGENET_STD", "clip_indices", "denormalize"]
