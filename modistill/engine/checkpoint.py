"""Checkpoints without pickle: safetensors for tensors, a JSON sidecar for everything else.

A checkpoint named `<dir>/<name>` is three files:
  <name>.safetensors        the model state_dict (unwrapped: no DDP "module." prefix)
  <name>.optim.safetensors  the optimizer's tensors (optional), keyed by their path in its state_dict
  <name>.json               `CheckpointMeta`: epoch, step, scheduler, RNG states, best metric, history, configs,
                            the optimizer's non-tensor structure, and a token that the two safetensors files
                            carry too
Writes are atomic and go through `modistill.core.atomic` only: the tensor files are first written (atomically,
fsynced) to staging names next to their destinations while the old checkpoint is still whole; then the old
JSON is removed, the staged tensors are moved in place (os.replace) and the JSON is written last. A checkpoint
is complete exactly when its JSON exists and its token matches the token inside the tensor files.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from modistill.core.atomic import write_bytes_atomic
from modistill.core.errors import ModistillError, SchemaError
from modistill.engine.files import CheckpointMeta
from modistill.engine.serial import join_tensors, split_tensors, to_jsonable

FORMAT = CheckpointMeta.KIND
VERSION = CheckpointMeta.VERSION
_MAX_LISTED = 20

__all__ = [
    "CheckpointError",
    "checkpoint_base",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint_meta",
    "save_checkpoint",
    "unwrap_model",
]


class CheckpointError(ModistillError, RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit the model; the message names the file."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def checkpoint_base(path: str | os.PathLike) -> Path:
    """`<dir>/<name>` from any of: the base itself, `<name>.json`, `<name>.safetensors`, or a run folder
    (`<run>/checkpoints/best` then `<run>/best`)."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "best", p / "best"):
            if cand.with_name(cand.name + ".json").exists():
                return cand
        raise CheckpointError(f"{p}: no checkpoint found (looked for checkpoints/best.json and best.json)")
    name = p.name
    for suffix in (".optim.safetensors", ".safetensors", ".json"):
        if name.endswith(suffix):
            return p.with_name(name[: -len(suffix)])
    return p


def _files(base: Path) -> tuple[Path, Path, Path]:
    return (
        base.with_name(base.name + ".safetensors"),
        base.with_name(base.name + ".optim.safetensors"),
        base.with_name(base.name + ".json"),
    )


def _staging_path(final: Path, token: str) -> Path:
    """Where a tensor file waits for its rename: hidden, next to `final`, named like the temporary files of
    `modistill.core.atomic` (host, pid) so that `remove_stale_temps` clears what a killed writer left."""
    return final.with_name(f".{final.name}.{socket.gethostname()}.{os.getpid()}.{token[:8]}.tmp")


