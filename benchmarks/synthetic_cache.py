"""A prepared cache written straight from generated arrays: no video, no PyAV, no alignment (for benchmarks of
what happens after `modistill prepare`, and for machines without PyAV). Same layout `modistill prepare` writes:
cache_config.json, index.jsonl, samples.txt, <modality>/<sample>.npy (uint8 (F, S, S, 3))."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ntu_names(subjects=(1, 2, 3), cameras=(1, 2), actions=(1, 2, 3)) -> list[str]:
    """NTU sample names; the default 18 split 6 / 6 / 6 into train / val / test under xsub."""
    return [f"S001C{c:03d}P{p:03d}R001A{a:03d}" for p in subjects for c in cameras for a in actions]


def write_cache(root: Path, names: list[str], size: int, frames: int, modalities=("rgb", "depth")) -> Path:
    """Random uint8 frames for every sample and modality; labels from the action number."""
    from modistill.core.atomic import save_array_atomic
    from modistill.data import cache as C

    rng = np.random.default_rng(0)
    actions = sorted({int(n[-3:]) for n in names})
    C.CacheConfig(
        size=size,
        frames=frames,
        source="generated (benchmarks/synthetic_cache.py)",
        num_classes=len(actions),
        modalities=tuple(modalities),
    ).write(root / C.CONFIG_NAME)
    with C.JsonlAppender(C.index_path(root)) as idx:
        for n in names:
            for m in modalities:
                a = rng.integers(0, 256, (frames, size, size, 3), np.uint8)
                save_array_atomic(C.array_path(root, m, n), a)
            idx.append(
                {
                    "name": n,
                    "label": actions.index(int(n[-3:])),
                    "frames": frames,
                    "source_frames": list(range(frames)),
                    "setup": int(n[1:4]),
                    "camera": int(n[5:8]),
                    "subject": int(n[9:12]),
                    "replication": int(n[13:16]),
                    "action": int(n[17:20]),
                    "shape": {m: [frames, size, size, 3] for m in modalities},
                    "split": None,
                    "warnings": [],
                }
            )
    C.write_sample_list(root, names)
    return root
