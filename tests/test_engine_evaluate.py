"""evaluate(): metrics checked against hand-computed values on fixed logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from modistill.engine import TrainConfig, eval_kwargs, evaluate, evaluate_checkpoint, save_checkpoint
from modistill.engine.utils import fold_clips


class FixedLogits(Dataset):
    """Item i carries its own logits under "x": predict_fn just returns them."""

    def __init__(self, logits, labels) -> None:
        self.x = torch.as_tensor(logits, dtype=torch.float32)
        self.y = torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "label": self.y[i], "sample": f"s{i}"}


def passthrough(model: nn.Module, batch: dict) -> torch.Tensor:
    assert not model.training  # evaluate switches to eval mode
    return batch["x"].reshape(batch["x"].shape[0], -1)


def one_hot(classes, k):
    return torch.eye(k)[torch.as_tensor(classes)] * 2.0


def test_accuracy_per_class_confusion_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 0, 2]
    ds = FixedLogits(one_hot(preds, 3), labels)
    model = nn.Linear(1, 1).train()
    res = evaluate(model, passthrough, ds, batch_size=4, device="cpu", num_classes=3)  # batches of 4 and 2
    assert model.training  # mode restored
    assert res.n == 6 and res.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(res.per_class, [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(res.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])  # rows = true class
    np.testing.assert_array_equal(res.predictions, preds)
    np.testing.assert_array_equal(res.labels, labels)
    assert res.mean_class_accuracy == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert res.top5 is None
    d = res.to_dict()
    assert d["accuracy"] == pytest.approx(4 / 6) and d["confusion"][2] == [1, 0, 1]


def test_absent_class_is_nan_and_excluded_from_mean_and_ties_go_to_lowest_index():
    # K = 4, class 3 never occurs; sample 2 has tied logits for classes 1 and 2 -> predicted 1.
    logits = [[3, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 5]]
    res = evaluate(nn.Identity(), passthrough, FixedLogits(logits, [0, 1, 2, 2]), batch_size=3, num_classes=4)
    np.testing.assert_array_equal(res.predictions, [0, 1, 1, 3])
    assert np.isnan(res.per_class[3]) and res.per_class[2] == 0.0
    assert res.mean_class_accuracy == pytest.approx((1 + 1 + 0) / 3)
    assert res.to_dict()["per_class"][3] is None


def test_clips_per_video_averages_clip_logits():
    # Video 0: clip A says class 0 (2.0), clip B says class 1 (3.0): mean [1, 1.5, 0] -> class 1 (correct).
    # Video 1: clips [1, 0, 0] and [0, 0, 4] -> mean [0.5, 0, 2] -> class 2 (correct).
    clips = [[[[2.0, 0, 0]], [[0, 3.0, 0]]], [[[1.0, 0, 0]], [[0, 0, 4.0]]]]  # (V, N=2, 1, K)
    ds = FixedLogits(clips, [1, 2])
    seen = {}

    def pf(model, batch):
        seen["x"], seen["label"], seen["sample"] = batch["x"].shape, batch["label"].tolist(), batch["sample"]
        return batch["x"][:, 0, :]

    res = evaluate(nn.Identity(), pf, ds, batch_size=2, clips_per_video=2, num_classes=3)
    assert (
        seen["x"] == (4, 1, 3)
        and seen["label"] == [1, 1, 2, 2]
        and seen["sample"] == ["s0", "s0", "s1", "s1"]
    )
    assert res.accuracy == 1.0 and res.n == 2
    single = evaluate(nn.Identity(), lambda m, b: b["x"][:, 0, 0, :], ds, batch_size=2, num_classes=3)
    assert single.accuracy == 0.0  # the first clip alone gets both wrong: averaging matters
    np.testing.assert_allclose(
        evaluate(nn.Identity(), pf, ds, batch_size=1, clips_per_video=2, keep_logits=True).logits,
        [[1.0, 1.5, 0.0], [0.5, 0.0, 2.0]],
    )


def test_top5_accuracy():
    k = 7
    # true class ranked 1st, 3rd, 6th -> top-5 hits 2 of 3
    logits = torch.tensor(
        [[9, 0, 0, 0, 0, 0, 0], [5, 4, 3, 2, 1, 0, -1], [6, 5, 4, 3, 2, 1, 0]], dtype=torch.float32
    )
    res = evaluate(nn.Identity(), passthrough, FixedLogits(logits, [0, 2, 5]), batch_size=2)
    assert res.num_classes == k and res.top5 == pytest.approx(2 / 3) and res.accuracy == pytest.approx(1 / 3)
    assert "top5_accuracy" in res.metrics()


def test_bad_inputs_raise_clear_errors():
    ds = FixedLogits(one_hot([0, 1], 3), [0, 5])
    with pytest.raises(ValueError, match=r"labels \[5\] out of range \[0, 3\)"):
        evaluate(nn.Identity(), passthrough, ds, batch_size=2)
    ok = FixedLogits(one_hot([0, 1], 3), [0, 1])
    with pytest.raises(ValueError, match="predict_fn returned shape"):
        evaluate(nn.Identity(), lambda m, b: b["x"][:, None], ok, batch_size=2)
    with pytest.raises(ValueError, match="num_classes is 4"):
        evaluate(nn.Identity(), passthrough, ok, batch_size=2, num_classes=4)
    with pytest.raises(ValueError, match="leading clip dimension"):
        evaluate(
            nn.Identity(),
            passthrough,
            FixedLogits(torch.zeros(2, 3, 1, 3), [0, 1]),
            batch_size=2,
            clips_per_video=2,
        )
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate(nn.Identity(), passthrough, FixedLogits(torch.zeros(0, 3), []), batch_size=2)


def test_fold_clips_layout():
    b = {
        "rgb": torch.arange(2 * 3 * 4.0).reshape(2, 3, 4, 1),
        "label": torch.tensor([7, 8]),
        "name": ["a", "b"],
    }
    f = fold_clips(b, 3, 2)
    assert f["rgb"].shape == (6, 4, 1) and torch.equal(f["rgb"][4], b["rgb"][1, 1])
    assert f["label"].tolist() == [7, 7, 7, 8, 8, 8] and f["name"] == ["a", "a", "a", "b", "b", "b"]


def test_evaluate_checkpoint_loads_weights_first(tmp_path):
    torch.manual_seed(0)
    trained = nn.Linear(3, 3)
    save_checkpoint(tmp_path / "checkpoints" / "best", trained)
    x = torch.randn(10, 3)
    ds = FixedLogits(x, trained(x).argmax(1).detach())
    fresh = nn.Linear(3, 3)

    def pf(model, batch):
        return model(batch["x"])

    assert evaluate(fresh, pf, ds, batch_size=4).accuracy < 1.0  # a fresh model disagrees...
    res = evaluate_checkpoint(fresh, tmp_path, pf, ds, batch_size=4)  # run folder -> checkpoints/best
    assert res.accuracy == 1.0  # ...the loaded one agrees with itself


def test_eval_kwargs_from_train_config():
    cfg = TrainConfig(
        batch_size=8, eval_batch_size=6, device="cpu", amp="bf16", num_workers=2, progress=False
    )
    assert eval_kwargs(cfg, clips_per_video=3) == {
        "batch_size": 6,
        "device": "cpu",
        "amp": "bf16",
        "num_workers": 2,
        "clips_per_video": 3,
        "progress": False,
    }
    # The eval batch is global like the training batch: split over the processes, at least 1 each.
    assert eval_kwargs(cfg, world_size=4)["batch_size"] == 1
    assert eval_kwargs(TrainConfig(batch_size=8), world_size=2)["batch_size"] == 4
    kw = eval_kwargs(cfg, num_classes=3, device="cpu", num_workers=0, amp="off")
    assert kw["num_classes"] == 3 and kw["num_workers"] == 0
    with pytest.raises(TypeError, match="no argument.*'strict'"):
        eval_kwargs(cfg, strict=True)
    data = FixedLogits([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]], [1, 0])
    assert evaluate(nn.Identity(), passthrough, data, **kw).accuracy == 1.0
