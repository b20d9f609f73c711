"""Optimizer construction and the per-epoch step learning-rate schedule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from modistill.engine.config import TrainConfig


def build_optimizer(cfg: TrainConfig, params: list[Any]) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD from the config (`params` may be tensors or param-group dicts)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """lr multiplier during 0-based `epoch` (MultiStepLR semantics, stepped once per epoch)."""
    return cfg.lr_gamma ** sum(1 for m in cfg.lr_milestones if m <= epoch)


def select_params(model: nn.Module, params: Iterable[Any] | None) -> tuple[list[Any], list[nn.Parameter]]:
    """(what the optimizer gets, the flat list of those parameters)."""
    if params is None:
        groups: list[Any] = [p for p in model.parameters() if p.requires_grad]
    else:
        groups = list(params)
    flat: list[nn.Parameter] = []
    for g in groups:
        flat.extend(g["params"] if isinstance(g, dict) else [g])
    if not flat:
        raise ValueError("nothing to train: no parameter requires grad (or `params` is empty)")
    own = {id(p) for p in model.parameters()}
    foreign = sum(1 for p in flat if id(p) not in own)
    if foreign:
        raise ValueError(
            f"{foreign} of the {len(flat)} parameters given in `params` do not belong to the model"
        )
    return groups, flat
