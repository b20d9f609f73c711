"""The deployed model's number format: the fastest dtype the machine offers, and a module prepared to run in it.

``dtype="auto"`` picks bfloat16 on a CPU with native bf16 arithmetic (the ``avx512_bf16`` or ``amx_bf16`` flag of
/proc/cpuinfo: AVX-512 BF16 dot products, AMX tiles) and on a CUDA device that supports it, float32 elsewhere
(a CPU without them emulates bf16 and is slower than fp32). ``"fp32"`` and ``"bf16"`` force a dtype.

How bf16 runs (measured, docs/benchmarks.md, ``benchmarks/inference_latency.py``): the weights are *converted*
to bf16 and to channels_last, and the float32 clip is cast on entry. On the development CPU (AMX), one thread,
one ResNet-18 stream at 112 px, 5 frames: fp32 44.2 ms, ``torch.autocast`` bf16 22.1 ms (it re-casts every
weight on every call), bf16 weights 14.7 ms. channels_last *weights* matter as much as channels_last
activations: with default-layout weights every convolution copied its weight into channels_last on each call
(about a quarter of the bf16 forward, 15 % of the fp32 one). The logits come back as float32 (so callers see one
dtype), rounded to bf16's 8 significant bits.

ONNX exports stay float32: onnxruntime's CPU provider has no bfloat16 convolution (a bf16 graph at opset 22
fails to load: "Could not find an implementation for Conv(22)"), and its float16 path measured slower than
float32 on this CPU (no fp16 convolution kernels on x86), so ``onnx_dtype("auto")`` is ``"fp32"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from modistill.core.errors import ModistillError
from modistill.models.fold import fold_stream_batchnorm
from modistill.models.stream import VideoStream

__all__ = [
    "BF16_CPU_FLAGS",
    "FP16_CPU_FLAGS",
    "is_native",
    "DTYPE_CHOICES",
    "DTYPES",
    "DeployDtypeError",
    "cpu_flags",
    "fastest_dtype",
    "onnx_dtype",
    "prepare_module",
    "resolve_dtype",
]

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
DTYPE_CHOICES = ("auto", *DTYPES)
#: /proc/cpuinfo flags of native bf16 arithmetic: AVX-512 BF16 (vdpbf16ps) and AMX BF16 tiles.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# x86 flags of native fp16 arithmetic (AVX512-FP16: Sapphire Rapids; AMX-FP16: Granite Rapids).
FP16_CPU_FLAGS = frozenset({"avx512_fp16", "amx_fp16"})


class DeployDtypeError(ModistillError, ValueError):
    """A dtype that is unknown, or that the chosen runtime cannot run."""


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo``; empty where it cannot be read (then every
    choice falls back to fp32, the safe one)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


def fastest_dtype(device: str | torch.device = "cpu", flags: Iterable[str] | None = None) -> str:
    """``"bf16"`` where ``device`` computes bf16 natively (CPU: one of :data:`BF16_CPU_FLAGS` in ``flags``,
    default :func:`cpu_flags`; CUDA: ``torch.cuda.is_bf16_supported()``), else ``"fp32"``."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if kind != "cpu":
        return "fp32"
    have = frozenset(cpu_flags() if flags is None else flags)
    return "bf16" if have & BF16_CPU_FLAGS else "fp32"


def is_native(dtype: str, flags: Iterable[str] | None = None) -> bool:
    """Whether this CPU computes ``dtype`` (``"fp32"``, ``"bf16"``, ``"fp16"``) in hardware; otherwise PyTorch
    emulates it through float32, and a rate compared with a peak of that dtype means nothing."""
    have = frozenset(cpu_flags() if flags is None else flags)
    native = {"fp32": True, "bf16": bool(have & BF16_CPU_FLAGS), "fp16": bool(have & FP16_CPU_FLAGS)}
    if dtype not in native:
        raise DeployDtypeError(f"dtype {dtype!r}: expected one of {', '.join(native)}")
    return native[dtype]


def resolve_dtype(
    requested: str = "auto", device: str | torch.device = "cpu", flags: Iterable[str] | None = None
) -> str:
    """``"fp32"`` or ``"bf16"`` for ``requested`` in :data:`DTYPE_CHOICES` (``"auto"``: :func:`fastest_dtype`)."""
    if requested == "auto":
        return fastest_dtype(device, flags)
    if requested not in DTYPES:
        raise DeployDtypeError(f"dtype {requested!r}: expected one of {', '.join(DTYPE_CHOICES)}")
    return requested


def onnx_dtype(requested: str = "auto") -> str:
    """The dtype of an ONNX export run by onnxruntime on CPU: always ``"fp32"`` (see the module docstring);
    ``"bf16"`` is refused with the reason."""
    if requested not in DTYPE_CHOICES:
        raise DeployDtypeError(f"dtype {requested!r}: expected one of {', '.join(DTYPE_CHOICES)}")
    if requested == "bf16":
        raise DeployDtypeError(
            "bf16 ONNX models do not run in onnxruntime's CPU provider (no bfloat16 Conv kernel: "
            "'Could not find an implementation for Conv(22)'); ONNX exports are float32 "
            "(use the PyTorch path, `modistill predict --run`, for bf16)"
        )
    return "fp32"


def prepare_module(module: nn.Module, dtype: str, *, fold_bn: bool = True) -> nn.Module:
    """``module`` in eval mode, its streams' BatchNorms folded into their convolutions (``fold_bn``,
    `modistill.models.fold`: computed in fp32 before the cast), its 4-D weights in channels_last and all
    floating parameters and buffers in ``dtype`` (``"fp32"`` or ``"bf16"``), in place; returns it. For
    inference only: folded BNs no longer train.

    Converting (not autocasting) is the faster bf16 path (module docstring). Inputs must be cast by the caller
    (:class:`~modistill.deploy.model.DeployedModel` does)."""
    if dtype not in DTYPES:
        raise DeployDtypeError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    module.eval()
    if fold_bn:
        for m in list(module.modules()):
            if isinstance(m, VideoStream):
                fold_stream_batchnorm(m)
    return module.to(memory_format=torch.channels_last).to(DTYPES[dtype])
