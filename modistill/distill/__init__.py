"""Distillation losses (plain tensor functions) and the loss-spec mapping layer.

Garcia et al. 2018 eqs. 3, 5-6, 7 live in ``losses``; the motion-distillation reconstruction (REF §6) in
``motion``; ``terms`` maps a stage's ``LossSpec`` and a model output onto them. See docs/losses.md.
"""

from .losses import cross_entropy_loss, generalized_distillation_loss, hallucination_loss, total_loss
from .motion import gram_matrix, mars_loss, relation_loss, temporal_relation
from .terms import HALL_WEIGHT, LossKind, LossSpec, compute_loss, released_step3_spec

__all__ = [
    "HALL_WEIGHT",
    "LossKind",
    "LossSpec",
    "compute_loss",
    "cross_entropy_loss",
    "generalized_distillation_loss",
    "gram_matrix",
    "hallucination_loss",
    "mars_loss",
    "relation_loss",
    "released_step3_spec",
    "temporal_relation",
    "total_loss",
]
