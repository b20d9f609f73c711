"""Checkpoints without pickle: safetensors for tensors, a JSON sidecar for everything else.

A checkpoint named `<dir>/<name>` is three files:
  <name>.safetensors        the model state_dict (unwrapped: no DDP "module." prefix)
  <name>.optim.safetensors  the optimizer's tensors (optional), keyed by their path in its state_dict
  <name>.json               epoch, step, scheduler, RNG states, best metric, history, configs, the optimizer's
                            non-tensor structure, and a token that the two safetensors files carry too
Writes are atomic: every file goes to a temp file in the same folder (fsync), then the old JSON is removed,
the tensors are moved in place (os.replace) and the JSON last. A checkpoint is complete exactly when its JSON
exists and its token matches the token inside the tensor files.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from modistill.engine.serial import join_tensors, split_tensors, to_jsonable

FORMAT = "modistill-checkpoint"
VERSION = 1
_MAX_LISTED = 20

__all__ = [
    "CheckpointError",
    "checkpoint_base",
    "join_tensors",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint_meta",
    "save_checkpoint",
    "split_tensors",
    "to_jsonable",
    "unwrap_model",
    "write_text_atomic",
]


class CheckpointError(RuntimeError):
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


# ---------------------------------------------------------------------------------------------------------
# Atomic file writes


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_path(final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    # mkstemp creates 0600 files; results and checkpoints are meant to be shared like any other output.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return Path(name)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a fsynced temp file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
    token = uuid.uuid4().hex
    st_meta = {"format": FORMAT, "token": token}

    weights = _state_for_saving(unwrap_model(model).state_dict())
    sidecar: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "token": token,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch_version": torch.__version__,
        "weights": wfile.name,
        "optimizer": None,
    }
    opt_tensors: dict[str, torch.Tensor] = {}
    if optimizer is not None:
        tree, opt_tensors = split_tensors(optimizer.state_dict(), prefix="optim")
        sidecar["optimizer"] = {"file": ofile.name, "state_dict": tree}
    clash = sorted(set(meta or {}) & set(sidecar))
    if clash:
        raise ValueError(f"checkpoint meta may not set the reserved keys {clash}")
    sidecar.update(to_jsonable(dict(meta or {})))
    text = json.dumps(sidecar, indent=1, allow_nan=True)

    temps: list[Path] = []
    try:
        tw = _temp_path(wfile)
        temps.append(tw)
        save_file(weights, str(tw), metadata=st_meta)
        _fsync_file(tw)
        to = None
        if optimizer is not None:
            to = _temp_path(ofile)
            temps.append(to)
            save_file(opt_tensors, str(to), metadata=st_meta)
            _fsync_file(to)
        tj = _temp_path(jfile)
        temps.append(tj)
        with open(tj, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # From here the old checkpoint stops being valid: drop its JSON first so a crash between the renames
        # leaves "no checkpoint" rather than old JSON next to new tensors.
        jfile.unlink(missing_ok=True)
        os.replace(tw, wfile)
        if to is not None:
            os.replace(to, ofile)
        else:
            ofile.unlink(missing_ok=True)
        os.replace(tj, jfile)
        temps.clear()
    finally:
        for t in temps:
            t.unlink(missing_ok=True)
    _fsync_dir(base.parent)
    return jfile


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint (raises CheckpointError when absent or unreadable)."""
    _, _, jfile = _files(checkpoint_base(path))
    if not jfile.is_file():
        wfile = jfile.with_name(jfile.name[: -len(".json")] + ".safetensors")
        hint = " (its weights exist: the write was interrupted)" if wfile.exists() else ""
        raise CheckpointError(f"{jfile}: checkpoint sidecar not found{hint}")
    try:
        meta = json.loads(jfile.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{jfile}: unreadable checkpoint sidecar: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{jfile}: not a {FORMAT} sidecar (format={meta.get('format')!r})")
    return meta


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
