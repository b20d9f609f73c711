"""NTU RGB+D sample names, evaluation protocols, validation splits and missing-skeleton lists.

Facts (REF §4; Shahroudy et al. CVPR 2016; Liu et al. TPAMI 2019 for NTU-120):
- sample names are ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer/subject, replication, action);
- NTU-60 has setups S001-S017 and actions A001-A060, NTU-120 adds S018-S032 and A061-A120;
- two-person interactions are A050-A060 (NTU-60) plus A106-A120 (NTU-120).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
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
    "validation_split_fields",
    "is_train",
    "split_with_validation",
    "read_missing_list",
]

_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

# REF §4: A050-A060 are NTU-60's mutual actions; NTU-120 adds A106-A120.
INTERACTION_ACTIONS_60: frozenset[int] = frozenset(range(50, 61))
INTERACTION_ACTIONS_120: frozenset[int] = frozenset(range(50, 61)) | frozenset(range(106, 121))

# REF §4 (Shahroudy et al. 2016, cross-subject training performers).
XSUB_TRAIN_SUBJECTS: frozenset[int] = frozenset(
    [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
)
# REF §4 (Liu et al. 2019): the 20 above plus 33 NTU-120 performers.
XSUB120_TRAIN_SUBJECTS: frozenset[int] = XSUB_TRAIN_SUBJECTS | frozenset(
    [45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92]
    + [93, 94, 95, 97, 98, 100, 103]
)
XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset([2, 3])

PROTOCOLS: tuple[str, ...] = ("xsub", "xview", "xsub120", "xset120")

# Garcia et al. 2018 supplement §2 and the released code: 31 = int(1882 / 60) validation videos per action.
CROSS_VIEW_VAL_PER_ACTION = 31


@dataclass(frozen=True, order=True)
class SampleName:
    """A parsed NTU sample name; ``str(SampleName)`` gives back ``SsssCcccPpppRrrrAaaa``."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int

    def __post_init__(self) -> None:
        for field in ("setup", "camera", "subject", "replication", "action"):
            v = getattr(self, field)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or not 0 <= int(v) <= 999:
                raise ValueError(f"SampleName.{field} must be an integer in 0..999, got {v!r}")

    def __str__(self) -> str:
        return (
            f"S{self.setup:03d}C{self.camera:03d}P{self.subject:03d}R{self.replication:03d}A{self.action:03d}"
        )

    @property
    def label(self) -> int:
        """0-based class label (action - 1)."""
        return self.action - 1

    @property
    def is_interaction(self) -> bool:
        """True for two-person actions (A050-A060, A106-A120; REF §4)."""
        return is_interaction(self.action)


def parse_sample_name(name: str | SampleName) -> SampleName:
    """Parse ``SsssCcccPpppRrrrAaaa`` (exactly; use :func:`sample_name_from_path` for file names)."""
    if isinstance(name, SampleName):
        return name
    m = _NAME_RE.match(str(name))
    if m is None:
        raise ValueError(
            f"malformed NTU sample name {name!r}: expected SsssCcccPpppRrrrAaaa with 3 digits per field, "
            "e.g. 'S001C002P003R002A013'"
        )
    s, c, p, r, a = (int(g) for g in m.groups())
    return SampleName(setup=s, camera=c, subject=p, replication=r, action=a)


def sample_name_from_path(path: str | Path) -> SampleName:
    """The sample name of an NTU file or folder: ``.../S001C001P001R001A001_rgb.avi``, ``...A001.skeleton``,
    ``.../nturgb+d_depth_masked/S001C001P001R001A001``."""
    stem = Path(path).name
    m = re.match(r"^(S\d{3}C\d{3}P\d{3}R\d{3}A\d{3})(?:_rgb\.avi|\.skeleton|\.json|\.npz)?$", stem)
    if m is None:
        raise ValueError(f"{path}: file name does not start with an NTU sample name SsssCcccPpppRrrrAaaa")
    return parse_sample_name(m.group(1))


def is_interaction(action: int) -> bool:
    """Two-person interaction classes: A050-A060 (NTU-60) and A106-A120 (NTU-120), REF §4."""
    return int(action) in INTERACTION_ACTIONS_120


def num_classes(protocol: str) -> int:
    """60 for the NTU-60 protocols, 120 for the NTU-120 ones."""
    _check_protocol(protocol)
    return 120 if protocol.endswith("120") else 60


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown NTU protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def is_train(n: SampleName, protocol: str) -> bool:
    """Whether ``n`` is a training sample under the NTU ``protocol`` (REF §4; NTU-60/120 range not checked)."""
    _check_protocol(protocol)
    return _is_train(n, protocol)


def _is_train(n: SampleName, protocol: str) -> bool:
    if protocol == "xsub":
        return n.subject in XSUB_TRAIN_SUBJECTS
    if protocol == "xview":
        return n.camera in XVIEW_TRAIN_CAMERAS
    if protocol == "xsub120":
        return n.subject in XSUB120_TRAIN_SUBJECTS
    return n.setup % 2 == 0  # xset120: even setup ids train (REF §4)


