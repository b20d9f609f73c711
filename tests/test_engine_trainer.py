"""train_stage(): learning, frozen params, clipping, bf16, lr schedule, logging, model selection."""

from __future__ import annotations

import json
import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from test_engine_toys import ToyClips, ToyNet, ce_loss, predict, state_equal
from torch import nn

from modistill.core.errors import ModistillError, SchemaError, UsageError
from modistill.engine import RunConfigFile, TrainConfig, evaluate, read_checkpoint_meta, train_stage
from modistill.engine import distributed as D
from modistill.engine.metrics_log import read_metrics


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, lr=1e-2, progress=False, tensorboard=False, log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def test_learning_happens_and_outputs_are_written(tmp_path):
    torch.manual_seed(0)
    model = ToyNet()
    train, val = ToyClips(n=48, seed=1), ToyClips(n=24, seed=2)
    before = evaluate(model, predict, val, batch_size=8).accuracy
    res = train_stage(
        model,
        loss_fn=ce_loss,
        predict_fn=predict,
        train_set=train,
        val_set=val,
        cfg=cfg(epochs=6),
        run_dir=tmp_path,
        config_dict={"exp": "toy", "path": tmp_path},
        stage="step1",
    )
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0]
    assert res.best_metric >= 0.95 > before + 0.3
    assert res.best_epoch == max(range(1, 7), key=lambda e: (res.history[e - 1]["val"]["accuracy"], -e))
    assert train.epochs_seen == list(range(6))  # dataset.set_epoch driven by the 0-based epoch
    # Files: checkpoints, config, metrics.
    ck = tmp_path / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == [
        "best.json",
        "best.safetensors",
        "last.json",
        "last.optim.safetensors",
        "last.safetensors",
    ]
    meta = read_checkpoint_meta(ck / "last")
    assert (
        meta["epoch"] == 6
        and meta["global_step"] == 36
        and meta["config"] == {"exp": "toy", "path": str(tmp_path)}
    )
    assert meta["train_config"]["lr"] == 1e-2 and len(meta["history"]) == 6
    run_cfg = RunConfigFile.read(tmp_path / "run_config.json")
    assert run_cfg.stage == "step1" and run_cfg.train == cfg(epochs=6).to_dict() and run_cfg.world_size == 1
    assert run_cfg.config == {"exp": "toy", "path": str(tmp_path)}
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "modistill-metrics", "version": 1}  # the header, then records
    recs = read_metrics(tmp_path)
    steps = [r for r in recs if r["kind"] == "step"]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(2, 37, 2)) and len(epochs) == 6
    assert set(steps[0]) >= {"stage", "epoch", "step", "lr", "loss", "parts", "samples_per_s"}
    assert steps[0]["parts"]["const"] == 1.0 and steps[0]["samples_per_s"] > 0
    assert epochs[0]["val"]["n"] == 24 and epochs[0]["stage"] == "step1"
    # The epoch loss is the sample-weighted mean of the step losses (windows of 2 equal batches here).
    assert epochs[0]["loss"] == pytest.approx(sum(s["loss"] for s in steps[:3]) / 3, rel=1e-5)


def test_frozen_and_unselected_params_stay_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = ToyNet()
    frozen0 = {k: v.clone() for k, v in model.frozen.state_dict().items()}
    body0 = {k: v.clone() for k, v in model.body.state_dict().items()}
    head0 = model.head.weight.clone()
    # Only the head is handed to the optimizer; the body requires grad but must not move either.
    train_stage(
        model,
        loss_fn=ce_loss,
        predict_fn=predict,
        train_set=ToyClips(n=16),
        val_set=None,
        cfg=cfg(optimizer="adamw", weight_decay=0.1),
        run_dir=tmp_path,
        params=model.head.parameters(),
    )
    assert state_equal(frozen0, model.frozen.state_dict()) == []
    assert state_equal(body0, model.body.state_dict()) == []
    assert not torch.equal(head0, model.head.weight)
    with pytest.raises(ValueError, match="do not belong to the model"):
        train_stage(
            model,
            loss_fn=ce_loss,
            predict_fn=predict,
            train_set=ToyClips(n=16),
            val_set=None,
            cfg=cfg(),
            run_dir=tmp_path / "x",
            params=nn.Linear(2, 2).parameters(),
        )


