"""The deployed model's forward pass against the machine's matmul rate: achieved FLOP/s per runtime and dtype.

Used by ``benchmarks/inference_latency.py`` (which prints and saves the table); importable on its own.

- **FLOPs** of one forward are counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, the
  temporal convolutions included, and matmuls/linear layers; 1 multiply-add = 2 FLOP; element-wise ops, BN,
  pooling are not counted), on the float32 module.
- **Peaks**, measured in the same run on the same thread count, per dtype:
  ``square``: an n x n matmul (n = 2048 by default, ``model_throughput.matmul_flops``), the machine's dense rate;
  ``shapes``: the model's own GEMMs, i.e. plain ``a @ b`` matmuls with the (M, K, N) of every convolution and
  linear layer of the forward (M = output pixels x batch, K = input channels x kernel area, N = output
  channels), total FLOPs / total time. The second is what the same arithmetic costs as ideal GEMMs at the
  model's sizes (no im2col, no layout changes, no weight packing): small layers (a 4 x 4 map at 112 px in
  ResNet-18's last stage, 64-channel early stages) cannot fill AMX tiles or AVX-512 registers the way a
  2048-square matmul does, so this is the attainable ceiling for this model at batch 1.
- **Runtimes**: PyTorch eager in the deployment's preparation (``modistill.deploy.precision.prepare_module``:
  BatchNorms folded into the convolutions, weights converted to the dtype and to channels_last), the same
  without the folding (the state before it), PyTorch fp32 with default-layout weights (the state before
  that), ``torch.autocast`` bf16, onnxruntime (``OnnxPredictor``, the export of ``export_onnx``) in fp32, and
  ONNX graphs converted to fp16 / bf16 (reported as not supported, with onnxruntime's error, where it fails);
  optionally ``torch.compile`` with inductor's weight freezing (slow to compile, see ``--compile``).
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

BENCH = Path(__file__).resolve().parent
if str(BENCH.parent) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(BENCH.parent))
if str(BENCH) not in sys.path:  # the sibling benchmark that owns the matmul peak
    sys.path.insert(0, str(BENCH))

from model_throughput import matmul_flops  # noqa: E402

from modistill.deploy import Deployed, DeployedModel, DeploySpec, export_onnx  # noqa: E402
from modistill.deploy.onnx import OnnxPredictor  # noqa: E402
from modistill.deploy.precision import DTYPES, is_native, prepare_module  # noqa: E402
from modistill.models.temporal import TemporalConv  # noqa: E402

TORCH_DTYPES = {**DTYPES, "fp16": torch.float16}
Gemm = tuple[int, int, int]


# ------------------------------------------------------------------------------------------ FLOPs and GEMMs
def count_flops(module: nn.Module, x: Tensor) -> int:
    """FLOPs of ``module(x)`` (FlopCounterMode: conv + matmul, 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(x)
    return int(counter.get_total_flops())


def gemm_shapes(module: nn.Module, x: Tensor) -> Counter[Gemm]:
    """The (M, K, N) of every convolution / linear layer in ``module(x)``, with multiplicity (per group for
    grouped convolutions; the temporal conv is a (3, 1) conv over (B, C, T, H*W))."""
    shapes: Counter[Gemm] = Counter()

    def hook(mod: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            g = mod.groups
            m = out.shape[0] * out.shape[2] * out.shape[3]
            k = mod.in_channels // g * mod.kernel_size[0] * mod.kernel_size[1]
            shapes[(m, k, mod.out_channels // g)] += g
        elif isinstance(mod, nn.Linear):
            shapes[(inp[0].numel() // mod.in_features, mod.in_features, mod.out_features)] += 1
        elif isinstance(mod, TemporalConv):
            n, c, h, w = inp[0].shape
            shapes[(n * h * w, 3 * c, c)] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def gemm_seconds(shape: Gemm, dtype: torch.dtype, min_time: float = 0.1) -> float:
    """Median-free mean seconds of one ``(M, K) @ (K, N)`` matmul in ``dtype`` over at least ``min_time``."""
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time and reps >= 3:
            return elapsed / reps


def shape_peak(shapes: Counter[Gemm], dtype: torch.dtype, min_time: float = 0.1) -> float:
    """FLOP/s of the model's GEMMs run as plain matmuls: sum of their FLOPs / sum of their times."""
    flops = sum(2 * m * k * n * c for (m, k, n), c in shapes.items())
    seconds = sum(gemm_seconds(s, dtype, min_time) * c for s, c in shapes.items())
    return flops / seconds


def peaks(shapes: Counter[Gemm], dtypes: tuple[str, ...], n: int = 2048, quick: bool = False) -> dict:
    """``{dtype: {"square": FLOP/s, "shapes": FLOP/s}}`` measured now (see the module docstring)."""
    t = 0.1 if quick else 1.0
    return {
        d: {
            "square": matmul_flops(torch.device("cpu"), TORCH_DTYPES[d], n=n, min_time=t),
            "shapes": shape_peak(shapes, TORCH_DTYPES[d], min_time=t / 10),
        }
        for d in dtypes
    }


# ------------------------------------------------------------------------------------------------- timing
def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _torch_runner(module: nn.Module, x: Tensor, autocast: bool = False) -> Callable[[], Tensor]:
    def run() -> Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            return module(x)

    return run


def _onnx_session(module: nn.Module, x: Tensor, path: Path, dtype: str, threads: int):
    """An onnxruntime session of ``module`` converted to ``dtype`` (fp16 at opset 17; bf16 needs opset 22, the
    first whose Conv takes bfloat16); the float32 input is cast inside the graph (DeployedModel)."""
    import onnxruntime as ort  # optional dependency (modistill[export])

    m = copy.deepcopy(module).to(TORCH_DTYPES[dtype])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m, (x,), str(path), input_names=["clips"], output_names=["logits"],
            opset_version=22 if dtype == "bf16" else 17, dynamo=False,
        )  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def runtimes(
    module: DeployedModel, x: Tensor, threads: int, compile_too: bool = False
) -> dict[str, tuple[str, Callable[[], Any] | str]]:
    """name -> (dtype, runner or the reason it cannot run) for every runtime of the module docstring.
    ``module`` is float32 with default-layout weights (as built or loaded)."""
    out: dict[str, tuple[str, Callable[[], Any] | str]] = {}
    fp32 = prepare_module(copy.deepcopy(module), "fp32")
    bf16 = prepare_module(copy.deepcopy(module), "bf16")
    out["pytorch fp32, default-layout weights (before)"] = ("fp32", _torch_runner(module.eval(), x))
    out["pytorch fp32, BN not folded (before)"] = (
        "fp32", _torch_runner(prepare_module(copy.deepcopy(module), "fp32", fold_bn=False), x))
    out["pytorch fp32"] = ("fp32", _torch_runner(fp32, x))
    out["pytorch autocast bf16"] = ("bf16", _torch_runner(fp32, x, autocast=True))
    out["pytorch bf16, BN not folded (before)"] = (
        "bf16", _torch_runner(prepare_module(copy.deepcopy(module), "bf16", fold_bn=False), x))
    out["pytorch bf16 (deployed)"] = ("bf16", _torch_runner(bf16, x))
    with tempfile.TemporaryDirectory(prefix="modistill-forward-") as tmp_dir:  # sessions keep their graphs
        tmp, xn = Path(tmp_dir), x.numpy()
        try:
            spec = DeploySpec(frames=x.shape[1], size=x.shape[-1], class_names=["?"])
            ort_model = OnnxPredictor(export_onnx(Deployed(module, spec), tmp / "fp32"), threads=threads)
            out["onnxruntime fp32 (deployed)"] = ("fp32", lambda: ort_model.logits(xn))
        except ImportError as exc:
            out["onnxruntime fp32 (deployed)"] = ("fp32", f"not available: {exc}")
        for dt in ("fp16", "bf16"):
            try:
                sess = _onnx_session(module, x, tmp / f"{dt}.onnx", dt, threads)
                out[f"onnxruntime {dt}"] = (dt, lambda s=sess: s.run(None, {"clips": xn}))
            except Exception as exc:  # noqa: BLE001 - any failure is the measurement ("not supported: <why>")
                out[f"onnxruntime {dt}"] = (
                    dt,
                    f"not supported: {type(exc).__name__}: {str(exc).strip()[:300]}",
                )
    if compile_too:
        import torch._inductor.config as inductor_config  # only for the optional compiled rows

        inductor_config.freezing = True  # constant-fold and pre-pack the weights (inference only)
        for dt, m in (("fp32", fp32), ("bf16", bf16)):
            out[f"pytorch {dt} + torch.compile (freezing)"] = (dt, _torch_runner(torch.compile(m), x))
    return out


def measure(
    module: DeployedModel, x: Tensor, *, threads: int, repeats: int, compile_too: bool = False,
    quick: bool = False, matmul_size: int = 2048,
) -> dict:  # fmt: skip
    """Time every runtime on clip batch ``x`` (B, K, 3, S, S) and relate it to the peaks of its dtype.

    Returns ``{"flops", "gemm_flops", "peaks", "rows": [{runtime, dtype, native, seconds, achieved_flops,
    fraction_of_square_peak, fraction_of_shape_peak} | {runtime, dtype, error}]}``; the fractions are None
    where the CPU has no hardware for the dtype (``native`` False): PyTorch then emulates it through float32
    and its "peak" is the emulation's, not the machine's."""
    module = module.eval()
    flops = count_flops(module, x)
    shapes = gemm_shapes(module, x)
    result: dict[str, Any] = {
        "flops": flops,
        "gemm_flops": sum(2 * m * k * n * c for (m, k, n), c in shapes.items()),
        "gemm_shapes": [[m, k, n, c] for (m, k, n), c in sorted(shapes.items())],
        "matmul_size": matmul_size,
        "peaks": peaks(shapes, ("fp32", "bf16", "fp16"), n=matmul_size, quick=quick),
        "rows": [],
    }
    for name, (dt, run) in runtimes(module, x, threads, compile_too).items():
        if isinstance(run, str):
            result["rows"].append({"runtime": name, "dtype": dt, "error": run})
            continue
        t0 = time.perf_counter()
        run()  # first call: compilation or session warm-up, reported separately
        first = time.perf_counter() - t0
        s = median_seconds(run, repeats)
        pk, native = result["peaks"][dt], is_native(dt)
        result["rows"].append(
            {
                "runtime": name,
                "dtype": dt,
                "native": native,
                "first_call_s": first,
                "seconds": s,
                "achieved_flops": flops / s,
                "fraction_of_square_peak": flops / s / pk["square"] if native else None,
                "fraction_of_shape_peak": flops / s / pk["shapes"] if native else None,
            }
        )
    return result


def table(result: dict, title: str) -> str:
    """Markdown: one row per runtime (ms, GFLOP/s, % of the two peaks of its dtype)."""
    pk = result["peaks"]
    lines = [
        f"{title}: {result['flops'] / 1e9:.2f} GFLOP per forward; peaks (GFLOP/s, same run): "
        + ", ".join(
            f"{d} {p['square'] / 1e9:.0f} ({result['matmul_size']}^2) / {p['shapes'] / 1e9:.0f} (model's GEMMs)"
            for d, p in pk.items()
        ),
        "",
        "| runtime | dtype | forward (ms) | GFLOP/s | % of square peak | % of model-GEMM peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['runtime']} | {r['dtype']} | {r['error']} | | | |")
            continue
        if r["fraction_of_square_peak"] is None:
            fractions = "emulated (no native unit) | |"
        else:
            fractions = f"{100 * r['fraction_of_square_peak']:.0f} % | {100 * r['fraction_of_shape_peak']:.0f} % |"
        lines.append(
            f"| {r['runtime']} | {r['dtype']} | {1e3 * r['seconds']:.1f} | {r['achieved_flops'] / 1e9:.0f} | "
            + fractions
        )
    return "\n".join(lines)