def split_samples(names: Iterable[str | SampleName], protocol: str) -> dict[str, list[str]]:
    """Split sample names into ``{"train": [...], "test": [...]}`` for an NTU protocol.

    Input order is preserved. The NTU-60 protocols ("xsub", "xview") reject NTU-120-only names
    (setup > 17 or action > 60) instead of silently placing them: mixing the datasets is an error.
    """
    _check_protocol(protocol)
    out: dict[str, list[str]] = {"train": [], "test": []}
    for raw in names:
        n = parse_sample_name(raw)
        if protocol in ("xsub", "xview") and (n.setup > 17 or n.action > 60):
            raise ValueError(
                f"sample {n} is not part of NTU RGB+D 60 (setups S001-S017, actions A001-A060); "
                f"use protocol 'xsub120' or 'xset120' for NTU-120 data"
            )
        if n.action < 1 or n.action > 120:
            raise ValueError(f"sample {n}: action {n.action} is outside A001-A120")
        out["train" if _is_train(n, protocol) else "test"].append(str(n))
    return out


def validation_split(
    train_names: Sequence[str | SampleName],
    protocol: str,
    *,
    val_subjects: Iterable[int] = (1,),
    per_action: int = CROSS_VIEW_VAL_PER_ACTION,
    small_fraction: float = 0.05,
    seed: int = 0,
    seed_per_action: bool = True,
) -> tuple[list[str], list[str]]:
    """Hold a validation set out of the training names: returns ``(train, val)``.

    Garcia et al. 2018 supplement §2 (REF §4):
    - cross-subject ("xsub"; we extend it to "xsub120"): every sample of subject 1 goes to validation;
    - cross-view ("xview"; we extend it to "xset120"): per action, the action's training samples sorted by
      name; numpy's legacy global seed set to ``seed`` (0) and ``np.random.choice(len(list), 31,
      replace=False)`` picks the validation samples. The supplement's prose lists "set the seed" once before
      the loop, but the released code (``codebase/utils.py``) re-seeds inside the per-action loop; we follow
      the code (``seed_per_action=True``) so the draws match the published split; ``False`` seeds once.
    - Actions with fewer than ``per_action`` training samples (small synthetic sets) get
      ``max(1, round(small_fraction * n))`` draws instead (none when n < 2), from the same generator.

    The legacy global numpy state is saved and restored, so calling this has no side effect on other code.
    """
    _check_protocol(protocol)
    parsed = [parse_sample_name(n) for n in train_names]
    return validation_split_fields(
        [(str(n), n.subject, n.action) for n in parsed],
        protocol,
        val_subjects=val_subjects,
        per_action=per_action,
        small_fraction=small_fraction,
        seed=seed,
        seed_per_action=seed_per_action,
    )


def validation_split_fields(
    items: Sequence[tuple[str, int, int]],
    protocol: str,
    *,
    val_subjects: Iterable[int] = (1,),
    per_action: int = CROSS_VIEW_VAL_PER_ACTION,
    small_fraction: float = 0.05,
    seed: int = 0,
    seed_per_action: bool = True,
) -> tuple[list[str], list[str]]:
    """:func:`validation_split` on ``(sample, subject, action)`` triples instead of NTU names (the same rules),
    for data whose subject and action are recorded beside a free-form sample id (a manifest's records):
    returns ``(train, val)`` sample ids in input order."""
    _check_protocol(protocol)
    if protocol in ("xsub", "xsub120"):
        held = frozenset(int(s) for s in val_subjects)
        val = [name for name, subject, _ in items if int(subject) in held]
    else:
        by_action: dict[int, list[str]] = {}
        for name, _, action in items:
            by_action.setdefault(int(action), []).append(name)
        val = []
        state = np.random.get_state()
        try:
            if not seed_per_action:
                np.random.seed(seed)
            for action in sorted(by_action):
                files = sorted(by_action[action])
                if seed_per_action:
                    np.random.seed(seed)
                k = per_action
                if len(files) < per_action:
                    k = 0 if len(files) < 2 else max(1, int(round(small_fraction * len(files))))
                if k == 0:
                    continue
                picked = np.random.choice(len(files), k, replace=False)
                val.extend(files[int(j)] for j in picked)
        finally:
            np.random.set_state(state)
    held_set = set(val)
    train = [name for name, _, _ in items if name not in held_set]
    return train, val


def split_with_validation(
    names: Iterable[str | SampleName], protocol: str, **val_kwargs: object
) -> dict[str, list[str]]:
    """``{"train", "val", "test"}``: :func:`split_samples` then :func:`validation_split` on its train part."""
    base = split_samples(names, protocol)
    train, val = validation_split(base["train"], protocol, **val_kwargs)  # type: ignore[arg-type]
    return {"train": train, "val": val, "test": base["test"]}


def read_missing_list(path: str | Path) -> set[str]:
    """Read an official ``NTU_RGBD*_samples_with_missing_skeletons.txt`` list.

    The official files open with a 2-line prose header; blank lines are skipped. Every other line must be a
    sample name, else a ``ValueError`` names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read missing-skeleton list ({e})") from e
    out: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if _NAME_RE.match(s) is None:
            if lineno <= 2 and not out:
                continue  # the official prose header
            raise ValueError(f"{path}:{lineno}: expected an NTU sample name, got {s[:60]!r}")
        out.add(s)
    return out
