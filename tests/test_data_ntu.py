"""NTU sample names, protocols, validation splits and missing-skeleton lists."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from modistill.data import (
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


def test_parse_round_trip_and_fields():
    n = parse_sample_name("S001C002P003R002A013")
    assert n == SampleName(setup=1, camera=2, subject=3, replication=2, action=13)
    assert str(n) == "S001C002P003R002A013"
    assert n.label == 12
    assert parse_sample_name(n) is n
    assert str(SampleName(32, 3, 106, 2, 120)) == "S032C003P106R002A120"


@pytest.mark.parametrize(
    "bad", ["", "S001C002P003R002A13", "s001C002P003R002A013", "S001C002P003R002A013x", "S001-C002", "X" * 20]
)
def test_parse_malformed_names(bad):
    with pytest.raises(ValueError, match="malformed NTU sample name"):
        parse_sample_name(bad)


def test_sample_name_from_path():
    assert str(sample_name_from_path("/a/b/S001C001P001R001A001_rgb.avi")) == "S001C001P001R001A001"
    assert str(sample_name_from_path("S017C003P020R001A059.skeleton")) == "S017C003P020R001A059"
    assert (
        str(sample_name_from_path("/x/nturgb+d_depth_masked/S001C001P001R001A001")) == "S001C001P001R001A001"
    )
    with pytest.raises(ValueError, match="foo.avi"):
        sample_name_from_path("/x/foo.avi")


def test_interactions():
    assert [a for a in range(1, 121) if is_interaction(a)] == list(range(50, 61)) + list(range(106, 121))
    assert parse_sample_name("S001C001P001R001A058").is_interaction
    assert not parse_sample_name("S001C001P001R001A049").is_interaction


def _grid(setups=(1, 2), cameras=(1, 2, 3), subjects=(1, 2, 3, 4), actions=(1, 2), reps=(1, 2)):
    return [str(SampleName(*t)) for t in itertools.product(setups, cameras, subjects, reps, actions)]


def test_split_xsub_and_xview():
    names = _grid(subjects=(1, 2, 3, 38, 40))
    s = split_samples(names, "xsub")
    assert {parse_sample_name(n).subject for n in s["train"]} == {1, 2, 38}
    assert {parse_sample_name(n).subject for n in s["test"]} == {3, 40}
    assert len(s["train"]) + len(s["test"]) == len(names)
    v = split_samples(names, "xview")
    assert {parse_sample_name(n).camera for n in v["train"]} == {2, 3}
    assert {parse_sample_name(n).camera for n in v["test"]} == {1}
    # input order is kept
    assert v["train"] == [n for n in names if parse_sample_name(n).camera != 1]


def test_split_ntu120():
    names = _grid(setups=(17, 18, 19, 32), subjects=(1, 3, 45, 48, 103, 106), actions=(1, 120))
    s = split_samples(names, "xsub120")
    assert {parse_sample_name(n).subject for n in s["train"]} == {1, 45, 103}
    x = split_samples(names, "xset120")
    assert {parse_sample_name(n).setup for n in x["train"]} == {18, 32}
    assert {parse_sample_name(n).setup for n in x["test"]} == {17, 19}
    assert num_classes("xsub") == 60 and num_classes("xset120") == 120


def test_split_rejects_ntu120_names_under_ntu60_protocols_and_unknown_protocol():
    with pytest.raises(ValueError, match="not part of NTU RGB\\+D 60"):
        split_samples(["S018C001P001R001A001"], "xsub")
    with pytest.raises(ValueError, match="not part of NTU RGB\\+D 60"):
        split_samples(["S001C001P001R001A061"], "xview")
    with pytest.raises(ValueError, match="unknown NTU protocol"):
        split_samples([], "cross_subject")


def test_validation_xsub_holds_out_subject_1():
    names = _grid(subjects=(1, 2, 3, 4, 5))
    out = split_with_validation(names, "xsub")
    assert {parse_sample_name(n).subject for n in out["val"]} == {1}
    assert {parse_sample_name(n).subject for n in out["train"]} == {2, 4, 5}
    assert {parse_sample_name(n).subject for n in out["test"]} == {3}
    assert sorted(out["train"] + out["val"] + out["test"]) == sorted(names)


def _reference_xview_val(train_names: list[str]) -> list[str]:
    """Hand-written reference of the supplement §2 / released-code procedure."""
    by_action: dict[int, list[str]] = {}
    for n in train_names:
        by_action.setdefault(int(n[17:20]), []).append(n)
    val = []
    for a in sorted(by_action):
        files = sorted(by_action[a])
        np.random.seed(0)
        idx = np.random.choice(len(files), 31, replace=False)
        val += [files[i] for i in idx]
    return val


def test_validation_xview_31_per_action_matches_reference():
    # 2 setups x 2 train cameras x 10 subjects x 2 reps = 80 training samples per action.
    names = _grid(subjects=tuple(range(1, 11)), actions=(1, 2, 3))
    rng = np.random.default_rng(1)
    shuffled = list(rng.permutation(names))
    train = split_samples(shuffled, "xview")["train"]
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    tr, val = validation_split(train, "xview")
    assert np.random.random() == before  # global numpy state untouched
    assert val == _reference_xview_val(train)
    assert len(val) == 3 * 31
    per_action = {a: sum(parse_sample_name(n).action == a for n in val) for a in (1, 2, 3)}
    assert per_action == {1: 31, 2: 31, 3: 31}
    assert set(tr).isdisjoint(val) and sorted(tr + val) == sorted(train)
    # reproducible and independent of input order
    assert validation_split(list(reversed(train)), "xview")[1] == val


def test_validation_xview_seed_once_differs():
    names = _grid(subjects=tuple(range(1, 11)), actions=(1, 2))
    train = split_samples(names, "xview")["train"]
    _, per = validation_split(train, "xview")
    _, once = validation_split(train, "xview", seed_per_action=False)
    np.random.seed(0)
    files = sorted(n for n in train if n.endswith("A002"))
    np.random.choice(80, 31, replace=False)  # action 1's draw consumes the stream first
    ref2 = [files[i] for i in np.random.choice(len(files), 31, replace=False)]
    assert [n for n in once if n.endswith("A002")] == ref2
    assert per != once


def test_validation_small_actions_use_fraction():
    names = _grid(setups=(1,), subjects=(1, 2, 3, 4, 5), actions=(1, 2))  # 20 train samples per action
    train = split_samples(names, "xview")["train"]
    _, val = validation_split(train, "xview", small_fraction=0.1)
    assert sum(n.endswith("A001") for n in val) == 2 and sum(n.endswith("A002") for n in val) == 2
    _, val1 = validation_split(train[:1], "xview")
    assert val1 == []  # a single sample is never held out


def test_read_missing_lists(ntu_fixtures):
    m60 = read_missing_list(ntu_fixtures / "NTU_RGBD_samples_with_missing_skeletons.txt")
    m120 = read_missing_list(ntu_fixtures / "NTU_RGBD120_samples_with_missing_skeletons.txt")
    assert len(m60) == 302 and len(m120) == 535
    assert "S001C002P005R002A008" in m60 and m60 <= m120
    assert all(parse_sample_name(n) for n in m120)


def test_read_missing_list_errors(tmp_path):
    p = tmp_path / "list.txt"
    p.write_text("header one\nheader two\n\nS001C002P005R002A008\n\nS001C002P005R002A0x8\n")
    with pytest.raises(ValueError, match=r"list\.txt:6: expected an NTU sample name"):
        read_missing_list(p)
    p.write_text("S001C002P005R002A008\r\nS001C002P006R001A008\r\n")
    assert read_missing_list(p) == {"S001C002P005R002A008", "S001C002P006R001A008"}
