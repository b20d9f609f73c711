"""The sections of benchmarks/device_check.py (see its docstring), the torchrun worker phases, the targets and
the Markdown report. Imports of modistill and of heavy packages happen inside the sections, so one missing
piece fails its section only (the machine this runs on has no PyAV and no opencv-contrib)."""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import model_throughput as MT  # benchmarks/model_throughput.py: the training-step rows
import numpy as np
from synthetic_cache import ntu_names, write_cache  # benchmarks/synthetic_cache.py: caches without PyAV

STRIDE_WARNING = "Grad strides do not match bucket view strides"
KILLED = 17  # exit status of the torchrun phase that "dies" after epoch 1


@dataclass
class Sizes:
    """Everything --quick shrinks."""

    size: int = 224
    frames: int = 5
    batch: int = 8
    width: float = 1.0
    iters: int = 10
    warmup: int = 3
    matmul_n: int = 8192
    loader_samples: int = 48
    loader_seconds: float = 4.0
    workers: tuple[int, ...] = (0, 4, 8, 16)
    compile_rows: int = 8
    compile_backend: str = "inductor"
    onnx_backbone: str = "resnet50"

    @classmethod
    def for_run(cls, quick: bool, dev, batch: int | None, workers: str | None) -> Sizes:
        s = cls()
        if quick:
            s = cls(
                size=32,
                frames=2,
                batch=2,
                width=0.125,
                iters=2,
                warmup=1,
                matmul_n=512,
                loader_samples=8,
                loader_seconds=1.0,
                workers=(0, 2),
                compile_rows=1,
                compile_backend="aot_eager",  # dynamo + AOT autograd without C++ code generation: seconds
            )
        elif dev.type == "cpu":
            s.matmul_n, s.workers, s.compile_rows = 2048, (0, 2), 2
        if batch:
            s.batch = batch
        if workers:
            s.workers = tuple(int(w) for w in workers.split(","))
        return s


# ------------------------------------------------------------------------------------------------ sections
def environment(ctx: dict, entry: dict) -> dict:
    import torch

    dev = ctx["dev"]
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else MT._cpu_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        out.update(capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1))
    for mod in ("av", "cv2", "onnx", "onnxruntime"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "present")
        except ImportError:
            out[mod] = None
    return out


def matmul(ctx: dict, entry: dict) -> dict:
    import torch

    dev, n = ctx["dev"], ctx["sizes"].matmul_n
    t = 0.2 if n <= 1024 else 1.0
    out = {"n": n, "fp32": MT.matmul_flops(dev, torch.float32, n=n, min_time=t)}
    if dev.type == "cuda":
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            out["tf32"] = MT.matmul_flops(dev, torch.float32, n=n, min_time=t)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    out["bf16"] = MT.matmul_flops(dev, torch.bfloat16, n=n, min_time=t)
    return out


def _model_configs(sz: Sizes, compile_: bool = False) -> list:
    """Most important first: the paper's model (ResNet-50 two-stream) in bf16, then the rest."""
    out = []
    for backbone in ("resnet50", "resnet18"):
        for dtype in ("bf16", "fp32"):
            for streams in (2, 0):
                out.append(
                    MT.Config(
                        backbone=backbone,
                        width=sz.width,
                        size=sz.size,
                        frames=sz.frames,
                        batch=sz.batch,
                        streams=streams,
                        dtype=dtype,
                        compile=compile_,
                    )
                )
    return out


