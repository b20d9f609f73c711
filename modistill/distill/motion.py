"""Motion-distillation losses: a flow (motion) teacher distilled into an RGB-only student.

OUR RECONSTRUCTION (REF §6). The second method (Lu et al., ICONIP 2020, "Learning and Distillating the
Internal Relationship of Motion Features in Action Recognition") is known only from its abstract: it distils
the "internal relationship" of motion features, and cites Gatys et al. (neural style) and Johnson et al.
(perceptual losses). We therefore match feature *correlations* (Gram matrices, Gatys et al. 2015) between
student and teacher, optionally plus a frame-to-frame relation matrix. None of the details below
(normalisation, which stages, weights, the temporal term) come from that paper.

The baseline is MARS (Crasto et al., CVPR 2019): cross-entropy plus ``alpha`` times the MSE between the pooled
features of the RGB student and of the frozen flow teacher, ``alpha = 50`` in the MARS code.

All teacher inputs are detached: the teacher is a frozen target.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import _check_logits_labels

__all__ = ["gram_matrix", "mars_loss", "relation_loss", "temporal_relation"]


def _as_video_channels(feat: Tensor, T: int | None) -> Tensor:
    """Reshape a feature to ``(B, C, N)`` with ``N = T*h*w`` per video.

    ``feat`` is ``(B, C, N)`` already, or a frame-batched video feature ``(B*T, C, h, w)`` (frames of one
    video consecutive, the layout of ``VideoStream`` features, docs/ARCHITECTURE.md), or ``(B*T, C)`` pooled.
    """
    if feat.dim() == 3:
        return feat
    if feat.dim() not in (2, 4):
        raise ValueError(f"expected a (B, C, N), (B*T, C, h, w) or (B*T, C) feature, got {tuple(feat.shape)}")
    if T is None or T < 1:
        raise ValueError(f"a frame-batched feature of shape {tuple(feat.shape)} needs the frame count T >= 1")
    if feat.shape[0] % T:
        raise ValueError(f"feature batch {feat.shape[0]} is not a multiple of T={T} frames")
    b, c = feat.shape[0] // T, feat.shape[1]
    f = feat.reshape(b, T, c, -1)  # (B, T, C, h*w)
    return f.permute(0, 2, 1, 3).reshape(b, c, -1)  # (B, C, T*h*w)


def gram_matrix(feat: Tensor, T: int | None = None) -> Tensor:
    """Normalised Gram matrix ``G = F F^T / (C * N)`` per video (Gatys et al. 2015; REF §6).

    Args:
        feat: ``(B, C, N)``, or a video feature ``(B*T, C, h, w)`` / ``(B*T, C)`` with ``T`` given, in which
            case ``N = T*h*w`` (all positions of all frames of one video).
        T: frames per video, required for frame-batched input.

    Returns:
        ``(B, C, C)``.
    """
    f = _as_video_channels(feat, T)
    c, n = f.shape[1], f.shape[2]
    return torch.bmm(f, f.transpose(1, 2)) / float(c * n)


def temporal_relation(pooled: Tensor, T: int) -> Tensor:
    """Frame-to-frame cosine-similarity matrix per video (our reconstruction, REF §6).

    Args:
        pooled: ``(B*T, C)`` per-frame pooled features, or ``(B*T, C, h, w)`` (averaged over h, w first).
        T: frames per video.

    Returns:
        ``(B, T, T)`` with entry ``[b, i, j] = cos(frame_i, frame_j)`` of video ``b``.
    """
    if pooled.dim() == 4:
        pooled = pooled.mean(dim=(2, 3))
    if pooled.dim() != 2:
        raise ValueError(f"temporal_relation: expected (B*T, C) or (B*T, C, h, w), got {tuple(pooled.shape)}")
    if T < 1 or pooled.shape[0] % T:
        raise ValueError(f"temporal_relation: batch {pooled.shape[0]} is not a multiple of T={T} frames")
    v = F.normalize(pooled.reshape(pooled.shape[0] // T, T, -1), dim=-1)
    return torch.bmm(v, v.transpose(1, 2))


def relation_loss(
    student_feats: Mapping[str, Tensor],
    teacher_feats: Mapping[str, Tensor],
    layers: Mapping[str, float],
    T: int,
    temporal_weight: float = 0.0,
    temporal_layer: str = "pooled",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Relation (Gram) distillation loss, our reconstruction of Lu et al. 2020 (REF §6).

    ``sum_l w_l * mean_b ||G(F_s^l) - G(F_t^l)||_F^2`` plus, if ``temporal_weight > 0``,
    ``temporal_weight * mean_b ||R_s - R_t||_F^2`` where ``R`` is the ``(T, T)`` cosine-similarity matrix of
    the per-frame pooled features of ``temporal_layer``.

    Args:
        student_feats: layer -> student features ``(B*T, C, h, w)`` (or ``(B*T, C)`` for ``"pooled"``).
        teacher_feats: the teacher's features, same shapes; detached here.
        layers: layer -> weight. May be empty only when ``temporal_weight > 0``.
        T: frames per video.
        temporal_weight: weight of the temporal relation term (0 disables it).
        temporal_layer: feature used for the temporal term; 4-D features are averaged over space.

    Returns:
        ``(total, {"rel/<layer>": ..., ["rel/temporal": ...,] "rel/total": total})``.
    """
    if temporal_weight < 0:
        raise ValueError(f"relation_loss: temporal_weight must be >= 0, got {temporal_weight}")
    if not layers and temporal_weight == 0:
        raise ValueError("relation_loss: no layers and temporal_weight == 0: the loss would be empty")
    needed = list(layers) + ([temporal_layer] if temporal_weight > 0 else [])
    for name in needed:
        for role, feats in (("student", student_feats), ("teacher", teacher_feats)):
            if name not in feats:
                raise KeyError(
                    f"relation_loss: layer {name!r} missing from the {role} features "
                    f"(available: {sorted(feats)})"
                )
        if student_feats[name].shape[0] != teacher_feats[name].shape[0]:
            raise ValueError(
                f"relation_loss: layer {name!r}: student batch {student_feats[name].shape[0]} != "
                f"teacher batch {teacher_feats[name].shape[0]}"
            )
    parts: dict[str, Tensor] = {}
    terms: list[Tensor] = []
    for name, weight in layers.items():
        if name in ("total", "temporal"):
            raise ValueError(f"relation_loss: a layer may not be named {name!r} (reserved)")
        s, t = student_feats[name], teacher_feats[name].detach()
        # Gram matrices are (C, C): student and teacher must agree on C (no projection layer here).
        if s.shape[1] != t.shape[1]:
            raise ValueError(
                f"relation_loss: layer {name!r}: student has {s.shape[1]} channels, teacher {t.shape[1]}"
            )
        diff = gram_matrix(s, T) - gram_matrix(t, T)
        term = float(weight) * diff.pow(2).sum(dim=(1, 2)).mean()
        parts[f"rel/{name}"] = term
        terms.append(term)
    if temporal_weight > 0:
        r_s = temporal_relation(student_feats[temporal_layer], T)
        r_t = temporal_relation(teacher_feats[temporal_layer].detach(), T)
        term = float(temporal_weight) * (r_s - r_t).pow(2).sum(dim=(1, 2)).mean()
        parts["rel/temporal"] = term
        terms.append(term)
    total = torch.stack(terms).sum()
    parts["rel/total"] = total
    return total, parts