def _state_for_saving(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies; tensors that share memory (tied weights) are cloned apart, since safetensors
    refuses shared storage. Loading fills every key, so tied weights come back equal."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state_dict entry '{k}' is a {type(v).__name__}, not a tensor")
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or t.numel() == 0:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def save_checkpoint(
    base: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write `<base>.safetensors` (+ `<base>.optim.safetensors`) and `<base>.json` atomically.

    `meta` is any JSON-ready mapping (epoch, history, configs, ...) stored in the sidecar.
    Returns the JSON path.
    """
    base = Path(base)
    if not base.is_dir():  # "x.json" / "x.safetensors" name the same checkpoint as "x"
        base = checkpoint_base(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    wfile, ofile, jfile = _files(base)
    clash = sorted(set(meta or {}) & CheckpointMeta.reserved_keys())
    if clash:
        raise ValueError(f"checkpoint meta may not set the reserved keys {clash}")
    token = uuid.uuid4().hex
    st_meta = {"format": FORMAT, "token": token}
    tensor_files = [(wfile, _state_for_saving(unwrap_model(model).state_dict()))]
    sidecar = CheckpointMeta(
        token=token,
        weights=wfile.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        torch_version=torch.__version__,
        unknown_fields=to_jsonable(dict(meta or {})),
    )
    if optimizer is not None:
        tree, opt_tensors = split_tensors(optimizer.state_dict(), prefix="optim")
        sidecar.optimizer = {"file": ofile.name, "state_dict": tree}
        tensor_files.append((ofile, opt_tensors))

    staged: list[Path] = []
    try:
        for final, tensors in tensor_files:  # the old checkpoint is untouched while these are written
            staged.append(_staging_path(final, token))
            write_bytes_atomic(staged[-1], safetensors_bytes(tensors, metadata=st_meta))
        # From here the old checkpoint stops being valid: drop its JSON first so a crash between the renames
        # leaves "no checkpoint" rather than old JSON next to new tensors.
        jfile.unlink(missing_ok=True)
        for (final, _), tmp in zip(tensor_files, staged):
            os.replace(tmp, final)
        staged.clear()
        if optimizer is None:
            ofile.unlink(missing_ok=True)
        sidecar.write(jfile)  # atomic; its folder fsync also makes the renames above durable
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    return jfile


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint as a flat dict (`CheckpointMeta.to_dict()`: the caller's meta keys
    next to token, weights, optimizer, format, version); raises CheckpointError when absent or unreadable."""
    _, _, jfile = _files(checkpoint_base(path))
    if not jfile.is_file():
        wfile = jfile.with_name(jfile.name[: -len(".json")] + ".safetensors")
        hint = " (its weights exist: the write was interrupted)" if wfile.exists() else ""
        raise CheckpointError(f"{jfile}: checkpoint sidecar not found{hint}")
    try:
        return CheckpointMeta.read(jfile).to_dict()
    except SchemaError as exc:
        raise CheckpointError(f"unreadable checkpoint sidecar: {exc}") from exc


def _check_token(file: Path, token: str) -> None:
    try:
        with safe_open(str(file), framework="pt") as f:
            found = (f.metadata() or {}).get("token")
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{file}: unreadable safetensors file: {exc}") from exc
    if found != token:
        raise CheckpointError(
            f"{file}: does not belong to its JSON sidecar (token {found} != {token}); "
            "the checkpoint write was interrupted or files were mixed"
        )


def _strip_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "_orig_mod."):
        if (
            state
            and all(k.startswith(prefix) for k in state)
            and not any(k.startswith(prefix) for k in model_keys)
        ):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"{title} ({len(items)}): " + ", ".join(shown) + more


def load_weights(
    path: str | os.PathLike, model: nn.Module, strict: bool = True, token: str | None = None
) -> tuple[list[str], list[str]]:
    """Copy a `.safetensors` state_dict into `model` (DDP-wrapped or not) in place, keeping its dtype/device.

    strict=True: any missing, unexpected or mis-shaped key raises CheckpointError listing all of them with
    the file name. strict=False: missing/unexpected keys are tolerated, shape mismatches still raise.
    Returns (missing, unexpected).
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{file}: weights file not found")
    if token is not None:
        _check_token(file, token)
    try:
        state = load_file(str(file), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{file}: unreadable safetensors file: {exc}") from exc
    target = unwrap_model(model)
    own = target.state_dict()
    state = _strip_prefix(state, set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if mis_shaped or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if mis_shaped:
            parts.append(_listing("mis-shaped keys", mis_shaped))
        raise CheckpointError(f"{file}: state_dict does not fit {type(target).__name__}: " + "; ".join(parts))
    target.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return missing, unexpected


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Load a complete checkpoint's weights (and optimizer state if given); return its JSON sidecar.

    `path` may be the base, the `.json`, the `.safetensors`, or a run folder (its best checkpoint).
    """
    base = checkpoint_base(path)
    wfile, ofile, jfile = _files(base)
    meta = read_checkpoint_meta(base)
    token = meta.get("token")
    load_weights(wfile, model, strict=strict, token=token)
    if optimizer is not None:
        spec = meta.get("optimizer")
        if not spec:
            raise CheckpointError(f"{jfile}: holds no optimizer state")
        ofile = jfile.with_name(spec["file"])
        if not ofile.is_file():
            raise CheckpointError(f"{ofile}: optimizer tensors not found")
        _check_token(ofile, token)
        tensors = load_file(str(ofile), device="cpu")
        try:
            optimizer.load_state_dict(join_tensors(spec["state_dict"], tensors))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{ofile}: optimizer state does not fit the optimizer: {exc}") from exc
    return meta
