"""Device, autocast and batch plumbing shared by the trainer and the evaluator."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> cuda (this rank's GPU) if available else cpu; a bare "cuda" also becomes this rank's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def prefers_channels_last(model: torch.nn.Module) -> bool:
    """True when `model` computes its convolutions in channels_last: some submodule says so with a
    `channels_last = True` attribute (modistill's `VideoStream` does; any model may)."""
    return any(getattr(m, "channels_last", False) is True for m in model.modules())


def match_memory_format(model: torch.nn.Module) -> bool:
    """Store the 4-D parameters (conv weights) of a channels_last model in channels_last, in place.

    Why: parameters in the default layout while the activations run channels_last make autograd hand back
    gradients whose strides differ from the parameters' (1x1 conv weights keep the activations' strides, others
    are copied back to the parameters' layout every step), and DistributedDataParallel, whose gradient buckets
    follow the parameters' strides, then warns "Grad strides do not match bucket view strides" on every
    backward and copies through a slow path. Call before wrapping in DDP. Values are unchanged; parameter
    objects stay the same (`Module.to` swaps `.data`), so optimizers built before still hold them.
    Returns True when the model was converted.
    """
    if not prefers_channels_last(model):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def match_optimizer_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give per-parameter optimizer state (Adam moments, SGD momentum) its parameter's strides, in place.

    `Optimizer.load_state_dict` restores tensors read from a checkpoint (always stored contiguous) in their
    stored layout; moments created by a step follow the parameter's layout. Matching them keeps a resumed run
    computing with the same layouts as an uninterrupted one. Values are unchanged.
    """
    for p, state in optimizer.state.items():
        for k, v in list(state.items()):
            if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride() and v.ndim:
                state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def autocast_ctx(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU or CUDA when amp == "bf16"; otherwise a no-op context."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ValueError(f"amp must be 'off' or 'bf16', got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def move_to_device(obj: Any, device: torch.device) -> Any:
    """Tensors inside dicts/lists/tuples to `device` (non-blocking from pinned memory); other values as is."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move_to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [move_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(move_to_device(v, device) for v in obj)
    return obj


def device_transform_of(dataset: Any) -> Callable[[Any], Any] | None:
    """A dataset's `device_transform` (or None): applied to each batch once it is on the training device.

    The convention lets a dataset hand over work that is cheaper there, e.g. `CachedClipDataset(output="uint8")`
    returns raw uint8 frames and normalises whole batches on the GPU; the trainer and `evaluate` apply it right
    after `move_to_device`, before clip folding and before `loss_fn` / `predict_fn` see the batch.
    """
    fn = getattr(dataset, "device_transform", None)
    if fn is not None and not callable(fn):
        raise TypeError(f"{type(dataset).__name__}.device_transform must be callable or None, got {fn!r}")
    return fn


def batch_size_of(batch: Any, label_key: str = "label") -> int:
    """Samples in a collated batch: the length of its label tensor, else of its first tensor."""
    if isinstance(batch, Mapping):
        if label_key in batch and isinstance(batch[label_key], torch.Tensor):
            return int(batch[label_key].shape[0])
        for v in batch.values():
            if isinstance(v, torch.Tensor) and v.ndim > 0:
                return int(v.shape[0])
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    raise ValueError(f"cannot tell the batch size of a {type(batch).__name__} batch (no tensor in it)")


def fold_clips(batch: Mapping[str, Any], clips: int, batch_size: int) -> dict[str, Any]:
    """Multi-clip batch -> one clip per row, for clip-averaged evaluation.

    Convention: with `clips` > 1 every floating tensor with >= 3 dims is `(B, N, ...)` (N = clips per video,
    e.g. rgb `(B, N, T, C, H, W)`) and becomes `(B*N, ...)`; other per-sample tensors `(B, ...)` (labels,
    indices) and lists (sample names) are repeated N times so that row b*N + j is clip j of video b.
    """
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.ndim >= 3:
            if v.shape[0] != batch_size or v.shape[1] != clips:
                raise ValueError(
                    f"clips_per_video={clips}: batch['{k}'] has shape {tuple(v.shape)}, expected "
                    f"({batch_size}, {clips}, ...) (the dataset must return a leading clip dimension)"
                )
            out[k] = v.reshape(batch_size * clips, *v.shape[2:])
        elif isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == batch_size:
            out[k] = v.repeat_interleave(clips, dim=0)
        elif isinstance(v, list) and len(v) == batch_size:
            out[k] = [x for x in v for _ in range(clips)]
        else:
            out[k] = v
    return out
