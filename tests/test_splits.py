"""Splits from the data (modistill.data.splits): the records' split column, held-out subjects and views, the
validation rule, NTU protocols by record fields on non-NTU caches, the errors; through CachedClipDataset and
the experiment config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from modistill.core.atomic import save_array_atomic
from modistill.core.config import ConfigError
from modistill.data import cache as C
from modistill.data.dataset import CachedClipDataset
from modistill.data.ntu import split_with_validation
from modistill.data.splits import SplitError, SplitRule, cache_split, record_splits, source_kind
from modistill.pipeline.session import load_experiment


def rec(name: str, subject, camera=1, label=0, split=None, setup=None) -> dict:
    return {"name": name, "subject": subject, "camera": camera, "label": label, "split": split, "setup": setup}


def write_cache(root: Path, records: list[dict], source: str = "manifest",
                listed: list[str] | None = None) -> Path:
    """A manifest-like cache written through the storage API (2-frame 8 px arrays)."""
    C.CacheConfig(size=8, frames=2, source=source, num_classes=3).write(root / C.CONFIG_NAME)
    with C.JsonlAppender(C.index_path(root)) as idx:
        for r in records:
            for m in ("rgb", "depth"):
                save_array_atomic(C.array_path(root, m, r["name"]), np.zeros((2, 8, 8, 3), np.uint8))
            idx.append({**r, "frames": 2, "source_frames": [0, 1]})
    C.write_sample_list(root, listed if listed is not None else [r["name"] for r in records])
    return root


# ------------------------------------------------------------------------------------------ split column
def test_manifest_protocol_uses_the_split_column_as_given():
    recs = [rec("a", "x", split="train"), rec("b", "y", split="val"), rec("c", "z", split="test"),
            rec("d", "x", split="train")]
    parts, _ = record_splits(recs, SplitRule("manifest"))
    assert parts == {"train": ["a", "d"], "val": ["b"], "test": ["c"]}


def test_manifest_protocol_without_val_rows_holds_out_training_subjects():
    # UCF101-like: train/test only; validation = whole training subjects (groups), never split across.
    recs = [rec(f"v{i}", f"g{i // 2:02d}", split="train") for i in range(10)] + [rec("t", "g99", split="test")]
    parts, notes = record_splits(recs, SplitRule("manifest", val_fraction=0.4, seed=3))
    val_subjects = {r["subject"] for r in recs if r["name"] in parts["val"]}
    train_subjects = {r["subject"] for r in recs if r["name"] in parts["train"]}
    assert len(val_subjects) == 2 and not val_subjects & train_subjects  # round(0.4 * 5) subjects, whole
    assert sorted(parts["train"] + parts["val"]) == sorted(f"v{i}" for i in range(10))
    assert parts == record_splits(recs, SplitRule("manifest", val_fraction=0.4, seed=3))[0]  # seeded
    assert any("2 of 5 training subjects" in n for n in notes)
    # The same seed is the same split whatever order the records come in.
    rev, _ = record_splits(recs[::-1], SplitRule("manifest", val_fraction=0.4, seed=3))
    assert {k: sorted(v) for k, v in rev.items()} == {k: sorted(v) for k, v in parts.items()}


def test_manifest_protocol_errors_name_the_cache_and_the_problem():
    recs = [rec("a", 1, split="train")] + [rec(f"n{i}", 2) for i in range(12)]
    with pytest.raises(SplitError, match=r"mycache: protocol manifest but 12 of 13 samples have no split"):
        record_splits(recs, SplitRule("manifest"), where="mycache")
    with pytest.raises(SplitError, match=r"unknown split value\(s\) \['training'\]"):
        record_splits([rec("a", 1, split="training")], SplitRule("manifest"))
    with pytest.raises(SplitError, match="the test split of protocol 'manifest' is empty"):
        record_splits([rec("a", 1, split="train"), rec("b", 2, split="train")], SplitRule("manifest"))
    with pytest.raises(SplitError, match="already name a validation set"):
        record_splits([rec("a", 1, split="val"), rec("b", 1, split="test")],
                      SplitRule("manifest", val_subjects=(1,)))


# --------------------------------------------------------------------------------- held-out subjects/views
def test_held_out_subjects_list_and_validation_subjects():
    recs = [rec(f"s{i}", subj) for i, subj in enumerate(["alice", "bob", 3, "3", "carol", "alice"])]
    parts, _ = record_splits(recs, SplitRule("subjects", test_subjects=("3",), val_subjects=("bob",)))
    # 3 and "3" are one subject (ids compare as text).
    assert parts == {"train": ["s0", "s4", "s5"], "val": ["s1"], "test": ["s2", "s3"]}
    with pytest.raises(SplitError, match=r"test_subjects \['dave'\] are not in the data"):
        record_splits(recs, SplitRule("subjects", test_subjects=("dave",)))
    with pytest.raises(SplitError, match="val_subjects"):
        record_splits(recs, SplitRule("subjects", test_subjects=("carol",), val_subjects=("zoe",)))


def test_held_out_fraction_is_seeded_and_grouped():
    recs = [rec(f"s{i:02d}", f"p{i % 7}", label=i % 3) for i in range(35)]
    a, _ = record_splits(recs, SplitRule("subjects", test_fraction=0.3, seed=1))
    b, _ = record_splits(recs, SplitRule("subjects", test_fraction=0.3, seed=1))
    c, _ = record_splits(recs, SplitRule("subjects", test_fraction=0.3, seed=2))
    assert a == b and a != c
    subj = {r["name"]: r["subject"] for r in recs}
    parts = {k: {subj[n] for n in v} for k, v in a.items()}
    assert len(parts["test"]) == 2 and len(parts["val"]) == 1  # round(0.3 * 7); validation: 10 % of 5 -> 1
    assert not (parts["test"] & parts["train"]) and not (parts["val"] & parts["train"])
    assert sum(len(v) for v in a.values()) == 35


def test_held_out_views():
    recs = [rec(f"s{i}", f"p{i % 4}", camera=["front", "side", "top"][i % 3]) for i in range(12)]
    parts, _ = record_splits(recs, SplitRule("views", test_views=("top",), val_fraction=0))
    assert {recs[int(n[1:])]["camera"] for n in parts["test"]} == {"top"}
    assert parts["val"] == [] and len(parts["train"]) == 8


def test_single_training_subject_draws_validation_per_sample_and_says_so():
    recs = [rec(f"s{i}", "solo") for i in range(10)] + [rec("t", "other")]
    parts, notes = record_splits(recs, SplitRule("subjects", test_subjects=("other",), val_fraction=0.2))
    assert len(parts["val"]) == 2 and len(parts["train"]) == 8
    assert any("drawn per sample" in n for n in notes)


def test_rule_checks():
    with pytest.raises(SplitError, match="exactly one of test_subjects"):
        SplitRule("subjects")
    with pytest.raises(SplitError, match="exactly one of test_subjects"):
        SplitRule("subjects", test_subjects=(1,), test_fraction=0.2)
    with pytest.raises(SplitError, match="only for the protocols manifest, subjects and views"):
        SplitRule("xsub", val_fraction=0.2)
    with pytest.raises(SplitError, match="test_views applies to protocol 'views'"):
        SplitRule("subjects", test_subjects=(1,), test_views=(2,))
    with pytest.raises(SplitError, match=r"in both val_subjects and test_subjects"):
        SplitRule("subjects", test_subjects=(1,), val_subjects=("1",))
    # The experiment config checks the same rule, naming the key.
    exp = load_experiment({"data": {"protocol": "subjects", "test_subjects": [1, "bob"], "split_seed": 4}})
    assert exp.data.split_rule() == SplitRule("subjects", test_subjects=(1, "bob"), seed=4)
    with pytest.raises(ConfigError, match="data.protocol.*exactly one of test_subjects"):
        load_experiment({"data": {"protocol": "subjects"}})
    with pytest.raises(ConfigError, match="expected one of"):
        load_experiment({"data": {"protocol": "by_name"}})


# ---------------------------------------------------------------------------- NTU names vs record fields
NTU_NAME = "S001C001P001R001A001"  # performer 1: a cross-subject *training* performer by its name


def test_ntu_named_manifest_row_is_split_by_its_record_not_its_name(tmp_path):
    # The manifest says this row's subject is 3 (a cross-subject *test* performer): the record wins.
    recs = [rec(NTU_NAME, 3, label=0), rec("S001C001P003R001A002", 1, label=1), rec("clip_x", 2, label=2),
            rec("clip_y", 4, label=0)]
    root = write_cache(tmp_path / "c", recs)
    assert source_kind(C.load_config(root)) == "manifest"
    test = CachedClipDataset(root, "test", protocol="xsub", modalities=("rgb",))
    assert NTU_NAME in test.samples and "clip_y" not in test.samples  # subject 3 -> test; 4 -> train
    train_like = cache_split(root, SplitRule("xsub"), "train").names + cache_split(root, SplitRule("xsub"),
                                                                                   "val").names
    assert "S001C001P003R001A002" in train_like and NTU_NAME not in train_like
    # The same names on an NTU-layout cache are split by name, as before (REF §4).
    ntu_root = write_cache(tmp_path / "n", [rec(NTU_NAME, 3), rec("S001C001P003R001A002", 1)], source="ntu")
    assert source_kind(C.load_config(ntu_root)) == "ntu"
    by_name = split_with_validation([NTU_NAME, "S001C001P003R001A002"], "xsub")
    assert cache_split(ntu_root, SplitRule("xsub"), "test").names == by_name["test"] == ["S001C001P003R001A002"]


def test_ntu_protocol_on_free_text_subjects_says_what_to_use(tmp_path):
    root = write_cache(tmp_path / "c", [rec("rw_a", "alice"), rec("rw_b", "bob")])
    with pytest.raises(SplitError, match=r"c: protocol 'xsub' splits by NTU's integer.*'alice'.*subjects"):
        CachedClipDataset(root, "train", protocol="xsub", modalities=("rgb",))


def test_source_kind_of_new_and_old_caches():
    # Caches that recorded the source's path (before the kind/path fields) read by the path's form.
    for source, kind in [("ntu", "ntu"), ("ucf101", "ucf101"), ("manifest", "manifest"),
                         ("/x/clips.JSONL", "manifest"), ("/x/ntu_root", "ntu"), ("", "ntu")]:
        assert source_kind(SimpleNamespace(source=source)) == kind


# --------------------------------------------------------------------------------------- the dataset
def test_dataset_manifest_split_and_empty_validation(tmp_path):
    recs = [rec("a", "x", split="train"), rec("b", "y", split="train"), rec("c", "z", split="test")]
    root = write_cache(tmp_path / "c", recs)
    rule = SplitRule("manifest", val_fraction=0)
    assert CachedClipDataset(root, "train", rule=rule, modalities=("rgb",)).samples == ["a", "b"]
    val = CachedClipDataset(root, "val", rule=rule, modalities=("rgb",))
    assert len(val) == 0 and val.num_classes == 3  # no validation asked for: an empty set, not an error
    # The default rule holds one of the two training subjects out.
    val = CachedClipDataset(root, "val", protocol="manifest", modalities=("rgb",))
    assert len(val.samples) == 1 and val.samples[0] in ("a", "b")


def test_dataset_source_samples_missing_from_the_cache(tmp_path):
    recs = [rec("a", "x", split="train"), rec("c", "z", split="test")]
    root = write_cache(tmp_path / "c", recs, listed=["a", "b_failed", "c"])
    rule = SplitRule("manifest", val_fraction=0)
    with pytest.raises(C.CacheError, match=r"1 samples of the source \(whose split is unknown\).*b_failed"):
        CachedClipDataset(root, "train", rule=rule, modalities=("rgb",))
    with pytest.warns(UserWarning, match="b_failed"):
        ds = CachedClipDataset(root, "test", rule=rule, modalities=("rgb",), on_missing="skip")
    assert ds.samples == ["c"]
