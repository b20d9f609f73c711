"""Per-subject replications (`subject_replications`): the demo's held-out performers get more videos while the
training set stays as it is (docs/demo.md)."""

from __future__ import annotations

import json

import pytest

from modistill.data.ntu import parse_sample_name, split_with_validation
from modistill.data.synth import generate_dataset, make_config, sample_names
from modistill.data.synth.config import SynthConfig


def test_sample_list_and_splits():
    cfg = make_config("tiny", subjects=[1, 2, 3], subject_replications={1: 4, 3: 2})
    names = sample_names(cfg)
    reps = {}
    for n in names:
        p = parse_sample_name(n)
        reps.setdefault(p.subject, set()).add(p.replication)
    assert reps == {1: {1, 2, 3, 4}, 2: {1}, 3: {1, 2}}
    split = split_with_validation(names, "xsub")
    per = 2 * 3  # cameras x classes
    assert len(split["val"]) == 4 * per and len(split["train"]) == per and len(split["test"]) == 2 * per
    assert SynthConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # Configs without the option keep their old form (and so their old synth_config.json).
    assert "subject_replications" not in make_config("tiny").to_dict()
    with pytest.raises(ValueError, match="replications"):
        make_config("tiny", subject_replications={1: 0})


def test_extending_a_folder_with_held_out_replications(tmp_path):
    kw = {"rgb_size": (64, 36), "depth_size": (32, 26), "frames": (4, 4), "classes": ["wave"], "cameras": [1]}
    root = tmp_path / "d"
    first = generate_dataset(root, "tiny", subjects=[1, 3], **kw)
    more = generate_dataset(root, "tiny", subjects=[1, 3], subject_replications={3: 2}, **kw)
    assert set(first) < set(more) and len(more) == 3
    cfg = json.loads((root / "synth_config.json").read_text())
    assert cfg["subject_replications"] == {"3": 2}