@pytest.mark.parametrize("clip", [None, 0.5])
def test_grad_clipping_bounds_the_update(tmp_path, clip):
    # SGD, lr 1, no momentum, one step over the whole set: the update IS minus the (clipped) gradient.
    torch.manual_seed(0)
    model = ToyNet()

    def big_loss(m, b):
        loss = 1000.0 * F.cross_entropy(m(b["rgb"]), b["label"])
        return loss, {}

    w0 = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    train_stage(
        model,
        loss_fn=big_loss,
        predict_fn=predict,
        train_set=ToyClips(n=8),
        val_set=None,
        cfg=cfg(epochs=1, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=clip, log_every=1),
        run_dir=tmp_path,
    )
    w1 = [p.detach() for p in model.parameters() if p.requires_grad]
    step = math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in zip(w0, w1)))
    rec = read_metrics(tmp_path)[0]
    if clip is None:
        assert step > 10 and "grad_norm" not in rec
    else:
        assert step == pytest.approx(clip, rel=1e-4)
        assert rec["grad_norm"] > 10  # the norm before clipping is what gets logged


def test_bf16_autocast_path_runs_on_cpu(tmp_path):
    torch.manual_seed(0)
    model = ToyNet()
    dtypes = []

    def loss_fn(m, b):
        logits = m(b["rgb"])
        dtypes.append(logits.dtype)
        return F.cross_entropy(logits.float(), b["label"]), {}

    res = train_stage(
        model,
        loss_fn=loss_fn,
        predict_fn=predict,
        train_set=ToyClips(n=32),
        val_set=ToyClips(n=12, seed=3),
        cfg=cfg(epochs=4, amp="bf16"),
        run_dir=tmp_path,
    )
    assert set(dtypes) == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert res.history[-1]["loss"] < res.history[0]["loss"] and res.best_metric > 0.6


def test_lr_milestones_and_non_finite_loss(tmp_path):
    res = train_stage(
        ToyNet(),
        loss_fn=ce_loss,
        predict_fn=predict,
        train_set=ToyClips(n=8),
        val_set=None,
        cfg=cfg(epochs=4, lr_milestones=[1, 3], lr_gamma=0.5),
        run_dir=tmp_path / "a",
    )
    assert [h["lr"] for h in res.history] == [1e-2, 5e-3, 5e-3, 2.5e-3]
    assert (
        res.best_epoch == 4 and read_checkpoint_meta(res.best_checkpoint)["epoch"] == 4
    )  # no val: last is best

    def nan_loss(m, b):
        return m(b["rgb"]).sum() * float("nan"), {"ce": torch.tensor(1.0)}

    with pytest.raises(FloatingPointError, match="non-finite loss nan at epoch 1, step 1"):
        train_stage(
            ToyNet(),
            loss_fn=nan_loss,
            predict_fn=predict,
            train_set=ToyClips(n=8),
            val_set=None,
            cfg=cfg(),
            run_dir=tmp_path / "b",
        )


def test_model_selection_keeps_best_validation_epoch(tmp_path):
    torch.manual_seed(0)
    model = ToyNet()
    val = ToyClips(n=4, seed=5)  # labels 0, 1, 2, 0
    # A scripted predictor: accuracy 0.5 after epoch 1, 1.0 after epoch 2, 0.25 after epoch 3.
    script = {1: [0, 1, 0, 1], 2: [0, 1, 2, 0], 3: [1, 0, 0, 0]}
    epoch = {"now": 0}
    snapshots = {}

    def pf(m, b):
        return F.one_hot(torch.tensor(script[epoch["now"]])[b["index"]], 3).float()

    def loss_fn(m, b):
        return ce_loss(m, b)

    def on_epoch_end(e, record):
        snapshots[e] = {k: v.clone() for k, v in model.state_dict().items()}

    class Counting(ToyClips):
        def set_epoch(self, e):
            epoch["now"] = e + 1

    res = train_stage(
        model,
        loss_fn=loss_fn,
        predict_fn=pf,
        train_set=Counting(n=8),
        val_set=val,
        cfg=cfg(epochs=3),
        run_dir=tmp_path,
        on_epoch_end=on_epoch_end,
    )
    assert [h["val"]["accuracy"] for h in res.history] == [0.5, 1.0, 0.25]
    assert res.best_epoch == 2 and res.best_metric == 1.0 and [h["best"] for h in res.history] == [1, 1, 0]
    assert read_checkpoint_meta(tmp_path / "checkpoints" / "best")["epoch"] == 2
    assert state_equal(snapshots[2], model.state_dict()) == []  # restore_best: the model holds epoch 2
    assert state_equal(snapshots[3], snapshots[2])  # (and epoch 3 really differs)


def test_eval_every_and_select_metric(tmp_path):
    res = train_stage(
        ToyNet(),
        loss_fn=ce_loss,
        predict_fn=predict,
        train_set=ToyClips(n=8),
        val_set=ToyClips(n=6),
        cfg=cfg(epochs=3, eval_every=2, select_metric="mean_class_accuracy"),
        run_dir=tmp_path,
    )
    assert ["val" in h for h in res.history] == [False, True, True]  # every 2nd epoch + the last
    assert res.select_metric == "mean_class_accuracy"
    with pytest.raises(ValueError, match="select_metric 'f1' is not one of"):
        train_stage(
            ToyNet(),
            loss_fn=ce_loss,
            predict_fn=predict,
            train_set=ToyClips(n=8),
            val_set=ToyClips(n=6),
            cfg=cfg(epochs=1, select_metric="f1"),
            run_dir=tmp_path / "b",
        )


