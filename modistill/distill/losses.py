"""The losses of Garcia et al., ECCV 2018 (eqs. 3, 5-6, 7) as plain functions of tensors.

Every function returns ``(total, parts)``: ``total`` is a scalar tensor to back-propagate, ``parts`` maps
names such as ``"gd/soft"`` to scalar tensors for logging. Teacher inputs are always detached here: the
teacher is a target, so no distillation term ever sends gradient into it (REF §2, REF §3 step 3).

Sources of each formula and option are named in the docstrings; docs/losses.md has the full comparison of the
paper, the authors' released code and Hinton et al.'s knowledge distillation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "cross_entropy_loss",
    "generalized_distillation_loss",
    "hallucination_loss",
    "total_loss",
]

Reduction = Literal["sample", "frame", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("sample", "frame", "mean", "sum")


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_logits_labels(logits: Tensor, labels: Tensor, what: str) -> None:
    """Validate ``logits`` (B, K) against integer ``labels`` (B,) with a message naming ``what``."""
    if logits.dim() != 2:
        raise ValueError(f"{what}: logits must be (B, K), got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{what}: labels must be (B,) = ({logits.shape[0]},), got shape {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{what}: labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(
            f"{what}: labels must lie in [0, {logits.shape[1] - 1}], "
            f"got min {int(labels.min())} and max {int(labels.max())}"
        )


def cross_entropy_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Plain softmax cross-entropy, mean over the batch (steps 1, 2 and 4 of the paper, REF §3).

    Args:
        logits: ``(B, K)`` un-normalised class scores (e.g. video logits = mean of frame logits).
        labels: ``(B,)`` integer class indices.

    Returns:
        ``(loss, {"ce": loss})``.
    """
    _check_logits_labels(logits, labels, "cross_entropy_loss")
    loss = F.cross_entropy(logits, labels)
    return loss, {"ce": loss}