def _row(cfg, ctx: dict, entry: dict, label_suffix: str = "") -> dict | None:
    """One training-step row, written at once; a row that fails (e.g. out of memory) is recorded, not raised."""
    import torch

    dev, sz = ctx["dev"], ctx["sizes"]
    data = entry.setdefault("data", {})
    try:
        row = MT.run_config(cfg, dev, warmup=sz.warmup, iters=sz.iters, compile_backend=sz.compile_backend)
    except Exception as exc:
        data.setdefault("row_errors", []).append(
            {"label": cfg.label + label_suffix, "error": f"{exc!r}"[:500]}
        )
        print(f"  {cfg.label + label_suffix}: ERROR {exc!r}"[:300], flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return None
    row["label"] += label_suffix
    row["clips_per_s"] = cfg.batch / row["step_s"]
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    data.setdefault("rows", []).append(row)
    ctx["report"].write()
    print(
        f"  {row['label']:<56} {row['step_s'] * 1e3:8.1f} ms  {row['clips_per_s']:8.1f} clips/s", flush=True
    )
    return row


def model(ctx: dict, entry: dict) -> dict:
    import torch

    for cfg in _model_configs(ctx["sizes"]):
        _row(cfg, ctx, entry)
    if ctx["dev"].type == "cuda":  # the engine's default deterministic=True: what it costs on this GPU
        det, bench = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            _row(_model_configs(ctx["sizes"])[0], ctx, entry, " deterministic")
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det, bench
    if not entry["data"].get("rows"):
        raise RuntimeError(f"every training-step row failed: {entry['data'].get('row_errors')}")
    return entry["data"]


def compile_section(ctx: dict, entry: dict) -> dict:
    rep, rows = ctx["report"], []
    est = 120.0 if ctx["dev"].type == "cuda" else 20.0  # grows to 1.5x the slowest compile seen
    for cfg in _model_configs(ctx["sizes"], compile_=True)[: ctx["sizes"].compile_rows]:
        if rep.left() < est:
            entry.setdefault("data", {})["stopped"] = (
                f"budget: {rep.left():.0f} s left, a compile takes ~{est:.0f}"
            )
            break
        row = _row(cfg, ctx, entry)
        if row is not None:
            rows.append(row)
            est = max(est, 1.5 * (row["compile_s"] or 0) + 10)
    return entry.get("data", {"rows": rows})


# ------------------------------------------------------------------------------------------------ loader
def _consumption(sections: dict) -> float | None:
    """Clips/s of the fastest two-stream ResNet-50 training step measured so far (eager or compiled)."""
    rates = [
        r["clips_per_s"]
        for name in ("model", "compile")
        for r in sections.get(name, {}).get("data", {}).get("rows", [])
        if r["backbone"] == "resnet50" and r["streams"] == 2 and "deterministic" not in r["label"]
    ]
    return max(rates) if rates else None


def _loader_rate(ds, dev, batch: int, workers: int, seconds: float) -> dict:
    import torch

    from modistill.engine.utils import device_transform_of, move_to_device

    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=batch * 100_000)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=dev.type == "cuda"
    )
    on_device = device_transform_of(ds)
    it, clips, host = iter(loader), 0, 0.0
    next(it)  # worker start-up is paid once per epoch: not timed
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        h0 = time.perf_counter()
        b = next(it)
        host += time.perf_counter() - h0  # main-process wait for the batch
        b = move_to_device(b, dev)
        if on_device is not None:
            b = on_device(b)
        clips += b["label"].shape[0]
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    del it
    return {
        "workers": workers,
        "output": ds.output,
        "clips_per_s": clips / dt,
        "batches": clips // batch,
        "wait_ms_per_batch": 1e3 * host / max(1, clips // batch),
    }


def loader(ctx: dict, entry: dict) -> dict:
    from torch.utils.data import default_collate

    from modistill.data.dataset import CachedClipDataset
    from modistill.engine.utils import move_to_device

    dev, sz = ctx["dev"], ctx["sizes"]
    names = [f"S001C001P{1 + i // 60:03d}R001A{1 + i % 60:03d}" for i in range(sz.loader_samples)]
    root = write_cache(ctx["work"] / "cache224", names, sz.size, 16)
    out: dict = {"size": sz.size, "cache_frames": 16, "clip_frames": sz.frames, "batch": sz.batch, "rows": []}
    entry["data"] = out

    def ds(output: str) -> CachedClipDataset:
        return CachedClipDataset(root, None, frames=sz.frames, train=True, output=output)

    raw, host = ds("uint8"), ds("float")
    a = default_collate([host[i] for i in range(sz.batch)])
    b = raw.device_transform(move_to_device(default_collate([raw[i] for i in range(sz.batch)]), dev))
    out["device_vs_host_max_abs_diff"] = max(
        float((a[m].to(dev) - b[m]).abs().max()) for m in ("rgb", "depth")
    )
    for w in sz.workers:
        out["rows"].append(_loader_rate(raw, dev, sz.batch, w, sz.loader_seconds))
        ctx["report"].write()
    out["rows"].append(_loader_rate(host, dev, sz.batch, max(sz.workers), sz.loader_seconds))
    out["training_clips_per_s"] = _consumption(ctx["report"].data["sections"])
    return out


# ------------------------------------------------------------------------------------------------ torchrun
def _tiny_experiment(work: Path, device: str, out: str) -> Path:
    cache = work / "tiny_cache"
    if not (cache / "samples.txt").is_file():
        write_cache(cache, ntu_names(), 32, 8)
    exp = {
        "out_dir": str(work / out),
        "data": {"cache": str(cache), "frames": 2},
        "model": {"backbone": "resnet18", "width": 0.0625},
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "progress": False,
            "tensorboard": False,
            "log_every": 1,
            "device": device,
        },
    }
    path = work / f"{out}.json"
    path.write_text(json.dumps(exp))
    return path


