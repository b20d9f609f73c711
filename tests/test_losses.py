"""Exact-value and gradient tests of Garcia et al. 2018 eqs. 3, 5-6, 7 (modistill.distill.losses)."""

from __future__ import annotations

import math

import pytest
import torch

from modistill.distill import (
    cross_entropy_loss,
    generalized_distillation_loss,
    hallucination_loss,
    total_loss,
)

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def _softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


# ---------------------------------------------------------------- eq. 3
def _hall_pair() -> tuple[dict, dict]:
    # sigmoid(teacher) = [0.5, 0.75, 0.5, 0.5]; sigmoid(student) = [0.5, 0.5, 0.75, 0.5]
    # squared differences = [0, 1/16, 1/16, 0]: sum 0.125, mean 0.03125
    t4 = torch.tensor([[0.0, LN3], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    s4 = torch.tensor([[0.0, 0.0], [LN3, 0.0]]).reshape(1, 1, 2, 2)
    # layer3: sigmoid(t)=0.5 everywhere, sigmoid(s)=0.75 in one of 2 entries -> sum 1/16, mean 1/32
    t3 = torch.zeros(2, 1)
    s3 = torch.tensor([[LN3], [0.0]])
    return {"layer3": t3, "layer4": t4}, {"layer3": s3, "layer4": s4}


def test_hall_mean_single_layer():
    t, s = _hall_pair()
    total, parts = hallucination_loss(t, s, {"layer4": 1.0}, reduction="mean")
    assert total.item() == pytest.approx(0.03125, abs=1e-7)
    assert set(parts) == {"hall/layer4", "hall/total"}
    assert parts["hall/layer4"].item() == pytest.approx(0.03125, abs=1e-7)


def test_hall_default_is_the_squared_norm_per_sample():
    # One sample (B = 1, T = 1): the paper's ||.||^2 is the sum over the map, 0.125, not its mean 0.03125.
    t, s = _hall_pair()
    total, _ = hallucination_loss(t, s, {"layer4": 1.0})
    assert total.item() == pytest.approx(0.125, abs=1e-7)


def test_hall_sample_frame_reductions_by_hand():
    # B = 2 videos x T = 3 frames of (C=2, 2x2) maps; frame f of video b differs from the teacher (sigmoid 0.5)
    # by 0.25 in k(b, f) elements (sigmoid(ln 3) = 0.75), so each squared difference is 1/16.
    k = [[1, 0, 2], [3, 1, 0]]
    t = torch.zeros(6, 2, 2, 2)
    s = torch.zeros(6, 2, 2, 2)
    for b in range(2):
        for f in range(3):
            s.view(6, -1)[b * 3 + f, : k[b][f]] = LN3
    per_video = [sum(row) / 16 for row in k]  # squared norm of each video: 3/16, 4/16
    sample, _ = hallucination_loss({"l": t}, {"l": s}, {"l": 2.0}, reduction="sample", frames=3)
    assert sample.item() == pytest.approx(2.0 * (per_video[0] + per_video[1]) / 2, rel=1e-6)
    frame, _ = hallucination_loss({"l": t}, {"l": s}, {"l": 2.0}, reduction="frame", frames=3)
    assert frame.item() == pytest.approx(2.0 * 7 / 16 / 6, rel=1e-6)
    total_sum, _ = hallucination_loss({"l": t}, {"l": s}, {"l": 2.0}, reduction="sum")
    assert total_sum.item() == pytest.approx(2.0 * 7 / 16, rel=1e-6)
    mean, _ = hallucination_loss({"l": t}, {"l": s}, {"l": 2.0}, reduction="mean")
    assert mean.item() == pytest.approx(2.0 * 7 / 16 / 48, rel=1e-6)
    with pytest.raises(ValueError, match="not videos of 4 frames"):
        hallucination_loss({"l": t}, {"l": s}, {"l": 1.0}, reduction="sample", frames=4)


def test_hall_sum_and_multilayer_weights():
    t, s = _hall_pair()
    total, parts = hallucination_loss(t, s, {"layer3": 2.0, "layer4": 0.5}, reduction="sum")
    assert parts["hall/layer3"].item() == pytest.approx(2.0 * 0.0625, abs=1e-7)
    assert parts["hall/layer4"].item() == pytest.approx(0.5 * 0.125, abs=1e-7)
    assert total.item() == pytest.approx(0.125 + 0.0625, abs=1e-7)
    total_m, _ = hallucination_loss(t, s, {"layer3": 2.0, "layer4": 0.5}, reduction="mean")
    assert total_m.item() == pytest.approx(2.0 / 32 + 0.5 / 32, abs=1e-7)


def test_hall_released_code_parity_recipe():
    # Released code: sum reduction, last stage only, times 0.01 (REF §2).
    t, s = _hall_pair()
    total, _ = hallucination_loss(t, s, {"layer4": 0.01}, reduction="sum")
    assert total.item() == pytest.approx(0.01 * 0.125, abs=1e-9)


def test_hall_zero_for_identical_and_gradients():
    torch.manual_seed(0)
    teacher = torch.randn(4, 3, 2, 2, requires_grad=True)
    student = torch.randn(4, 3, 2, 2, requires_grad=True)
    zero, _ = hallucination_loss({"l": teacher}, {"l": teacher.detach().clone()}, {"l": 1.0})
    assert zero.item() == 0.0
    total, _ = hallucination_loss({"l": teacher}, {"l": student}, {"l": 1.0})
    total.backward()
    assert teacher.grad is None  # the teacher is a target
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_hall_errors_name_the_layer():
    t, s = _hall_pair()
    bad = dict(s, layer4=torch.zeros(1, 1, 3, 2))
    with pytest.raises(ValueError, match="layer4.*teacher shape"):
        hallucination_loss(t, bad, {"layer4": 1.0})
    with pytest.raises(KeyError, match="layer2.*teacher"):
        hallucination_loss(t, s, {"layer2": 1.0})
    with pytest.raises(ValueError, match="reduction"):
        hallucination_loss(t, s, {"layer4": 1.0}, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        hallucination_loss(t, s, {})


# ---------------------------------------------------------------- eq. 5-6
STUDENT = [1.0, 2.0, 3.0]
TEACHER = [3.0, 1.0, 0.5]
LABEL = 1


def _gd_by_hand(lam: float, T: float, student_temperature: bool, t_squared: bool) -> tuple[float, float]:
    p = _softmax(STUDENT)
    hard = -math.log(p[LABEL])
    s = _softmax([v / T for v in TEACHER])
    q = _softmax([v / T for v in STUDENT]) if student_temperature else p
    soft = -sum(si * math.log(qi) for si, qi in zip(s, q))
    if t_squared:
        soft *= T * T
    return (1 - lam) * hard + lam * soft, soft


def _gd_inputs(requires_grad: bool = False):
    s = torch.tensor([STUDENT], dtype=torch.float64, requires_grad=requires_grad)
    t = torch.tensor([TEACHER], dtype=torch.float64, requires_grad=requires_grad)
    return s, t, torch.tensor([LABEL])


def test_gd_hard_term_by_hand():
    s, t, y = _gd_inputs()
    # softmax([1,2,3])[1] = e^2 / (e + e^2 + e^3)
    expected = -math.log(math.exp(2) / (math.exp(1) + math.exp(2) + math.exp(3)))
    _, parts = generalized_distillation_loss(s, t, y)
    assert parts["gd/hard"].item() == pytest.approx(expected, rel=1e-12)
    # lam = 0 is plain cross-entropy
    total0, _ = generalized_distillation_loss(s, t, y, lam=0.0)
    assert total0.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("student_temperature", [False, True])
@pytest.mark.parametrize("t_squared", [False, True])
@pytest.mark.parametrize("lam,T", [(0.5, 10.0), (0.3, 2.0), (1.0, 1.0)])
def test_gd_matches_hand_computation(student_temperature, t_squared, lam, T):
    s, t, y = _gd_inputs()
    total, parts = generalized_distillation_loss(
        s, t, y, lam=lam, T=T, student_temperature=student_temperature, t_squared=t_squared
    )
    exp_total, exp_soft = _gd_by_hand(lam, T, student_temperature, t_squared)
    assert total.item() == pytest.approx(exp_total, rel=1e-12)
    assert parts["gd/soft"].item() == pytest.approx(exp_soft, rel=1e-12)
    assert parts["gd/total"].item() == pytest.approx(exp_total, rel=1e-12)
    assert set(parts) == {"gd/hard", "gd/soft", "gd/total"}


def test_gd_paper_default_explicit_numbers():
    # Paper defaults lam=0.5, T=10, no student temperature, no T^2, written out fully.
    s, t, y = _gd_inputs()
    zs = math.exp(1) + math.exp(2) + math.exp(3)
    log_p = [1 - math.log(zs), 2 - math.log(zs), 3 - math.log(zs)]
    zt = math.exp(0.3) + math.exp(0.1) + math.exp(0.05)
    soft_t = [math.exp(0.3) / zt, math.exp(0.1) / zt, math.exp(0.05) / zt]
    soft = -(soft_t[0] * log_p[0] + soft_t[1] * log_p[1] + soft_t[2] * log_p[2])
    expected = 0.5 * -log_p[1] + 0.5 * soft
    total, _ = generalized_distillation_loss(s, t, y)
    assert total.item() == pytest.approx(expected, rel=1e-12)


def test_gd_options_change_the_value():
    s, t, y = _gd_inputs()
    base = generalized_distillation_loss(s, t, y)[1]["gd/soft"].item()
    sq = generalized_distillation_loss(s, t, y, t_squared=True)[1]["gd/soft"].item()
    assert sq == pytest.approx(100.0 * base, rel=1e-12)
    st = generalized_distillation_loss(s, t, y, student_temperature=True)[1]["gd/soft"].item()
    assert abs(st - base) > 1e-3


def test_gd_gradient_only_to_student_and_batch_mean():
    s, t, y = _gd_inputs(requires_grad=True)
    total, _ = generalized_distillation_loss(s, t, y)
    total.backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0
    # Batch of two identical rows gives the same (mean) value.
    s2 = torch.tensor([STUDENT, STUDENT], dtype=torch.float64)
    t2 = torch.tensor([TEACHER, TEACHER], dtype=torch.float64)
    two, _ = generalized_distillation_loss(s2, t2, torch.tensor([LABEL, LABEL]))
    assert two.item() == pytest.approx(total.item(), rel=1e-12)


def test_gd_validation():
    s, t, y = _gd_inputs()
    with pytest.raises(ValueError, match="lam"):
        generalized_distillation_loss(s, t, y, lam=1.5)
    with pytest.raises(ValueError, match="T must be > 0"):
        generalized_distillation_loss(s, t, y, T=0.0)
    with pytest.raises(ValueError, match="teacher logits shape"):
        generalized_distillation_loss(s, t[:, :2], y)
    with pytest.raises(ValueError, match="labels must lie in"):
        generalized_distillation_loss(s, t, torch.tensor([3]))
    with pytest.raises(ValueError, match="labels must be"):
        generalized_distillation_loss(s, t, torch.tensor([1.0]))


# ---------------------------------------------------------------- eq. 7 and CE
def test_total_loss_eq7():
    gd, hall = torch.tensor(2.0), torch.tensor(4.0)
    total, parts = total_loss(gd, hall)
    assert total.item() == pytest.approx(3.0)
    total, parts = total_loss(gd, hall, alpha=0.25)
    assert total.item() == pytest.approx(0.75 * 2.0 + 0.25 * 4.0)
    assert set(parts) == {"eq7/gd", "eq7/hall", "eq7/total"}
    with pytest.raises(ValueError, match="alpha"):
        total_loss(gd, hall, alpha=-0.1)
    with pytest.raises(ValueError, match="scalar"):
        total_loss(torch.ones(2), hall)


def test_cross_entropy_helper():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([2, 0])
    p = _softmax([1.0, 2.0, 3.0])[2]
    expected = 0.5 * (-math.log(p) + math.log(3.0))
    loss, parts = cross_entropy_loss(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert list(parts) == ["ce"]
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        cross_entropy_loss(logits[0], labels)