def hallucination_loss(
    teacher_feats: Mapping[str, Tensor],
    student_feats: Mapping[str, Tensor],
    layers: Mapping[str, float],
    reduction: Reduction = "sample",
    frames: int = 1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Hallucination loss, Garcia et al. 2018 eq. 3 (from Hoffman et al. CVPR 2016; REF §2).

    ``sum_l w_l * reduce((sigmoid(A_teacher_l) - sigmoid(A_student_l)) ** 2)`` over the named layers.

    Args:
        teacher_feats: layer name -> activations of the teacher (depth) stream, ``(B*T, C, h, w)`` (or
            ``(B*T, C)`` for ``"pooled"``): frames of a video are consecutive; detached here.
        student_feats: layer name -> activations of the student (hallucination) stream, same shapes.
        layers: layer name -> weight ``lambda_l`` (eq. 3). Must not be empty.
        reduction: ``"sample"`` (default, the paper's ||.||^2 per sample: a sum over the video's feature maps,
            T frames x C x h x w, then the mean over the B videos, as eq. 4 averages over examples),
            ``"frame"`` (the sum over one frame's map, mean over the B*T frames), ``"mean"`` (mean over every
            element: below 0.25, which at alpha = 0.5 leaves eq. 3 almost no gradient, REF §2) or ``"sum"``
            (the released code: sum over batch, frames, channels and positions; with ``layers={"layer4":
            0.01}`` it is that code exactly).
        frames: T, the frames per video in the first dimension (``"sample"`` only); it must divide it.

    Returns:
        ``(total, {"hall/<layer>": weighted term, ..., "hall/total": total})``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"hallucination_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not layers:
        raise ValueError(
            "hallucination_loss: `layers` is empty; name at least one layer, e.g. {'layer4': 1.0}"
        )
    parts: dict[str, Tensor] = {}
    total: Tensor | None = None
    for name, weight in layers.items():
        if name == "total":
            raise ValueError("hallucination_loss: a layer may not be named 'total' (reserved for the sum)")
        for role, feats in (("teacher", teacher_feats), ("student", student_feats)):
            if name not in feats:
                raise KeyError(
                    f"hallucination_loss: layer {name!r} missing from the {role} features "
                    f"(available: {sorted(feats)})"
                )
        a_t, a_s = teacher_feats[name].detach(), student_feats[name]
        if a_t.shape != a_s.shape:
            raise ValueError(
                f"hallucination_loss: layer {name!r}: teacher shape {tuple(a_t.shape)} != "
                f"student shape {tuple(a_s.shape)}"
            )
        sq = (torch.sigmoid(a_t) - torch.sigmoid(a_s)).pow(2)
        term = float(weight) * _reduce(sq, reduction, frames, name)
        parts[f"hall/{name}"] = term
        total = term if total is None else total + term
    assert total is not None
    parts["hall/total"] = total
    return total, parts


def _reduce(sq: Tensor, reduction: str, frames: int, layer: str) -> Tensor:
    """Squared differences ``(B*T, ...)`` -> a scalar under ``reduction`` (see ``hallucination_loss``)."""
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum()
    n = sq.shape[0]
    if reduction == "frame":
        return sq.sum() / n
    if frames < 1 or n % frames:
        raise ValueError(f"hallucination_loss: layer {layer!r}: {n} frames are not videos of {frames} frames")
    return sq.sum() / (n // frames)


def generalized_distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    lam: float = 0.5,
    T: float = 10.0,
    student_temperature: bool = False,
    t_squared: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Generalised distillation, Garcia et al. 2018 eqs. 5-6 (Lopez-Paz et al. ICLR 2016; REF §2).

    ``(1 - lam) * CE(y, softmax(z_s)) + lam * CE(s, softmax(z_s / T_s))`` with ``s = softmax(z_t / T)``
    (teacher detached) and ``T_s = T`` if ``student_temperature`` else 1. The soft term is a cross-entropy
    against soft labels (it includes the teacher's entropy, a constant, so its gradient equals that of KL).

    Args:
        student_logits: ``(B, K)`` student (hallucination) video logits.
        teacher_logits: ``(B, K)`` teacher (depth) video logits; detached here.
        labels: ``(B,)`` integer class indices.
        lam: imitation weight ``lambda`` in [0, 1]; the paper selected 0.5 on validation.
        T: temperature > 0 of the teacher's soft labels (eq. 6); the paper selected 10.
        student_temperature: also divide the student logits by ``T`` in the soft term. ``False`` = the paper's
            eq. 5 (default); ``True`` = the authors' released code and Hinton et al. 2015.
        t_squared: multiply the soft term by ``T**2`` (Hinton et al. 2015, keeps gradient scale independent
            of T); neither the paper nor the released code does this.

    Returns:
        ``(total, {"gd/hard": CE on labels, "gd/soft": soft term (after any T^2), "gd/total": total})``.
    """
    _check_unit_interval("generalized_distillation_loss: lam", lam)
    if not float(T) > 0.0:
        raise ValueError(f"generalized_distillation_loss: temperature T must be > 0, got {T}")
    _check_logits_labels(student_logits, labels, "generalized_distillation_loss (student)")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"generalized_distillation_loss: teacher logits shape {tuple(teacher_logits.shape)} != "
            f"student logits shape {tuple(student_logits.shape)}"
        )
    hard = F.cross_entropy(student_logits, labels)
    soft_targets = torch.softmax(teacher_logits.detach() / T, dim=-1)
    s_scale = float(T) if student_temperature else 1.0
    log_p = torch.log_softmax(student_logits / s_scale, dim=-1)
    soft = -(soft_targets * log_p).sum(dim=-1).mean()
    if t_squared:
        soft = soft * float(T) ** 2
    total = (1.0 - float(lam)) * hard + float(lam) * soft
    return total, {"gd/hard": hard, "gd/soft": soft, "gd/total": total}


def total_loss(l_gd: Tensor, l_hall: Tensor, alpha: float = 0.5) -> tuple[Tensor, dict[str, Tensor]]:
    """Garcia et al. 2018 eq. 7: ``(1 - alpha) * L_GD + alpha * L_hall`` (REF §2; paper default alpha=0.5).

    Args:
        l_gd: scalar generalised-distillation loss (eq. 5).
        l_hall: scalar hallucination loss (eq. 3).
        alpha: balance in [0, 1].

    Returns:
        ``(total, {"eq7/gd": l_gd, "eq7/hall": l_hall, "eq7/total": total})``.
    """
    _check_unit_interval("total_loss: alpha", alpha)
    for name, t in (("l_gd", l_gd), ("l_hall", l_hall)):
        if t.dim() != 0:
            raise ValueError(f"total_loss: {name} must be a scalar tensor, got shape {tuple(t.shape)}")
    total = (1.0 - float(alpha)) * l_gd + float(alpha) * l_hall
    return total, {"eq7/gd": l_gd, "eq7/hall": l_hall, "eq7/total": total}