def torchrun_phase(phase: str, exp_file: Path, row: Path, device: str) -> None:
    """Inside torchrun (1 process): run step1_rgb of the garcia recipe; "crash" dies after epoch 1 (after its
    checkpoint), "resume" continues it, "fresh" runs uninterrupted. The process group is created here even
    for one process (the engine skips it then), so nccl itself and a DDP step on it are exercised."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from modistill.commands._common import setup_logging
    from modistill.engine import distributed as D
    from modistill.engine.utils import match_memory_format
    from modistill.models import Connection, MultiStreamNet, StreamSpec
    from modistill.pipeline import runner
    from modistill.pipeline.session import cache_datasets, load_experiment

    setup_logging()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    t = torch.ones(3, device=dev)
    dist.all_reduce(t)
    exp = load_experiment(exp_file)
    if phase == "crash":
        real = runner.train_stage

        def dying(*a, **k):
            def die(epoch: int, record: dict) -> None:
                if epoch == 1:
                    os._exit(KILLED)  # killed right after epoch 1's checkpoint

            return real(*a, **{**k, "on_epoch_end": die})

        runner.train_stage = dying
    factory, k, _ = cache_datasets(exp)
    runs = runner.run_recipe(exp, factory, k, only=["step1_rgb"])
    specs = {n: StreamSpec("resnet18", n, 0.0625) for n in ("rgb", "depth")}
    net = MultiStreamNet(specs, 3, [Connection("depth", "rgb")]).to(dev)
    match_memory_format(net)
    ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if cuda else None)
    x = torch.randn(2, 2, 3, 32, 32, device=dev)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            F.cross_entropy(ddp({"rgb": x, "depth": x}).logits, torch.tensor([0, 1], device=dev)).backward()
    run = runs["step1_rgb"]
    row.write_text(
        json.dumps(
            {
                "backend": dist.get_backend(),
                "world_size": dist.get_world_size(),
                "device": str(dev),
                "all_reduce_ok": bool(t.eq(1).all()),
                "stage_dir": str(run.dir),
                "epochs": len(run.result["history"]),
                "test_accuracy": run.result["test"]["accuracy"],
                "ddp_stride_warnings": sum(STRIDE_WARNING in str(w.message) for w in caught),
            }
        )
    )
    del ddp  # it holds the group: free it before the teardown (see `distributed.cleanup`)
    D.destroy_group()


def torchrun_section(ctx: dict, entry: dict) -> dict:
    from safetensors.torch import load_file

    work, dev = ctx["work"], ctx["dev"]
    device = "cuda" if dev.type == "cuda" else "cpu"
    out: dict = {}
    entry["data"] = out
    exp = _tiny_experiment(work, device, "run_resumed")
    row = work / "row.json"

    def launch(phase: str, exp_file: Path):  # each phase may take what is left, less a margin for the rest
        return ctx["torchrun"](phase, exp_file, row, device, max(30.0, min(180.0, ctx["report"].left() - 30)))

    p = launch("crash", exp)
    out["crash_exit"] = p.returncode
    out["crash_left_checkpoint"] = any((work / "run_resumed").glob("stages/*/checkpoints/last.json"))
    p = launch("resume", exp)
    if p.returncode != 0:
        raise RuntimeError(f"resume phase failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    out["resume"] = json.loads(row.read_text())
    out["resumed_after_epoch_1"] = "resuming after epoch 1" in p.stderr
    out["test_lines"] = p.stderr.count("step1_rgb: test accuracy")
    out["stride_warnings_in_output"] = p.stderr.count(STRIDE_WARNING)
    fresh = _tiny_experiment(work, device, "run_fresh")
    p = launch("fresh", fresh)
    if p.returncode != 0:
        raise RuntimeError(f"fresh phase failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    a = load_file(str(Path(out["resume"]["stage_dir"]) / "checkpoints" / "last.safetensors"))
    b = load_file(str(Path(json.loads(row.read_text())["stage_dir"]) / "checkpoints" / "last.safetensors"))
    out["resume_vs_fresh_max_abs_diff"] = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    return out


# ------------------------------------------------------------------------------------------------ onnx
def onnx_section(ctx: dict, entry: dict) -> dict:
    import onnxruntime as ort
    import torch

    from modistill.deploy.model import Deployed, DeployedModel
    from modistill.deploy.onnx import export_onnx
    from modistill.deploy.spec import DeploySpec
    from modistill.pipeline.runner import build_network
    from modistill.pipeline.session import load_experiment
    from modistill.recipes.experiment import build_recipe

    dev, sz = ctx["dev"], ctx["sizes"]
    exp = load_experiment(
        {"data": {"frames": sz.frames}, "model": {"backbone": sz.onnx_backbone, "width": sz.width}}
    )
    stage = {s.name: s for s in build_recipe(exp.recipe)}["step4"]
    torch.manual_seed(0)
    net = build_network(exp, stage, 60).eval()
    deployed = Deployed(
        DeployedModel(net, stage.evaluate.streams),
        DeploySpec(sz.frames, sz.size, [f"c{i}" for i in range(60)]),
    )
    t0 = time.perf_counter()
    path = export_onnx(deployed, ctx["work"] / "onnx")
    out = {
        "model": f"{sz.onnx_backbone} w{sz.width:g} streams {list(stage.evaluate.streams)} {sz.size}px T{sz.frames}",
        "export_s": time.perf_counter() - t0,
        "onnx_mb": path.stat().st_size / 2**20,
    }
    providers = [
        p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
    ]
    try:
        sess = ort.InferenceSession(str(path), providers=providers)
    except (
        Exception
    ) as exc:  # a CUDA provider whose libraries do not load: the CPU one still checks the export
        out["cuda_provider_error"] = f"{type(exc).__name__}: {exc}"[:300]
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out["providers"] = sess.get_providers()
    x = torch.randn(2, sz.frames, 3, sz.size, sz.size, generator=torch.Generator().manual_seed(1))
    module = deployed.module.to(dev)
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # strict fp32 reference
    try:
        with torch.no_grad():
            ref = module(x.to(dev)).float().cpu().numpy()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev
    t0 = time.perf_counter()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    out["ort_s"] = time.perf_counter() - t0
    diff = float(np.abs(ref - got).max())
    tol = 1e-5 + 1e-4 * float(np.abs(ref).max())  # deploy.onnx.check_onnx's tolerance
    out.update(
        max_abs_diff=diff,
        tolerance=tol,
        ok=diff <= tol,
        top1_agree=bool((ref.argmax(1) == got.argmax(1)).all()),
        torch_device=str(dev),
    )
    return out


# ------------------------------------------------------------------------------------------------ report
def targets(sections: dict, goal: dict) -> dict:
    """Each target measured in this run: value, goal, met. bf16 and loader targets are GPU targets: on a CPU
    they are reported with ``applies: False`` (the CPU's own targets live in docs/benchmarks_model.md)."""
    rows = [r for n in ("model", "compile") for r in sections.get(n, {}).get("data", {}).get("rows", [])]
    gpu = str(sections.get("environment", {}).get("data", {}).get("device", "")).startswith("cuda")
    out: dict = {}

    def add(name: str, value: float, key: str, applies: bool = True) -> None:
        out[name] = {"value": value, "target": goal[key], "met": value >= goal[key], "applies": applies}

    def find(backbone: str, streams: int, dtype: str) -> dict | None:
        want = (backbone, streams, dtype, False)
        for r in rows:
            if (r["backbone"], r["streams"], r["dtype"], r["compile"]) == want and "deterministic" not in r[
                "label"
            ]:
                return r
        return None

    for backbone in ("resnet50", "resnet18"):
        for dtype in ("bf16", "fp32"):
            two, plain = find(backbone, 2, dtype), find(backbone, 0, dtype)
            if two and plain:  # two-stream throughput / throughput of two plain steps on the same frames
                add(f"{backbone} {dtype}: two-stream vs two plain steps", 2 * plain["step_s"] / two["step_s"],
                    "two_stream_vs_two_plain")  # fmt: skip
        bf, fp = find(backbone, 2, "bf16"), find(backbone, 2, "fp32")
        if bf and fp:
            add(f"{backbone} two-stream: bf16 vs fp32", fp["step_s"] / bf["step_s"], "bf16_vs_fp32", gpu)
    uint8 = [r for r in sections.get("loader", {}).get("data", {}).get("rows", []) if r["output"] == "uint8"]
    need = _consumption(sections)
    if uint8 and need:
        best = max(uint8, key=lambda r: r["workers"])
        name = f"loader ({best['workers']} workers) vs ResNet-50 two-stream training"
        add(name, best["clips_per_s"] / need, "loader_vs_training", gpu)
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} {_fmt(x)}" for k, x in v.items() if k != "stage_dir") + "}"
    return str(v)


