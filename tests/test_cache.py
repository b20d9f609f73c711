"""The prepared cache's storage layer (modistill.data.cache) on small hand-made arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modistill.core.atomic import remove_stale_temps, save_array_atomic
from modistill.core.errors import SchemaError
from modistill.data import cache as C


def test_save_array_atomic_roundtrip_and_mmap(tmp_path: Path) -> None:
    a = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    save_array_atomic(C.array_path(tmp_path, "rgb", "S1"), a)
    got = C.load_array(tmp_path, "rgb", "S1")
    assert isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, a)
    # No temporary file is left behind next to the array.
    assert [p.name for p in (tmp_path / "rgb").iterdir()] == ["S1.npy"]


def test_save_array_atomic_keeps_old_file_when_write_fails(tmp_path: Path) -> None:
    path = C.array_path(tmp_path, "rgb", "S1")
    old = np.zeros((1, 2, 2, 3), np.uint8)
    save_array_atomic(path, old)
    with pytest.raises(ValueError):  # object arrays cannot be saved without pickle: fails mid-write
        save_array_atomic(path, np.array([object()]))
    np.testing.assert_array_equal(np.load(path), old)
    assert sorted(p.name for p in path.parent.iterdir()) == ["S1.npy"]


def test_load_array_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(C.CacheError, match=r"rgb/S9\.npy.*missing"):
        C.load_array(tmp_path, "rgb", "S9")
    save_array_atomic(C.array_path(tmp_path, "rgb", "F"), np.zeros((2, 4, 4), np.float32))
    with pytest.raises(C.CacheError, match=r"rgb/F\.npy: expected uint8"):
        C.load_array(tmp_path, "rgb", "F")
    bad = C.array_path(tmp_path, "rgb", "T")
    bad.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(C.CacheError, match=r"rgb/T\.npy: unreadable"):
        C.load_array(tmp_path, "rgb", "T")
    save_array_atomic(C.array_path(tmp_path, "rgb", "S"), np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(C.CacheError, match="expected shape"):
        C.load_array(tmp_path, "rgb", "S", expect=(3, 4, 4, 3))


def test_jsonl_torn_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "index.jsonl"
    with C.JsonlAppender(path) as w:
        w.append({"name": "A", "label": 0})
        w.append({"name": "B", "label": 1})
    # A kill in the middle of an append leaves an unterminated fragment.
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"name": "C", "lab')
    assert [r["name"] for r in C.read_jsonl(path)] == ["A", "B"]
    with C.JsonlAppender(path) as w:  # the next writer cuts the fragment off first
        w.append({"name": "D", "label": 3})
    assert [r["name"] for r in C.read_jsonl(path)] == ["A", "B", "D"]
    assert path.read_text().count("\n") == 3


def test_jsonl_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "index.jsonl"
    path.write_text('{"name": "A"}\nnot json\n{"name": "B"}\n')
    with pytest.raises(C.CacheError, match=r"index\.jsonl: line 2 is not valid JSON"):
        C.read_jsonl(path)
    path.write_text('{"name": "A"}\n[1, 2]\n')
    with pytest.raises(C.CacheError, match="line 2 is not a JSON object"):
        C.read_jsonl(path)


def test_appender_truncate_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    path.write_text('{"sample": "old"}\n')
    with C.JsonlAppender(path, truncate=True) as w:
        w.append({"sample": "new"})
    assert C.read_jsonl(path) == [{"sample": "new"}]


def test_read_index_merges_shards_last_record_wins(tmp_path: Path) -> None:
    with C.JsonlAppender(C.index_path(tmp_path, (0, 2))) as w:
        w.append({"name": "B", "label": 1})
        w.append({"name": "A", "label": 0, "v": 1})
    with C.JsonlAppender(C.index_path(tmp_path, (1, 2))) as w:
        w.append({"name": "C", "label": 2})
    with C.JsonlAppender(C.index_path(tmp_path)) as w:
        w.append({"name": "A", "label": 0, "v": 0})
    files = [p.name for p in C.index_files(tmp_path)]
    assert files == ["index.jsonl", "index.shard-0-of-2.jsonl", "index.shard-1-of-2.jsonl"]
    recs = C.read_index(tmp_path)
    assert [r["name"] for r in recs] == ["A", "B", "C"]
    assert recs[0]["v"] == 1  # read after index.jsonl


def test_read_index_without_index_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(C.CacheError, match="no index file"):
        C.read_index(tmp_path)
    (tmp_path / "index.jsonl").write_text('{"label": 1}\n')
    with pytest.raises(C.CacheError, match="without a 'name'"):
        C.read_index(tmp_path)


def test_parse_shard() -> None:
    assert C.parse_shard("0/4") == (0, 4)
    assert C.parse_shard(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            C.parse_shard(bad)
    assert C.shard_suffix(None) == "" and C.shard_suffix((1, 3)) == ".shard-1-of-3"


@settings(max_examples=40, deadline=None)
@given(st.sets(st.text("ABC123", min_size=1, max_size=6), max_size=30), st.integers(1, 7))
def test_select_shard_partitions(names: set[str], n: int) -> None:
    parts = [C.select_shard(list(names), (i, n)) for i in range(n)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == sorted(names)  # covers all, each exactly once
    assert len(flat) == len(set(flat))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    # Deterministic whatever the listing order.
    assert parts[0] == C.select_shard(sorted(names, reverse=True), (0, n))


def test_config_roundtrip_and_mismatch(tmp_path: Path) -> None:
    cfg = C.CacheConfig(
        size=32, frames=8, depth_encoding="raw", source="ntu", source_path="/data", num_classes=60
    )
    cfg.write(tmp_path / C.CONFIG_NAME)
    got = C.load_config(tmp_path)
    assert got == cfg and got.modalities == ("rgb", "depth")
    other = C.CacheConfig(size=64, frames=8, depth_encoding="jet", source="ntu", source_path="/elsewhere")
    diff = got.mismatches(other)
    assert len(diff) == 2 and diff[0].startswith("size: 32") and diff[1].startswith("depth_encoding")


def test_config_validation_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="depth encoding"):
        C.CacheConfig(size=32, frames=8, depth_encoding="hsv")
    with pytest.raises(ValueError, match="modalities"):
        C.CacheConfig(size=32, frames=8, modalities=("rgb", "thermal"))
    with pytest.raises(ValueError, match="frame budget"):
        C.CacheConfig(size=32, frames=0)
    with pytest.raises(C.CacheError, match="cache_config.json: not found"):
        C.load_config(tmp_path)
    (tmp_path / C.CONFIG_NAME).write_text("{broken")
    with pytest.raises(C.CacheError, match="invalid cache config"):
        C.load_config(tmp_path)
    (tmp_path / C.CONFIG_NAME).write_text(json.dumps({"size": 32, "frames": 8, "version": 99}))
    with pytest.raises(C.CacheError, match=r"cache_config\.json: cache_config version 99 is not supported"):
        C.load_config(tmp_path)
    (tmp_path / C.CONFIG_NAME).write_text(json.dumps({"format": "fallback_alignment", "version": 1}))
    with pytest.raises(C.CacheError, match="expected 'cache_config'"):
        C.load_config(tmp_path)
    (tmp_path / C.CONFIG_NAME).write_text(json.dumps({"size": 32, "frames": 8, "extra": [1]}))
    with pytest.raises(C.CacheError, match="invalid cache config.*'extra' must be a mapping"):
        C.load_config(tmp_path)
    (tmp_path / C.CONFIG_NAME).write_text(json.dumps({"frames": 8}))
    with pytest.raises(C.CacheError, match="lacks field.*size"):
        C.load_config(tmp_path)


# cache_config.json exactly as modistill wrote it before the file carried "format" (CACHE_VERSION 1).
LEGACY_CONFIG = {
    "class_names": ["push_forward", "hands_to_chest", "wave"],
    "depth_encoding": "jet",
    "depth_far_mm": 4500.0,
    "depth_near_mm": 500.0,
    "extra": {
        "alignment": "skeleton",
        "flow": {"bound": 20.0, "compute_size": 16, "method": "dis", "params": {}, "stack": 1},
        "keep_aspect": False,
    },
    "frames": 4,
    "modalities": ["rgb", "depth", "flow"],
    "num_classes": 3,
    "size": 16,
    "source": "/data/src",
    "version": 1,
}


def test_legacy_config_loads_and_is_written_as_a_versioned_file(tmp_path: Path) -> None:
    (tmp_path / C.CONFIG_NAME).write_text(json.dumps(LEGACY_CONFIG, indent=2, sort_keys=True) + "\n")
    cfg = C.load_config(tmp_path)
    assert cfg.modalities == ("rgb", "depth", "flow") and cfg.extra["flow"]["method"] == "dis"
    assert cfg.class_names == LEGACY_CONFIG["class_names"]
    # Version 1 stored the source's path in "source": it becomes source_path, the kind is read from it, and
    # the depth (always read as millimetres then) gets its units.
    assert (cfg.source, cfg.source_path) == ("ntu", "/data/src")
    assert (cfg.depth_scale, cfg.depth_decode, cfg.flow_bound) == (1000.0, "plain", 20.0)
    cfg.write(tmp_path / "again.json")
    written = json.loads((tmp_path / "again.json").read_text())
    # The same keys and values, upgraded to version 2, plus the schema's "format"; "extra" stays nested.
    upgraded = {
        **LEGACY_CONFIG,
        "source": "ntu",
        "source_path": "/data/src",
        "source_split": None,
        "source_split_dir": None,
        "depth_scale": 1000.0,
        "depth_decode": "plain",
        "version": 2,
    }
    assert written == {**upgraded, "format": "cache_config"}
    assert C.CacheConfig.read(tmp_path / "again.json") == cfg
    assert cfg.mismatches(C.CacheConfig.from_dict(written)) == []
    legacy_manifest = {**LEGACY_CONFIG, "source": "/data/m.csv", "modalities": ["rgb"]}
    (tmp_path / C.CONFIG_NAME).write_text(json.dumps(legacy_manifest))
    cfg = C.load_config(tmp_path)
    assert (cfg.source, cfg.source_path, cfg.depth_scale, cfg.flow_bound) == ("manifest", "/data/m.csv", None, None)


def test_fallback_file_roundtrip_and_legacy(tmp_path: Path) -> None:
    path = tmp_path / C.FALLBACK_NAME
    legacy = {"stamp": {"candidates": 5, "per_group": 0}, "groups": {"1|1": [[2.9, 227.0, -58.0]]}}
    path.write_text(json.dumps(legacy, indent=2, sort_keys=True) + "\n")
    got = C.FallbackFile.read(path)
    assert got.groups == legacy["groups"] and got.stamp == legacy["stamp"]
    got.write(path)
    assert json.loads(path.read_text()) == {**legacy, "format": "fallback_alignment", "version": 1}
    path.write_text(json.dumps({"groups": [], "stamp": {}}))
    with pytest.raises(SchemaError, match="JSON objects"):
        C.FallbackFile.read(path)


def test_sample_list_and_failures(tmp_path: Path) -> None:
    C.write_sample_list(tmp_path, ["B", "A"])
    assert C.read_sample_list(tmp_path) == ["A", "B"]
    with C.JsonlAppender(C.failures_path(tmp_path, (0, 2))) as w:
        w.append({"sample": "X", "stage": "rgb", "error": "e"})
    with C.JsonlAppender(C.failures_path(tmp_path)) as w:
        w.append({"sample": "Y", "stage": "depth", "error": "e"})
    assert [f["sample"] for f in C.read_failures(tmp_path)] == ["Y", "X"]
    assert C.is_complete(tmp_path, "Z", ["rgb"]) is False


def test_mismatch_covers_crop_settings_and_ignores_added_flow() -> None:
    base = C.CacheConfig(size=32, frames=8, extra={"alignment": "skeleton", "keep_aspect": False})
    with_flow = C.CacheConfig(
        size=32,
        frames=8,
        modalities=("rgb", "depth", "flow"),
        extra={"alignment": "skeleton", "keep_aspect": False, "flow": {"method": "dis"}},
    )
    assert with_flow.mismatches(base) == []  # flow is added to a finished cache by its own pass
    reg = C.CacheConfig(size=32, frames=8, extra={"alignment": "registered", "keep_aspect": False})
    assert base.mismatches(reg) == ["alignment: 'skeleton' (cache) vs 'registered' (requested)"]
    rgb_only = C.CacheConfig(size=32, frames=8, modalities=("rgb",), extra=dict(base.extra))
    assert base.mismatches(rgb_only)[0].startswith("modalities")


def test_remove_stale_temps_keeps_live_and_foreign_writers(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(done.stdout)  # that process has exited
    (tmp_path / "rgb").mkdir()
    # The temporary names of modistill.core.atomic: .<name>.<host>.<pid>.<random>.tmp
    dead = tmp_path / "rgb" / f".S1.npy.{host}.{dead_pid}.0a1b2c3d.tmp"
    live = tmp_path / "rgb" / f".S2.npy.{host}.{os.getppid()}.0a1b2c3d.tmp"
    foreign = tmp_path / "rgb" / f".S3.npy.otherhost.{dead_pid}.0a1b2c3d.tmp"
    for p in (dead, live, foreign):
        p.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path, ["rgb", "depth"]) == 1
    assert not dead.exists() and live.exists() and foreign.exists()
