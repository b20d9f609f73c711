"""Train / validation / test splits of a prepared cache: from the data's own records, or by NTU's protocols.

A `SplitRule` (``data.protocol`` and its companions in the experiment config) names how to split:

- NTU protocols ``xsub``, ``xview``, ``xsub120``, ``xset120`` (REF §4; `modistill.data.ntu`). On an NTU-layout
  cache (``cache_config.json`` ``source`` is NTU) they split the *names* of ``samples.txt`` exactly as before,
  with the paper's validation rules (supplement §2). On any other cache (a manifest, UCF101, HMDB51) they split
  by each record's own ``subject`` / ``camera`` / ``setup`` fields (which must then be NTU's integer ids), never
  by the sample id: a manifest row named like NTU whose ``subject`` differs goes where its subject says.
- ``manifest``: the records' explicit ``split`` column (``train`` / ``val`` / ``test``; UCF101 and HMDB51 carry
  their official split there). When no record says ``val``, the validation rule below holds a part of ``train``
  out.
- ``subjects``: the subjects in ``test_subjects`` (or a seeded ``test_fraction`` of all subjects) are the test
  set; ``views``: likewise by ``test_views`` (the manifest's ``view``, stored as the record's ``camera``).

Validation rule (``manifest`` without val rows, ``subjects``, ``views``): the training samples of the subjects in
``val_subjects``, or else a seeded ``val_fraction`` (default 10 %) of the training subjects, whole subjects at a
time so no performer is both trained on and used for model selection; with a single training subject the draw
is per sample instead (and says so). ``val_fraction: 0`` trains without validation (the last epoch is kept).
Draws: the sorted distinct ids (compared as text, so ``1`` and ``"1"`` are one subject), permuted by
``numpy.random.default_rng([seed, 0])`` (test) or ``[seed, 1]`` (validation), the first
``clamp(round(fraction * n), 1, n - 1)`` taken.

Errors (`SplitError`) name the cache and the problem: samples without a split, unknown split values, ids that
are not in the data, empty train or test sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modistill.core.errors import ModistillError

from . import cache as C
from . import ntu

__all__ = [
    "NTU_PROTOCOLS",
    "PROTOCOLS",
    "RECORD_PROTOCOLS",
    "SPLITS",
    "Selection",
    "SplitError",
    "SplitRule",
    "cache_split",
    "record_splits",
    "source_kind",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
NTU_PROTOCOLS: tuple[str, ...] = ntu.PROTOCOLS
RECORD_PROTOCOLS: tuple[str, ...] = ("manifest", "subjects", "views")
PROTOCOLS: tuple[str, ...] = NTU_PROTOCOLS + RECORD_PROTOCOLS
DEFAULT_VAL_FRACTION = 0.1
SOURCE_KINDS: tuple[str, ...] = ("ntu", "manifest", "ucf101", "hmdb51")
_MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


class SplitError(ModistillError, ValueError):
    """A split cannot be made as asked; the message names the cache (or setting) and the problem."""


@dataclass(frozen=True)
class SplitRule:
    """How to split a cache (see the module docstring); the fields mirror ``data.*`` of the experiment config.

    protocol: one of `PROTOCOLS`. test_subjects / test_views: held-out ids (``subjects`` / ``views``);
    test_fraction: a seeded fraction of the subjects (``subjects``) or views (``views``) instead of a list.
    val_subjects: validation subjects (taken from the training side); val_fraction: seeded fraction of the
    training subjects (None: 10 %; 0: no validation). seed: the seed of both draws.
    """

    protocol: str = "xsub"
    test_subjects: tuple[int | str, ...] = ()
    test_views: tuple[int | str, ...] = ()
    test_fraction: float = 0.0
    val_subjects: tuple[int | str, ...] = ()
    val_fraction: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("test_subjects", "test_views", "val_subjects"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        p = self.protocol
        if p not in PROTOCOLS:
            raise SplitError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {p!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise SplitError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise SplitError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if p in NTU_PROTOCOLS:
            set_ = [k for k in ("test_subjects", "test_views", "val_subjects") if getattr(self, k)]
            set_ += [k for k in ("test_fraction",) if self.test_fraction]
            set_ += ["val_fraction"] * (self.val_fraction is not None) + ["split_seed"] * (self.seed != 0)
            if set_:
                raise SplitError(
                    f"protocol {p!r} is NTU's fixed split with the paper's validation rule; the settings "
                    f"{', '.join(set_)} are only for the protocols manifest, subjects and views"
                )
            return
        if p != "subjects" and self.test_subjects:
            raise SplitError(f"test_subjects applies to protocol 'subjects', not {p!r}")
        if p != "views" and self.test_views:
            raise SplitError(f"test_views applies to protocol 'views', not {p!r}")
        if p == "manifest" and self.test_fraction:
            raise SplitError("test_fraction applies to the protocols 'subjects' and 'views', not 'manifest'")
        listed = self.test_subjects or self.test_views
        if p in ("subjects", "views") and bool(listed) == bool(self.test_fraction):
            what = "test_subjects" if p == "subjects" else "test_views"
            raise SplitError(f"protocol {p!r} needs exactly one of {what} (a list) or test_fraction (> 0)")
        both = {str(s) for s in self.val_subjects} & {str(s) for s in self.test_subjects}
        if both:
            raise SplitError(f"subjects {sorted(both)} are in both val_subjects and test_subjects")

    @property
    def by_name(self) -> bool:
        """NTU protocols split NTU-layout caches by sample name (REF §4)."""
        return self.protocol in NTU_PROTOCOLS


def source_kind(cfg: C.CacheConfig) -> str:
    """``"ntu"``, ``"manifest"``, ``"ucf101"`` or ``"hmdb51"``: what a cache was prepared from. Caches that
    recorded the source's path instead of its kind read as ``"manifest"`` for a ``.csv``/``.jsonl`` file and
    ``"ntu"`` otherwise (the only two sources `modistill prepare` read then)."""
    src = str(cfg.source or "")
    if src in SOURCE_KINDS:
        return src
    return "manifest" if src.lower().endswith(_MANIFEST_SUFFIXES) else "ntu"


@dataclass
class Selection:
    """The samples of one split: ``names`` (in the split; cached or not), ``absent`` (samples of the source
    that are not cached and may belong to the split: with ``absent_split_known`` False their split is unknown
    because only a finished sample has a record), ``notes`` (how the split was drawn, for the log) and
    ``allow_empty`` (an empty validation set is fine when no validation was asked for)."""

    names: list[str]
    absent: list[str] = field(default_factory=list)
    absent_split_known: bool = True
    notes: list[str] = field(default_factory=list)
    allow_empty: bool = False


# --------------------------------------------------------------------------------------- record-based splits
def _draw(ids: Sequence[str], fraction: float, seed: Sequence[int]) -> list[str]:
    """A seeded ``fraction`` of the sorted distinct ``ids``: at least one, never all (needs two or more)."""
    ordered = sorted(set(ids))
    k = min(max(1, int(round(fraction * len(ordered)))), len(ordered) - 1)
    perm = np.random.default_rng(list(seed)).permutation(len(ordered))
    return sorted(ordered[int(i)] for i in perm[:k])


def _ids(values: Iterable[int | str]) -> set[str]:
    return {str(v).strip() for v in values}


def _field(rec: Mapping[str, Any], key: str) -> str:
    v = rec.get(key)
    return "" if v is None else str(v).strip()


def _check_known(wanted: set[str], have: set[str], what: str, where: str) -> None:
    unknown = sorted(wanted - have)
    if unknown:
        raise SplitError(f"{where}: {what} {unknown} are not in the data (it has {sorted(have)[:20]})")


def _ntu_fields(recs: Sequence[Mapping[str, Any]], protocol: str, where: str) -> list[ntu.SampleName]:
    out = []
    for r in recs:
        try:
            setup = int(r.get("setup") or 0)
            out.append(ntu.SampleName(setup, int(r["camera"]), int(r["subject"]), 0, int(r["label"]) + 1))
        except (TypeError, ValueError, KeyError):
            raise SplitError(
                f"{where}: protocol {protocol!r} splits by NTU's integer performer / camera / setup ids, but "
                f"sample {r.get('name')!r} has subject {r.get('subject')!r}, camera {r.get('camera')!r}, "
                f"setup {r.get('setup')!r}; use data.protocol: subjects, views or manifest for this data"
            ) from None
    return out


def _validation(
    train: list[Mapping[str, Any]], rule: SplitRule, where: str, notes: list[str]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``(train, val)``: the validation rule of the record protocols (module docstring)."""
    if rule.val_subjects:
        held = _ids(rule.val_subjects)
        _check_known(held, {_field(r, "subject") for r in train}, "val_subjects (on the training side)", where)
        notes.append(f"validation: subjects {sorted(held)}")
        return [r for r in train if _field(r, "subject") not in held], [
            r for r in train if _field(r, "subject") in held
        ]
    frac = DEFAULT_VAL_FRACTION if rule.val_fraction is None else rule.val_fraction
    if frac == 0:
        notes.append("no validation set (val_fraction 0): the last epoch is kept")
        return train, []
    subjects = sorted({_field(r, "subject") for r in train})
    if len(subjects) >= 2:
        held = set(_draw(subjects, frac, (rule.seed, 1)))
        notes.append(f"validation: {len(held)} of {len(subjects)} training subjects, seed {rule.seed}")
        return [r for r in train if _field(r, "subject") not in held], [
            r for r in train if _field(r, "subject") in held
        ]
    names = [str(r["name"]) for r in train]
    if len(names) < 2:
        raise SplitError(f"{where}: {len(names)} training sample(s): too few to hold a validation set out; "
                         "set data.val_fraction=0 to train without one")
    held = set(_draw(names, frac, (rule.seed, 1)))
    notes.append(f"validation: {len(held)} of {len(names)} training samples (one training subject, so drawn "
                 "per sample: validation and training share that subject)")
    return [r for r in train if r["name"] not in held], [r for r in train if r["name"] in held]


