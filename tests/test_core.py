"""core: the one atomic writer and the versioned-file base class."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest

from modistill.core import atomic
from modistill.core.errors import ModistillError, SchemaError
from modistill.core.schema import VersionedFile


@dataclass
class _Thing(VersionedFile):
    KIND: ClassVar[str] = "test-thing"
    VERSION: ClassVar[int] = 2
    name: str
    values: list[int] = field(default_factory=list)


def test_versioned_file_round_trip_and_header(tmp_path):
    p = _Thing("a", [1, 2]).write(tmp_path / "t.json")
    data = json.loads(p.read_text())
    assert data == {"format": "test-thing", "version": 2, "name": "a", "values": [1, 2]}
    assert _Thing.read(p) == _Thing("a", [1, 2])


@pytest.mark.parametrize(
    "data, message",
    [
        ({"format": "other", "version": 1, "name": "a"}, "is a 'other' file, expected 'test-thing'"),
        ({"format": "test-thing", "version": 3, "name": "a"}, "version 3 is not supported"),
        ({"format": "test-thing", "version": 1}, "lacks field\\(s\\) name"),
        ({"format": "test-thing", "name": "a"}, "version None is not supported"),
    ],
)
def test_versioned_file_refuses_other_kinds_versions_and_missing_fields(tmp_path, data, message):
    f = tmp_path / "t.json"
    f.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=message) as e:
        _Thing.read(f)
    assert str(f) in str(e.value) and isinstance(e.value, ModistillError)


def test_versioned_file_reads_files_from_before_headers_and_names_bad_json(tmp_path):
    f = tmp_path / "old.json"
    f.write_text(json.dumps({"name": "legacy"}))
    assert _Thing.read(f) == _Thing("legacy")
    f.write_text("{not json")
    with pytest.raises(SchemaError, match="unreadable test-thing file"):
        _Thing.read(f)
    with pytest.raises(SchemaError, match="not found"):
        _Thing.read(tmp_path / "missing.json")


def test_atomic_writes_leave_no_temp_and_keep_the_old_file_on_failure(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic.write_text_atomic(p, "one")
    atomic.write_json_atomic(tmp_path / "j.json", {"b": 1, "a": 2})
    atomic.save_array_atomic(tmp_path / "x.npy", np.arange(6).reshape(2, 3))
    assert p.read_text() == "one" and json.loads((tmp_path / "j.json").read_text()) == {"a": 2, "b": 1}
    assert np.load(tmp_path / "x.npy").tolist() == [[0, 1, 2], [3, 4, 5]]

    class Boom:
        def __array__(self, *a: Any, **k: Any):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.save_array_atomic(tmp_path / "x.npy", Boom())  # type: ignore[arg-type]
    assert np.load(tmp_path / "x.npy").shape == (2, 3)  # the old file, whole
    assert [q.name for q in tmp_path.rglob(".*.tmp")] == []


def test_remove_stale_temps_keeps_live_writers(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".a.npy.{host}.999999999.abcd1234.tmp"
    live = tmp_path / f".b.npy.{host}.{os.getppid()}.abcd1234.tmp"
    other_host = tmp_path / ".c.npy.elsewhere.1.abcd1234.tmp"
    for f in (dead, live, other_host):
        f.write_text("x")
    assert atomic.remove_stale_temps(tmp_path) == 1
    assert not dead.exists() and live.exists() and other_host.exists()


def test_metrics_file_is_flat_with_a_header(tmp_path):
    from modistill.reporting.report import MetricsFile

    MetricsFile({"rows": {"2": 0.5}}).write(tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["rows"] == {"2": 0.5} and data["format"] == "modistill-report-metrics"
    assert MetricsFile.read(tmp_path / "m.json").summary == {"rows": {"2": 0.5}}