def test_refuses_to_overwrite_and_tensorboard_events(tmp_path):
    kw = dict(loss_fn=ce_loss, predict_fn=predict, train_set=ToyClips(n=8), val_set=ToyClips(n=3))
    train_stage(ToyNet(), cfg=cfg(epochs=1, tensorboard=True, log_every=1), run_dir=tmp_path, **kw)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    with pytest.raises(FileExistsError, match="pass resume=True"):
        train_stage(ToyNet(), cfg=cfg(epochs=1), run_dir=tmp_path, **kw)


def test_train_config_validation():
    with pytest.raises(UsageError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr_milestones"):
        TrainConfig(lr_milestones=[0])
    # YAML 1.1 reads "1e-3" as a string: the error says so instead of failing later inside the optimizer.
    with pytest.raises(
        ValueError, match=r"epochs must be >= 0, got -1; lr must be a number, got '1e-3' \(str\)"
    ):
        TrainConfig(lr="1e-3", epochs=-1)
    with pytest.raises(ValueError, match="unknown TrainConfig keys: \\['lrr'\\]"):
        TrainConfig.from_dict({"lrr": 1})
    c = TrainConfig(lr_milestones=[5], grad_clip=1.0)
    assert TrainConfig.from_dict(c.to_dict()) == c
    # The global batch must split evenly over ranks: pretend to be rank 0 of 2 without starting a group.
    with mock.patch.object(D, "init_distributed", return_value=D.DistInfo(0, 2, 0)):
        with pytest.raises(ValueError, match="batch_size 3 .global. is not divisible by the 2 processes"):
            train_stage(
                ToyNet(),
                loss_fn=ce_loss,
                predict_fn=predict,
                train_set=ToyClips(n=8),
                val_set=None,
                cfg=TrainConfig(batch_size=3, progress=False),
                run_dir="/nonexistent",
            )


def test_missing_tensorboard_warns_once_and_jsonl_still_written(tmp_path, monkeypatch, caplog):
    import sys

    from modistill.engine import metrics_log

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import raise ImportError
    monkeypatch.setattr(metrics_log, "_TB_WARNED", False)
    kw = dict(loss_fn=ce_loss, predict_fn=predict, train_set=ToyClips(n=8), val_set=None)
    with caplog.at_level("WARNING", logger="modistill.engine"):
        for name in ("a", "b"):
            train_stage(ToyNet(), cfg=cfg(epochs=1, tensorboard=True), run_dir=tmp_path / name, **kw)
    assert caplog.text.count("TensorBoard logging disabled") == 1
    assert not (tmp_path / "a" / "tb").exists() and read_metrics(tmp_path / "b")


def test_metrics_header_survives_resume_truncation_and_old_files_still_read(tmp_path):
    kw = dict(loss_fn=ce_loss, predict_fn=predict, train_set=ToyClips(n=8), val_set=None, run_dir=tmp_path)
    train_stage(ToyNet(), cfg=cfg(epochs=1), **kw)
    path = tmp_path / "metrics.jsonl"
    header = path.read_text().splitlines()[0]
    # A killed epoch 2 left a record behind: the resume drops it and keeps the header.
    with open(path, "a") as f:
        f.write(json.dumps({"stage": "train", "kind": "step", "epoch": 2, "step": 99}) + "\n")
    train_stage(ToyNet(), cfg=cfg(epochs=2), resume=True, **kw)
    lines = path.read_text().splitlines()
    assert lines[0] == header and sum("format" in ln for ln in lines) == 1
    recs = read_metrics(tmp_path)
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1, 2]
    assert 99 not in [r["step"] for r in recs]
    # Written before the header existed: version 1, read as is. A newer version is refused.
    path.write_text("\n".join(lines[1:]) + "\n")
    assert read_metrics(tmp_path) == recs
    path.write_text(json.dumps({"format": "modistill-metrics", "version": 9}) + "\n" + "\n".join(lines[1:]))
    with pytest.raises(SchemaError, match="version 9 is not supported"):
        read_metrics(tmp_path)


def test_user_side_errors_are_modistill_errors(tmp_path):
    with pytest.raises(ModistillError, match="select_metric 'f1'"):
        train_stage(
            ToyNet(),
            loss_fn=ce_loss,
            predict_fn=predict,
            train_set=ToyClips(n=8),
            val_set=ToyClips(n=3),
            cfg=cfg(epochs=1, select_metric="f1"),
            run_dir=tmp_path,
        )
    with pytest.raises(ModistillError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"lrr": 1})