def record_splits(
    records: Iterable[Mapping[str, Any]], rule: SplitRule, *, where: str = "cache"
) -> tuple[dict[str, list[str]], list[str]]:
    """``({"train", "val", "test"} -> sample names, notes)`` from index records (``name``, ``label``,
    ``subject``, ``camera``, ``setup``, ``split``), in the records' order; ``where`` names the cache in errors.
    """
    recs = list(records)
    notes: list[str] = []
    p = rule.protocol
    val: list[Mapping[str, Any]] | None = None
    if p in NTU_PROTOCOLS:
        parsed = _ntu_fields(recs, p, where)
        train = [r for r, n in zip(recs, parsed) if ntu.is_train(n, p)]
        test = [r for r, n in zip(recs, parsed) if not ntu.is_train(n, p)]
        by = {id(r): n for r, n in zip(recs, parsed)}
        _, va = ntu.validation_split_fields([(str(r["name"]), by[id(r)].subject, by[id(r)].action)
                                              for r in train], p)
        keep = set(va)
        val, train = [r for r in train if r["name"] in keep], [r for r in train if r["name"] not in keep]
        notes.append(f"NTU protocol {p!r} applied to the records' subject/camera/setup fields")
    elif p == "manifest":
        none = [str(r["name"]) for r in recs if not _field(r, "split")]
        if none:
            raise SplitError(
                f"{where}: protocol manifest but {len(none)} of {len(recs)} samples have no split (first: "
                f"{', '.join(none[:5])}); give every manifest row a split (train, val or test), or use "
                "data.protocol: subjects or views"
            )
        bad = sorted({_field(r, "split") for r in recs} - set(SPLITS))
        if bad:
            raise SplitError(f"{where}: unknown split value(s) {bad}; use train, val or test")
        train = [r for r in recs if _field(r, "split") == "train"]
        test = [r for r in recs if _field(r, "split") == "test"]
        if any(_field(r, "split") == "val" for r in recs):
            if rule.val_subjects or rule.val_fraction is not None:
                raise SplitError(f"{where}: the records already name a validation set (split 'val'); "
                                 "leave data.val_subjects and data.val_fraction unset")
            val = [r for r in recs if _field(r, "split") == "val"]
            notes.append("splits from the records' split column")
    else:
        key = "subject" if p == "subjects" else "camera"
        what = "test_subjects" if p == "subjects" else "test_views"
        have = {_field(r, key) for r in recs}
        if rule.test_fraction:
            if len(have) < 2:
                raise SplitError(f"{where}: protocol {p!r} with test_fraction needs two or more "
                                 f"{'subjects' if p == 'subjects' else 'views'}; the data has {sorted(have)}")
            held = set(_draw(sorted(have), rule.test_fraction, (rule.seed, 0)))
            notes.append(f"test: {key}s {sorted(held)} (test_fraction {rule.test_fraction}, seed {rule.seed})")
        else:
            held = _ids(rule.test_subjects or rule.test_views)
            _check_known(held, have, what, where)
        train = [r for r in recs if _field(r, key) not in held]
        test = [r for r in recs if _field(r, key) in held]
    if val is None:
        train, val = _validation(train, rule, where, notes)
    for name, part in (("train", train), ("test", test)):
        if not part:
            raise SplitError(f"{where}: the {name} split of protocol {p!r} is empty ({len(recs)} samples)")
    out = {"train": [str(r["name"]) for r in train], "val": [str(r["name"]) for r in val],
           "test": [str(r["name"]) for r in test]}
    return out, notes


