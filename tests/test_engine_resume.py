"""A killed run resumed from its last checkpoint ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_engine_toys import ToyClips, ToyNet, ce_loss, predict, state_equal

from modistill.engine import TrainConfig, train_stage
from modistill.engine.metrics_log import read_metrics

TIMING = {"time_s", "samples_per_s"}


class Killed(Exception):
    pass


def _cfg(epochs: int, workers: int = 0, seed: int = 0) -> TrainConfig:
    # Dropout + on-the-fly noise + an lr drop: everything that could break a replay.
    return TrainConfig(
        epochs=epochs,
        batch_size=8,
        lr=1e-2,
        lr_milestones=[2],
        seed=seed,
        num_workers=workers,
        progress=False,
        tensorboard=False,
        log_every=2,
    )


def _run(run_dir, epochs, *, workers=0, seed=0, resume=False, loss_fn=ce_loss, on_epoch_end=None):
    torch.manual_seed(123)  # same initial weights for every run (a resumed run overwrites them anyway)
    model = ToyNet(p_drop=0.3)
    res = train_stage(
        model,
        loss_fn=loss_fn,
        predict_fn=predict,
        train_set=ToyClips(n=24, augment=0.3),
        val_set=ToyClips(n=9, seed=7),
        cfg=_cfg(epochs, workers, seed),
        run_dir=run_dir,
        resume=resume,
        config_dict={"name": "resume-test"},
        on_epoch_end=on_epoch_end,
    )
    return model, res


def _strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _assert_same_run(dir_a, model_a, res_a, dir_b, model_b, res_b):
    assert state_equal(model_a.state_dict(), model_b.state_dict()) == []
    for name in ("last.safetensors", "best.safetensors", "last.optim.safetensors"):
        a, b = load_file(dir_a / "checkpoints" / name), load_file(dir_b / "checkpoints" / name)
        assert state_equal(a, b) == [], name
    assert _strip(res_a.history) == _strip(res_b.history)
    assert (res_a.best_epoch, res_a.best_metric, res_a.global_step) == (
        res_b.best_epoch,
        res_b.best_metric,
        res_b.global_step,
    )
    assert _strip(read_metrics(dir_a)) == _strip(read_metrics(dir_b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted 4-epoch runs, with in-process loading (0 workers) and with 1 worker process."""
    out = {}
    for workers in (0, 1):
        d = tmp_path_factory.mktemp(f"ref{workers}")
        model, res = _run(d, 4, workers=workers)
        out[workers] = (d, model, res)
    return out


def test_reference_is_not_trivially_reproducible(reference, tmp_path):
    # The control: randomness really matters here (another seed ends elsewhere), so equality below means
    # the replay is exact, not that the run ignores its random sources.
    d0, model0, _ = reference[0]
    model_s, _ = _run(tmp_path, 4, seed=1)
    assert state_equal(model0.state_dict(), model_s.state_dict())
    assert state_equal(
        model0.state_dict(), reference[1][1].state_dict()
    )  # worker RNG differs from in-process


def test_resume_after_end_of_epoch_kill(reference, tmp_path):
    def kill_after_2(epoch, record):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _run(tmp_path, 4, on_epoch_end=kill_after_2)
    model, res = _run(tmp_path, 4, resume=True)
    _assert_same_run(*reference[0], tmp_path, model, res)


def test_resume_after_shorter_run(reference, tmp_path):
    _run(tmp_path, 1)
    model, res = _run(tmp_path, 4, resume=True)
    _assert_same_run(*reference[0], tmp_path, model, res)
    # Resuming a finished run trains nothing and reports the same result.
    model2, res2 = _run(tmp_path, 4, resume=True)
    assert res2.epochs_completed == 4 and res2.best_epoch == res.best_epoch
    assert state_equal(model2.state_dict(), model.state_dict()) == []


def test_resume_after_mid_epoch_kill_with_worker_processes(reference, tmp_path):
    calls = {"n": 0}

    def dies_in_epoch_3(model, batch):
        calls["n"] += 1
        if calls["n"] == 3 * 2 + 3:  # 3 steps per epoch: the last step of epoch 3
            raise Killed
        return ce_loss(model, batch)

    with pytest.raises(Killed):
        _run(tmp_path, 4, workers=1, loss_fn=dies_in_epoch_3)
    assert max(r["epoch"] for r in read_metrics(tmp_path)) == 3  # the dead epoch left step records behind
    model, res = _run(tmp_path, 4, workers=1, resume=True)
    _assert_same_run(*reference[1], tmp_path, model, res)


def test_resume_without_checkpoint_starts_fresh(reference, tmp_path):
    model, res = _run(tmp_path, 4, resume=True)
    _assert_same_run(*reference[0], tmp_path, model, res)


def test_resume_takes_hyperparameters_from_the_new_config(tmp_path, caplog):
    kw = dict(loss_fn=ce_loss, predict_fn=predict, train_set=ToyClips(n=8), val_set=None, run_dir=tmp_path)
    train_stage(ToyNet(), cfg=TrainConfig(epochs=1, lr=1e-2, progress=False, tensorboard=False), **kw)
    with caplog.at_level("WARNING", logger="modistill.engine"):
        res = train_stage(
            ToyNet(), cfg=TrainConfig(epochs=2, lr=1e-3, progress=False, tensorboard=False), resume=True, **kw
        )
    assert [h["lr"] for h in res.history] == [1e-2, 1e-3]
    assert "resuming with changed settings ['lr']" in caplog.text
