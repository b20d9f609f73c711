"""Pickle-free serialisation: nested python data with tensors <-> (JSON tree, flat tensor dict), and JSON
conversion of configs and metrics."""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# Tagged JSON: nested python data with tensors inside <-> (JSON tree, flat tensor dict). Tuples and dicts with
# non-string keys (the optimizer state is keyed by int) are tagged so the round trip is exact.


def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor in `obj` by {"__tensor__": key}; return (JSON-ready tree, {key: tensor})."""
    tensors: dict[str, torch.Tensor] = {}

    def enc(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            key = path or "value"
            while key in tensors:  # dotted dict keys could collide with nested paths
                key += "~"
            tensors[key] = o.detach().to("cpu", copy=True).contiguous()  # one copy, never shared
            return {"__tensor__": key}
        if isinstance(o, tuple):
            return {"__tuple__": [enc(v, f"{path}.{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [enc(v, f"{path}.{i}") for i, v in enumerate(o)]
        if isinstance(o, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in o):
                return {k: enc(v, f"{path}.{k}") for k, v in o.items()}
            return {"__items__": [[_enc_key(k), enc(v, f"{path}.{k}")] for k, v in o.items()]}
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} at '{path}' in a checkpoint (no pickle)")

    tree = enc(obj, prefix)
    return tree, tensors


def _enc_key(k: Any) -> Any:
    if k is None or isinstance(k, (bool, int, float, str)):
        return k
    raise TypeError(f"cannot store a dict key of type {type(k).__name__} in a checkpoint")


def join_tensors(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of `split_tensors`."""
    if isinstance(tree, list):
        return [join_tensors(v, tensors) for v in tree]
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__tuple__"}:
            return tuple(join_tensors(v, tensors) for v in tree["__tuple__"])
        if set(tree) == {"__items__"}:
            return {k: join_tensors(v, tensors) for k, v in tree["__items__"]}
        return {k: join_tensors(v, tensors) for k, v in tree.items()}
    return tree


def to_jsonable(obj: Any) -> Any:
    """Paths, dataclasses, sets, tuples and numpy scalars -> plain JSON data (for configs and metrics)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON: {obj!r:.80}")
