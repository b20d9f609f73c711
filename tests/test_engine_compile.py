"""`train.compile`: the same training under torch.compile (within float tolerance), plain checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_engine_toys import ToyClips, ToyNet, ce_loss, predict

from modistill.engine import TrainConfig, train_stage


def _run(tmp_path, compile_: bool):
    torch.manual_seed(0)
    model = ToyNet()
    cfg = TrainConfig(epochs=2, batch_size=4, progress=False, tensorboard=False, compile=compile_)
    res = train_stage(
        model,
        loss_fn=ce_loss,
        predict_fn=predict,
        train_set=ToyClips(n=16),
        val_set=ToyClips(n=6, seed=7),
        cfg=cfg,
        run_dir=tmp_path / str(compile_),
    )
    return model, res


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    eager, r0 = _run(tmp_path, False)
    compiled, r1 = _run(tmp_path, True)
    for a, b in zip(r0.history, r1.history):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    saved = load_file(str(r1.best_checkpoint))
    assert set(saved) == set(eager.state_dict())  # no "_orig_mod." prefix: loadable into the plain model
    for k, v in compiled.state_dict().items():
        torch.testing.assert_close(v, eager.state_dict()[k], rtol=1e-4, atol=1e-5)


def test_compile_is_a_bool_and_not_part_of_stage_keys():
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes")
    from modistill.pipeline.runner import _NON_SEMANTIC

    assert "compile" in _NON_SEMANTIC  # compiling changes speed, not what a stage trains
