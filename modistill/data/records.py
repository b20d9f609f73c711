"""The records of a prepared cache's JSON-lines files: the one place their fields are defined.

``index[.shard-i-of-n].jsonl`` holds one `IndexRecord` per finished sample; ``failures[...].jsonl`` and
``flow_failures[...].jsonl`` one `FailureRecord` per sample that failed in the last run of a shard;
``warnings[...].jsonl`` one `WarningRecord` per warning of the samples in the shard's index. Each line
is one JSON object with sorted keys, written by `modistill.data.cache.JsonlAppender` and read back by
`modistill.data.cache.read_jsonl` as plain dicts (no validation beyond "one JSON object per line"), so caches
written before these types existed load unchanged. The types are for documentation and static checking.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["AlignmentRecord", "FailureRecord", "IndexRecord", "WarningRecord"]


class AlignmentRecord(TypedDict):
    """The alignment a sample was cropped with (`modistill.data.align.Alignment`, non-finite -> null)."""

    scale: float | None
    tx: float | None
    ty: float | None
    n_pairs: int
    method: str  # "skeleton" | "fallback" | "registered" | "none" (no depth: the whole frame is resized)
    residual_px: float | None  # median reprojection error in colour pixels; null for the other methods
    note: str  # fallback: which group's median was used


class IndexRecord(TypedDict):
    """One line of ``index*.jsonl``, written by `modistill.data.prepare_sample.prepare_sample`.

    ``action``/``replication`` are parsed from NTU names (null for other names). ``subject``, ``camera`` and
    ``setup`` are the source's ids: NTU performer, camera and setup (ints); a manifest's ``subject``,
    ``view`` and ``setup`` columns (ints when the text is an integer, else strings; ``setup`` may be null);
    UCF101: subject = the group ``gXX`` (one actor/scene; the official splits keep groups apart), camera and
    setup null; HMDB51: subject = the source movie (the file name before ``_<class>_``, else without the
    trailing clip number, else the sample name), camera and setup null. ``split`` is the source's own split:
    a manifest's ``split`` column ("train" | "val" | "test"), the official UCF101/HMDB51 split N ("train" |
    "test"), or null when the source has none (NTU: splits are computed when the cache is read from
    ``samples.txt`` and a protocol). Records written before ``split`` was filled hold null.
    """

    name: str
    label: int  # 0-based class
    action: int | None
    subject: int | str
    camera: int | str | None
    setup: int | str | None
    replication: int | None
    split: str | None  # "train" | "val" | "test" | None
    frames: int  # F, the frame budget: cached frames per modality
    source_frames: list[int]  # the F source-frame indices (0-based) that were kept
    source_frame_counts: dict[str, int | None]  # {"rgb", "depth", "skeleton"} -> frames in the source
    alignment: AlignmentRecord
    warnings: list[str]  # fallback reason, frame-count mismatch, short video, "depth check: ..." findings
    shape: dict[str, list[int]]  # modality -> [F, S, S, C]


class FailureRecord(TypedDict):
    """One line of ``failures*.jsonl`` / ``flow_failures*.jsonl``: ``error`` names the file and the problem.

    ``stage``: "skeleton", "align", "rgb", "depth" (unreadable, or not plausible metric depth: the depth
    check), "write", "index" (flow: unusable index record),
    "worker" (the worker process died) or "unexpected" (a bug: the exception type is in ``error``).
    """

    sample: str
    stage: str
    error: str


class WarningRecord(TypedDict):
    """One line of ``warnings*.jsonl``: one of a finished sample's ``warnings`` (the sample is in the cache)."""

    sample: str
    warning: str
