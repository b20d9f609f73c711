"""Checkpoints: round trips (weights, optimizer, RNG), no pickle, atomic writes, clear load errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import modistill.engine.checkpoint as ck
from modistill.core.errors import ModistillError
from modistill.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
)
from modistill.engine.files import CheckpointMeta
from modistill.engine.seeding import capture_rng_state, restore_rng_state
from modistill.engine.serial import join_tensors, split_tensors


class BNNet(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight  # shared tensor: safetensors refuses shared storage unless cloned


def _trained(steps: int = 3) -> tuple[BNNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = BNNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = net(torch.randn(2, 3, 5, 5)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt


def test_weights_and_optimizer_round_trip_continue_identically(tmp_path):
    net, opt = _trained()
    jfile = save_checkpoint(tmp_path / "last", net, opt, {"epoch": 3, "note": "x"})
    assert jfile == tmp_path / "last.json"
    # No pickle anywhere: only safetensors + JSON on disk.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.json",
        "last.optim.safetensors",
        "last.safetensors",
    ]
    for p in tmp_path.iterdir():
        assert p.read_bytes()[:1] != b"\x80"

    torch.manual_seed(99)
    net2 = BNNet()
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.5)
    meta = load_checkpoint(tmp_path / "last.json", net2, opt2)
    assert meta["epoch"] == 3 and meta["note"] == "x"
    sd1, sd2 = net.state_dict(), net2.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) and sd1[k].dtype == sd2[k].dtype for k in sd1)
    o1, o2 = opt.state_dict(), opt2.state_dict()
    assert o1["param_groups"] == o2["param_groups"]  # lr restored, betas back as a tuple
    assert isinstance(o2["param_groups"][0]["betas"], tuple)
    for pid, st in o1["state"].items():
        for name, v in st.items():
            assert torch.equal(v, o2["state"][pid][name]), (pid, name)
    # One more identical step on both gives identical weights.
    x = torch.randn(2, 3, 5, 5)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_tied_weights_and_module_prefix(tmp_path):
    m = Tied()
    save_checkpoint(tmp_path / "t", m)
    m2 = Tied()
    load_checkpoint(tmp_path / "t", m2)
    assert torch.equal(m2.a.weight, m.a.weight) and m2.b.weight is m2.a.weight
    # A state_dict saved from a DDP-wrapped model elsewhere ("module." keys) loads into the bare model.
    net = BNNet()
    save_file(
        {f"module.{k}": v.contiguous() for k, v in net.state_dict().items()},
        str(tmp_path / "ddp.safetensors"),
    )
    net2 = BNNet()
    load_weights(tmp_path / "ddp.safetensors", net2)
    assert torch.equal(net2.conv.weight, net.conv.weight)


def test_load_errors_list_missing_unexpected_misshaped_with_file_name(tmp_path):
    save_checkpoint(tmp_path / "w", BNNet(width=4))

    class Other(BNNet):
        def __init__(self) -> None:
            super().__init__(width=6)  # conv/bn/fc shapes differ
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(tmp_path / "w", Other())
    msg = str(ei.value)
    assert str(tmp_path / "w.safetensors") in msg
    assert "missing keys (2): extra.bias, extra.weight" in msg
    assert "mis-shaped keys" in msg and "conv.weight: checkpoint (4, 3, 3, 3) vs model (6, 3, 3, 3)" in msg

    class Fewer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

    with pytest.raises(CheckpointError, match=r"unexpected keys \(7\): bn.bias"):
        load_checkpoint(tmp_path / "w", Fewer())
    missing, unexpected = load_weights(tmp_path / "w.safetensors", Fewer(), strict=False)
    assert missing == [] and "conv.weight" in unexpected
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_weights(tmp_path / "w.safetensors", BNNet(width=6), strict=False)
    with pytest.raises(CheckpointError, match="sidecar not found"):
        load_checkpoint(tmp_path / "nope", BNNet())
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "w", BNNet(), torch.optim.SGD(BNNet().parameters(), lr=1))


def test_interrupted_write_keeps_previous_checkpoint_and_leaves_no_temp_files(tmp_path, monkeypatch):
    net, opt = _trained(1)
    save_checkpoint(tmp_path / "last", net, opt, {"epoch": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    net2, opt2 = _trained(2)

    calls = {"n": 0}
    real = ck.write_bytes_atomic

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the optimizer file: the weights are already staged
            raise OSError("disk full")
        return real(path, data)

    monkeypatch.setattr(ck, "write_bytes_atomic", flaky)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "last", net2, opt2, {"epoch": 2})
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # same files, same bytes; no staged or temporary file left behind
    assert read_checkpoint_meta(tmp_path / "last")["epoch"] == 1
    load_checkpoint(tmp_path / "last", BNNet(), torch.optim.Adam(BNNet().parameters()))


def test_interrupted_between_renames_is_detected(tmp_path, monkeypatch):
    net, opt = _trained(1)
    save_checkpoint(tmp_path / "last", net, opt, {"epoch": 1})
    real = ck.os.replace

    def crash_before_json(src, dst):
        if str(dst).endswith("last.json"):  # weights and optimizer moved in place, JSON not yet
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", crash_before_json)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last", *_trained(2), {"epoch": 2})
    monkeypatch.setattr(ck.os, "replace", real)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert (tmp_path / "last.safetensors").exists() and not (tmp_path / "last.json").exists()
    with pytest.raises(CheckpointError, match="write was interrupted"):
        load_checkpoint(tmp_path / "last", BNNet())


def test_sidecar_is_a_versioned_file_and_old_sidecars_still_load(tmp_path):
    net, opt = _trained(1)
    jfile = save_checkpoint(tmp_path / "last", net, opt, {"epoch": 3, "note": "x"})
    raw = json.loads(jfile.read_text())
    assert raw["format"] == "modistill-checkpoint" and raw["version"] == 1
    assert raw["epoch"] == 3 and raw["note"] == "x"  # the caller's meta stays at the top level
    side = CheckpointMeta.read(jfile)
    assert side.weights == "last.safetensors" and side.unknown_fields == {"epoch": 3, "note": "x"}
    # A sidecar written before files carried their schema (no format/version) reads as version 1.
    jfile.write_text(json.dumps({k: v for k, v in raw.items() if k not in ("format", "version")}))
    assert load_checkpoint(tmp_path / "last", BNNet(), torch.optim.Adam(BNNet().parameters()))["epoch"] == 3
    # A newer version, another kind, or a file that is no sidecar: CheckpointError naming the file.
    for bad in ({**raw, "version": 2}, {**raw, "format": "modistill-run-config"}, {"hello": 1}):
        jfile.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match="last.json") as err:
            read_checkpoint_meta(tmp_path / "last")
        assert isinstance(err.value, ModistillError) and isinstance(err.value, RuntimeError)
    with pytest.raises(ValueError, match="reserved keys"):
        save_checkpoint(tmp_path / "x", net, None, {"token": "mine"})


def test_stale_staging_files_of_dead_writers_are_removed(tmp_path):
    from modistill.core.atomic import remove_stale_temps

    ck_dir = tmp_path / "checkpoints"
    ck_dir.mkdir()
    ours = ck._staging_path(ck_dir / "last.safetensors", "ab" * 16)
    stale = ours.with_name(ours.name.replace(f".{ck.os.getpid()}.", ".999999999."))  # a writer that is gone
    stale.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path, ["checkpoints"]) == 1 and not stale.exists()


def test_mixed_files_are_rejected_by_token(tmp_path):
    save_checkpoint(tmp_path / "a", BNNet())
    save_checkpoint(tmp_path / "b", BNNet())
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not belong to its JSON sidecar"):
        load_checkpoint(tmp_path / "a", BNNet())


def test_tagged_json_round_trip_is_exact():
    obj = {
        "state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2)}},
        "g": [{"betas": (0.9, 0.99), "x": None}],
    }
    tree, tensors = split_tensors(obj)
    back = join_tensors(json.loads(json.dumps(tree)), tensors)
    assert list(back["state"]) == [0] and back["g"][0]["betas"] == (0.9, 0.99)
    assert torch.equal(back["state"][0]["m"], torch.ones(2))
    with pytest.raises(TypeError, match="no pickle"):
        split_tensors({"f": object()})


def test_rng_state_round_trip_through_json():
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.randn()  # leave numpy with a cached gaussian
    state = json.loads(json.dumps(capture_rng_state()))
    first = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]