# ------------------------------------------------------------------------------------------------ a cache
def cache_split(
    root: str | os.PathLike,
    rule: SplitRule,
    split: str,
    records: Sequence[Mapping[str, Any]] | None = None,
    config: C.CacheConfig | None = None,
) -> Selection:
    """The samples of ``split`` of the cache at ``root`` under ``rule`` (``records``/``config``: already read).

    NTU protocols on an NTU-layout cache split the names of ``samples.txt`` (every source sample, so a failed
    sample cannot shift the cross-view validation draw); every other case splits the index records.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    cfg = config or C.load_config(root)
    recs = list(records) if records is not None else list(C.read_index(root))
    listed = C.read_sample_list(root) if (root / C.SAMPLES_NAME).is_file() else None
    cached = {str(r["name"]) for r in recs}
    if rule.by_name and source_kind(cfg) == "ntu":
        names = listed if listed is not None else sorted(cached)
        try:
            parts = ntu.split_with_validation(names, rule.protocol)
        except ValueError as exc:
            raise SplitError(f"{root}: cannot split by NTU protocol {rule.protocol!r} ({exc})") from exc
        wanted = parts[split]
        return Selection(wanted, [n for n in wanted if n not in cached])
    parts, notes = record_splits(sorted(recs, key=lambda r: str(r["name"])), rule, where=str(root))
    absent = [n for n in (listed or []) if n not in cached]
    no_val = rule.val_fraction == 0 and not rule.val_subjects
    return Selection(parts[split], absent, absent_split_known=False, notes=notes,
                     allow_empty=split == "val" and no_val)