def markdown(data: dict, goal: dict) -> str:
    sec = data["sections"]
    env = sec.get("environment", {}).get("data", {})
    lines = [
        "# Device check",
        "",
        f"`benchmarks/device_check.py` on {env.get('device_name', '?')} "
        f"({env.get('device', '?')}), torch {env.get('torch', '?')}, CUDA {env.get('cuda')}, "
        f"{data.get('elapsed_s', 0):.0f} s."
        + (" **Quick run: tiny sizes.**" if data["args"].get("quick") == "True" else ""),
        "",
    ]
    lines += ["| section | status | seconds |", "|---|---|---:|"]
    for name, s in sec.items():
        what = s["status"] + (f": {s.get('error') or s.get('why', '')}" if s["status"] != "ok" else "")
        lines.append(f"| {name} | {what.replace('|', '/')[:200]} | {s.get('seconds', '')} |")
    mm = sec.get("matmul", {}).get("data")
    if mm:
        peaks = ", ".join(f"{k} {mm[k] / 1e12:.2f} TFLOP/s" for k in ("fp32", "tf32", "bf16") if k in mm)
        lines += ["", f"Matmul peak ({mm['n']}x{mm['n']}): {peaks}."]
    rows = [r for name in ("model", "compile") for r in sec.get(name, {}).get("data", {}).get("rows", [])]
    if rows:
        lines += [
            "",
            "| training step | ms | clips/s | frames/s | TFLOP/s | peak mem (GiB) | compile (s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            comp = "" if r.get("compile_s") is None else f"{r['compile_s']:.0f}"
            lines.append(
                f"| {r['label']} | {r['step_s'] * 1e3:.1f} | {r['clips_per_s']:.1f} | {r['frames_per_s']:.0f} "
                f"| {r['achieved_flops'] / 1e12:.3g} | {r['peak_mem_bytes'] / 2**30:.2f} | {comp} |"
            )
    for name in ("model", "compile"):
        for e in sec.get(name, {}).get("data", {}).get("row_errors", []):
            lines.append(f"| {e['label']} | error: {e['error'][:150].replace('|', '/')} | | | | | |")
    ld = sec.get("loader", {}).get("data")
    if ld and ld.get("rows"):
        lines += [
            "",
            f"Loader: {ld['size']} px cache, T={ld['clip_frames']}, batch {ld['batch']}; device vs host "
            f"normalisation max |diff| {ld.get('device_vs_host_max_abs_diff', float('nan')):.2e}; training "
            f"consumes {ld.get('training_clips_per_s') or float('nan'):.1f} clips/s.",
            "",
            "| items | workers | clips/s | main-process wait (ms/batch) |",
            "|---|---:|---:|---:|",
        ]
        for r in ld["rows"]:
            lines.append(
                f"| {r['output']} | {r['workers']} | {r['clips_per_s']:.1f} | {r['wait_ms_per_batch']:.2f} |"
            )
    for key, title in (("torchrun", "torchrun (1 process)"), ("onnx", "ONNX export")):
        d = sec.get(key, {}).get("data")
        if d:
            lines += ["", f"{title}: " + _fmt(d)[1:-1]]
    lines += ["", "| target | value | goal | met |", "|---|---:|---:|---|"]
    for name, t in data.get("targets", {}).items():
        met = ("yes" if t["met"] else "NO") if t.get("applies", True) else "n/a (GPU target)"
        lines.append(f"| {name} | {t['value']:.2f} | >= {t['target']} | {met} |")
    return "\n".join(lines) + "\n"
