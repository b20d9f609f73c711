"""Cross-stream multiplicative connections (Garcia et al. 2018 eq. 2, after Feichtenhofer et al. CVPR 2017).

Before the 2nd residual unit of a chosen stage, the residual branch of the *target* stream's unit 2 gets a
product of the two streams' unit-1 outputs, while unit 2's skip path is untouched (REF §1). With ``a`` = the
target's unit-1 output *before* its final ReLU and ``m`` = the source's unit-1 output *after* its ReLU, and
F = unit 2's residual branch (which holds the temporal conv):

- ``variant="paper"`` (eq. 2, Feichtenhofer's st-resnet):  x_{l+1} = relu( relu(a) + F(a ⊙ m) )
- ``variant="released"`` (Garcia's TensorFlow code):        x_{l+1} = relu( relu(a) + F(relu(a) + a ⊙ m) )

:func:`eq2_paper` and :func:`eq2_released` compute the branch input (the argument of F) from ``a`` and ``m``;
:class:`~modistill.models.multistream.MultiStreamNet` applies them through :func:`connection_branch`.
Gradients flow into both streams (into the source through ``m``) unless the source is frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .errors import ModelConfigError

__all__ = ["Connection", "StandIn", "VARIANTS", "eq2_paper", "eq2_released", "connection_branch"]


def eq2_paper(a: Tensor, m: Tensor) -> Tensor:
    """Garcia et al. 2018 eq. 2, paper form: the input of the target's unit-2 residual branch, ``a ⊙ m``.

    Args:
        a: the target stream's unit-1 output *before* its final ReLU, ``(B*T, C, H, W)``.
        m: the source stream's unit-1 output *after* its ReLU, ``(B*T, C, H, W)`` (same shape).

    Returns:
        ``a * m``, ``(B*T, C, H, W)``: fed to unit 2's residual branch F only; unit 2's skip path keeps
        ``relu(a)``, so the unit computes ``relu(relu(a) + F(a * m))``.
    """
    return a * m


def eq2_released(a: Tensor, m: Tensor, relu_a: Tensor | None = None) -> Tensor:
    """Garcia et al. 2018 eq. 2, form of the released TensorFlow code: ``relu(a) + a ⊙ m``.

    Args:
        a: the target stream's unit-1 output *before* its final ReLU, ``(B*T, C, H, W)``.
        m: the source stream's unit-1 output *after* its ReLU, ``(B*T, C, H, W)`` (same shape).
        relu_a: ``relu(a)`` when the caller already has it (the network passes unit 2's skip input, so the
            autograd graph, and the rounding of the gradients, stay those of a single ReLU); computed if None.

    Returns:
        ``relu(a) + a * m``, ``(B*T, C, H, W)``: fed to unit 2's residual branch F only (the skip path keeps
        ``relu(a)``), so the unit computes ``relu(relu(a) + F(relu(a) + a * m))``.
    """
    return (torch.relu(a) if relu_a is None else relu_a) + a * m


VARIANTS = ("paper", "released")


def connection_branch(variant: str, a: Tensor, m: Tensor, relu_a: Tensor | None = None) -> Tensor:
    """Eq. 2 in the form ``variant``: :func:`eq2_paper` or :func:`eq2_released` (``relu_a`` is passed on).

    ``a``, ``m`` and ``relu_a`` are ``(B*T, C, H, W)`` as described there; returns the same shape.
    """
    if variant == "paper":
        return eq2_paper(a, m)
    if variant == "released":
        return eq2_released(a, m, relu_a)
    raise ModelConfigError(f"connection variant must be one of {VARIANTS}, got {variant!r}")


@dataclass(frozen=True)
class Connection:
    """A cross-stream multiplicative connection ``source -> target`` at ``stages`` (subset of 1..4).

    ``variant`` picks the form of eq. 2: ``"paper"`` (:func:`eq2_paper`) or ``"released"``
    (:func:`eq2_released`).
    """

    source: str
    target: str
    stages: tuple[int, ...] = (1, 2, 3, 4)
    variant: Literal["paper", "released"] = "paper"

    def __post_init__(self) -> None:
        stages = tuple(int(s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if self.source == self.target:
            raise ModelConfigError(f"connection source and target are the same stream {self.source!r}")
        if not stages or any(s not in (1, 2, 3, 4) for s in stages) or len(set(stages)) != len(stages):
            raise ModelConfigError(
                f"connection {self.source}->{self.target}: stages must be distinct values in 1..4, "
                f"got {stages}"
            )
        if self.variant not in VARIANTS:
            raise ModelConfigError(
                f"connection {self.source}->{self.target}: variant must be one of {VARIANTS}, "
                f"got {self.variant!r}"
            )


@dataclass(frozen=True)
class StandIn:
    """What ``target`` receives at ``stages`` in place of a connection whose source stream is absent.

    Garcia et al. 2018 step 4 (REF §3): the hallucination stream was trained in step 3 with the depth stream
    injected through eq. 2, and in step 4 that source is gone. A stand-in replaces the source's post-ReLU
    unit-1 output ``m`` by a per-channel vector ``(C,)`` broadcast over frames and positions, used in the form
    ``variant`` of eq. 2 only when no connection into ``(target, stage)`` is active. Its values live in the
    network (``MultiStreamNet.standin_values``): a buffer (fixed; zeros until set) or, when ``learnable``, a
    parameter trained with the rest.
    """

    target: str
    stages: tuple[int, ...] = (1, 2, 3, 4)
    variant: Literal["paper", "released"] = "paper"
    learnable: bool = False

    def __post_init__(self) -> None:
        stages = tuple(int(s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages or any(s not in (1, 2, 3, 4) for s in stages) or len(set(stages)) != len(stages):
            raise ModelConfigError(f"stand-in for {self.target!r}: stages must be distinct values in 1..4")
        if self.variant not in VARIANTS:
            raise ModelConfigError(f"stand-in for {self.target!r}: variant must be one of {VARIANTS}")
