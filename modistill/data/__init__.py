"""modistill.data: NTU RGB+D formats and readers, alignment, sampling, manifests.

The prepared cache, the torch Dataset, flow and the synthetic generator live in their own modules
(cache.py, prepare.py, dataset.py, flow.py, synth/) and are imported from there.
"""

from .align import (
    NOMINAL_COLOR_SIZE,
    NOMINAL_DEPTH_SIZE,
    AlignedCrop,
    Alignment,
    AlignmentError,
    FallbackTable,
    aligned_crop_geometry,
    crop_aligned,
    fit_alignment,
    fit_or_fallback,
    median_alignment,
    pixel_box,
    reconcile_frame_counts,
)
from .depth import (
    KINECT_FAR_MM,
    KINECT_NEAR_MM,
    DepthReadError,
    depth_frame_count,
    depth_frame_path,
    encode_depth,
    read_depth_frames,
    write_depth_frames,
)
from .manifest import (
    MANIFEST_FIELDS,
    ManifestEntry,
    ManifestError,
    ntu_manifest,
    read_manifest,
    write_manifest,
)
from .ntu import (
    INTERACTION_ACTIONS_60,
    INTERACTION_ACTIONS_120,
    PROTOCOLS,
    XSUB120_TRAIN_SUBJECTS,
    XSUB_TRAIN_SUBJECTS,
    XVIEW_TRAIN_CAMERAS,
    SampleName,
    is_interaction,
    num_classes,
    parse_sample_name,
    read_missing_list,
    sample_name_from_path,
    split_samples,
    split_with_validation,
    validation_split,
)
from .sampling import SAMPLING_MODES, flip_arrays, maybe_flip, sample_indices
from .skeleton import (
    BODY_INFO_FIELDS,
    NUM_JOINTS,
    Skeleton,
    SkeletonFormatError,
    actor_scores,
    read_skeleton,
    select_actors,
    write_skeleton,
)
from .video import VideoReadError, read_video_frames, video_frame_count, write_video

__all__ = [
    # ntu
    "SampleName",
    "parse_sample_name",
    "sample_name_from_path",
    "is_interaction",
    "INTERACTION_ACTIONS_60",
    "INTERACTION_ACTIONS_120",
    "XSUB_TRAIN_SUBJECTS",
    "XSUB120_TRAIN_SUBJECTS",
    "XVIEW_TRAIN_CAMERAS",
    "PROTOCOLS",
    "num_classes",
    "split_samples",
    "validation_split",
    "split_with_validation",
    "read_missing_list",
    # skeleton
    "NUM_JOINTS",
    "BODY_INFO_FIELDS",
    "Skeleton",
    "SkeletonFormatError",
    "read_skeleton",
    "write_skeleton",
    "select_actors",
    "actor_scores",
    # video
    "VideoReadError",
    "read_video_frames",
    "video_frame_count",
    "write_video",
    # depth
    "DepthReadError",
    "KINECT_NEAR_MM",
    "KINECT_FAR_MM",
    "depth_frame_path",
    "depth_frame_count",
    "read_depth_frames",
    "write_depth_frames",
    "encode_depth",
    # align
    "NOMINAL_COLOR_SIZE",
    "NOMINAL_DEPTH_SIZE",
    "Alignment",
    "AlignmentError",
    "AlignedCrop",
    "fit_alignment",
    "FallbackTable",
    "fit_or_fallback",
    "aligned_crop_geometry",
    "crop_aligned",
    "median_alignment",
    "pixel_box",
    "reconcile_frame_counts",
    # sampling
    "SAMPLING_MODES",
    "sample_indices",
    "flip_arrays",
    "maybe_flip",
    # manifest
    "MANIFEST_FIELDS",
    "ManifestEntry",
    "ManifestError",
    "read_manifest",
    "write_manifest",
    "ntu_manifest",
]

# ---------------------------------------------------------------------------------------------------------
# Prepared cache, `modistill prepare` and the torch Dataset (cache.py, prepare.py, dataset.py).
# CachedClipDataset is resolved lazily (PEP 562) so that `import modistill.data`, which every spawned
# prepare worker does, never imports torch.
from .cache import (  # noqa: E402
    CacheConfig,
    CacheError,
    load_array,
    load_config,
    read_failures,
    read_index,
)
from .prepare import PrepareError, PrepareOptions, PrepareResult, prepare_cache  # noqa: E402

_LAZY_DATASET = ("CachedClipDataset", "IMAGENET_MEAN", "IMAGENET_STD")


def __getattr__(name: str):  # noqa: ANN202
    if name in _LAZY_DATASET:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ += [
    "CacheConfig",
    "CacheError",
    "load_array",
    "load_config",
    "read_failures",
    "read_index",
    "PrepareError",
    "PrepareOptions",
    "PrepareResult",
    "prepare_cache",
    *_LAZY_DATASET,
]