def mars_loss(
    student_logits: Tensor,
    labels: Tensor,
    student_pooled: Tensor,
    teacher_pooled: Tensor,
    alpha: float = 50.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MARS loss (Crasto et al., CVPR 2019): ``CE(student_logits, labels) + alpha * MSE(student, teacher)``.

    Args:
        student_logits: ``(B, K)``.
        labels: ``(B,)`` integer class indices.
        student_pooled: pooled student features, e.g. ``(B, C)`` (MSE = mean over all elements, as
            ``torch.nn.MSELoss`` in the MARS code).
        teacher_pooled: the frozen flow teacher's pooled features, same shape; detached here.
        alpha: feature-mimicking weight, 50 in the MARS code.

    Returns:
        ``(total, {"mars/ce": ..., "mars/mse": unweighted MSE, "mars/total": total})``.
    """
    if alpha < 0:
        raise ValueError(f"mars_loss: alpha must be >= 0, got {alpha}")
    _check_logits_labels(student_logits, labels, "mars_loss")
    if student_pooled.shape != teacher_pooled.shape:
        raise ValueError(
            f"mars_loss: student pooled shape {tuple(student_pooled.shape)} != "
            f"teacher pooled shape {tuple(teacher_pooled.shape)}"
        )
    ce = F.cross_entropy(student_logits, labels)
    mse = F.mse_loss(student_pooled, teacher_pooled.detach())
    total = ce + float(alpha) * mse
    return total, {"mars/ce": ce, "mars/mse": mse, "mars/total": total}
