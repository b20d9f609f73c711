"""Exact-value tests of the motion-distillation losses (REF §6: Gram relation, MARS)."""

from __future__ import annotations

import math

import pytest
import torch

from modistill.distill import gram_matrix, mars_loss, relation_loss, temporal_relation

F23 = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]  # C=2 channels, N=3 positions
# F F^T = [[1+4+9, 4+10+18], [., 16+25+36]] = [[14, 32], [32, 77]], divided by C*N = 6
G23 = [[14 / 6, 32 / 6], [32 / 6, 77 / 6]]


def test_gram_hand_computed_2x3():
    g = gram_matrix(torch.tensor([F23], dtype=torch.float64))
    assert g.shape == (1, 2, 2)
    assert torch.allclose(g[0], torch.tensor(G23, dtype=torch.float64))


def test_gram_of_video_feature_uses_all_frames_of_one_video():
    torch.manual_seed(0)
    B, T, C, h, w = 2, 3, 4, 2, 2
    feat = torch.randn(B * T, C, h, w, dtype=torch.float64)  # frames of a video are consecutive
    g = gram_matrix(feat, T=T)
    assert g.shape == (B, C, C)
    for b in range(B):
        frames = [feat[b * T + t].reshape(C, h * w) for t in range(T)]
        f = torch.cat(frames, dim=1)  # (C, T*h*w)
        assert torch.allclose(g[b], f @ f.T / (C * T * h * w))
    with pytest.raises(ValueError, match="multiple of T"):
        gram_matrix(feat, T=4)
    with pytest.raises(ValueError, match="frame count"):
        gram_matrix(feat)


def test_relation_loss_hand_computed_and_batch_mean():
    # Video 0: student = F23 and teacher = 0 -> ||G||_F^2; video 1: identical -> 0. Mean over the batch.
    # One frame (T=1) of 1x3 positions per video.
    s = torch.tensor([F23, F23], dtype=torch.float64).reshape(2, 2, 1, 3)
    t = torch.stack([torch.zeros(2, 1, 3, dtype=torch.float64), s[1]])
    g_sq = sum(v * v for row in G23 for v in row)  # (14^2 + 2*32^2 + 77^2) / 36
    total, parts = relation_loss({"layer4": s}, {"layer4": t}, {"layer4": 2.0}, T=1)
    assert total.item() == pytest.approx(2.0 * g_sq / 2, rel=1e-12)
    assert set(parts) == {"rel/layer4", "rel/total"}


def test_relation_loss_zero_for_identical_and_teacher_gets_no_gradient():
    torch.manual_seed(1)
    s = torch.randn(4, 3, 2, 2, requires_grad=True)
    t = torch.randn(4, 3, 2, 2, requires_grad=True)
    zero, _ = relation_loss({"l": s}, {"l": s.detach().clone()}, {"l": 1.0}, T=2)
    assert zero.item() == 0.0
    total, _ = relation_loss({"l": s}, {"l": t}, {"l": 1.0}, T=2)
    total.backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_temporal_relation_term_hand_computed():
    # T=2 frames, one video. Student frames [1,0], [0,1] -> R_s = I; teacher frames [1,0], [2,0] -> all ones.
    # ||R_s - R_t||_F^2 = 0 + 1 + 1 + 0 = 2.
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert torch.allclose(temporal_relation(s, 2)[0], torch.eye(2))
    total, parts = relation_loss({"pooled": s}, {"pooled": t}, {}, T=2, temporal_weight=0.5)
    assert total.item() == pytest.approx(0.5 * 2.0)
    assert set(parts) == {"rel/temporal", "rel/total"}
    # Spatial maps are averaged over space first.
    s4 = s.reshape(2, 2, 1, 1).expand(2, 2, 3, 3)
    assert torch.allclose(temporal_relation(s4, 2), temporal_relation(s, 2))


def test_relation_loss_errors():
    x = torch.zeros(2, 3, 1, 1)
    with pytest.raises(ValueError, match="empty"):
        relation_loss({"l": x}, {"l": x}, {}, T=1)
    with pytest.raises(KeyError, match="layer3.*teacher"):
        relation_loss({"layer3": x}, {"l": x}, {"layer3": 1.0}, T=1)
    with pytest.raises(ValueError, match="channels"):
        relation_loss({"l": x}, {"l": torch.zeros(2, 4, 1, 1)}, {"l": 1.0}, T=1)


def test_mars_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # softmax = [1/4, 3/4]
    labels = torch.tensor([1])
    s_feat = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    t_feat = torch.tensor([[1.0, 0.0, 3.0, 2.0]], dtype=torch.float64, requires_grad=True)
    # MSE = (0 + 4 + 0 + 4) / 4 = 2; CE = -ln(3/4)
    total, parts = mars_loss(logits, labels, s_feat, t_feat)
    assert parts["mars/ce"].item() == pytest.approx(-math.log(0.75), rel=1e-12)
    assert parts["mars/mse"].item() == pytest.approx(2.0, rel=1e-12)
    assert total.item() == pytest.approx(-math.log(0.75) + 50.0 * 2.0, rel=1e-12)
    total.backward()
    assert t_feat.grad is None and s_feat.grad is not None and s_feat.grad.abs().sum() > 0
    same, parts = mars_loss(logits, labels, t_feat.detach(), t_feat.detach(), alpha=7.0)
    assert parts["mars/mse"].item() == 0.0
    assert same.item() == pytest.approx(-math.log(0.75), rel=1e-12)
    with pytest.raises(ValueError, match="pooled shape"):
        mars_loss(logits, labels, s_feat, t_feat[:, :3])
