"""Share of the gradient reaching the hallucination stream from each term of eq. 7 at the start of step 3.

Garcia et al. 2018 eq. 7: L = (1 - alpha) L_GD + alpha L_hall (REF §2). How much each term pulls on the
hallucination stream depends on the reduction and weight of eq. 3 and on the feature-map size (batch, frames,
channels, resolution): a mean over every element leaves eq. 3 almost no gradient, the released code's sum over
everything (x 0.01) grows with batch and resolution. This script builds step 3 as the recipe does (the depth
stream frozen, the hallucination stream a copy of it reading RGB, depth -> hall connections), draws one batch,
and computes the gradient of each term with respect to the hallucination stream's parameters:

    g_GD   = d[(1 - alpha) L_GD] / d theta_hall
    g_hall = d[alpha * w * reduce(sum over layer4 of (sigmoid(A_d) - sigmoid(A_h))^2)] / d theta_hall

Every reduction of eq. 3 is the plain sum divided by a constant (per video: B; per frame: B*T; mean: the element
count), so one backward pass of the sum gives every reduction and weight exactly, by scaling. Reported per
setting (shapes) and eq. 3 option: both gradient norms, the hall share ||g_hall|| / (||g_GD|| + ||g_hall||),
the cosine between them, and both loss values.

Settings: ``demo`` (the demo config: ResNet-18 at width 1/4, 64 px, batch 8 x 5 frames, 12 classes) and ``ntu``
(configs/ntu60_*: ResNet-50, 224 px, batch 5 x 5 frames, 60 classes). Inputs are random (normal, as normalised
images) and the weights random He init unless ``--step2`` names a trained step-2 checkpoint of that shape (its
depth stream initialises both streams, as in the recipe); with a prepared cache (``--cache``) the batch is real.

Usage::

    python benchmarks/loss_gradient_share.py --quick                  # tiny shapes, seconds (a smoke test)
    python benchmarks/loss_gradient_share.py --out benchmarks/results/loss_gradient_share.json
    python benchmarks/loss_gradient_share.py --setting demo --step2 RUN/stages/step2-KEY/checkpoints/best.safetensors \\
        --cache demo_out/data/cache_64px --out benchmarks/results/loss_gradient_share.json --append
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from modistill.distill import HALL_WEIGHT, generalized_distillation_loss, hallucination_loss  # noqa: E402
from modistill.pipeline.runner import build_network, plan_recipe  # noqa: E402
from modistill.pipeline.session import load_experiment  # noqa: E402
from modistill.recipes.ablation import HALL_WEIGHTS  # noqa: E402

ALPHA = 0.5


@dataclass(frozen=True)
class Setting:
    name: str
    backbone: str
    width: float
    size: int
    batch: int
    frames: int
    classes: int


SETTINGS = {
    "demo": Setting("demo", "resnet18", 0.25, 64, 8, 5, 12),
    "ntu": Setting("ntu", "resnet50", 1.0, 224, 5, 5, 60),
    "quick": Setting("quick", "resnet18", 0.125, 32, 2, 3, 4),
}

# eq. 3 options reported: (label, reduction, weight on layer4)
OPTIONS = [
    ("mean, w=1 (former default)", "mean", 1.0),
    *[(f"sample, w={w:g}" + (" (default)" if w == HALL_WEIGHT else ""), "sample", w) for w in HALL_WEIGHTS],
    ("frame, w=1", "frame", 1.0),
    ("released: sum, w=0.01", "sum", 0.01),
]


def step3_network(s: Setting, step2: str | None):
    """Step 3's network as the recipe builds it (depth frozen; hall = the depth weights), in train mode."""
    exp = load_experiment({"model": {"backbone": s.backbone, "width": s.width}})
    st = plan_recipe(exp)["step3"].stage
    torch.manual_seed(0)
    net = build_network(exp, st, s.classes)
    if step2:
        from safetensors.torch import load_file

        sd = load_file(step2)
        depth = {k[len("streams.depth."):]: v for k, v in sd.items() if k.startswith("streams.depth.")}
        net.streams["depth"].load_state_dict(depth)
    net.streams["hall"].load_state_dict(net.streams["depth"].state_dict())
    net.freeze("depth")
    return net.train(), st


def batch_for(s: Setting, cache: str | None) -> dict[str, torch.Tensor]:
    if cache:
        from modistill.data.dataset import CachedClipDataset

        ds = CachedClipDataset(cache, split="train", protocol="xsub", frames=s.frames, train=True,
                               modalities=("rgb", "depth"), seed=0)
        items = [ds[i] for i in range(s.batch)]
        return {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth", "label")}
    g = torch.Generator().manual_seed(1)
    shape = (s.batch, s.frames, 3, s.size, s.size)
    return {"rgb": torch.randn(shape, generator=g), "depth": torch.randn(shape, generator=g),
            "label": torch.randint(0, s.classes, (s.batch,), generator=g)}


def _norm(grads) -> float:
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def measure(s: Setting, step2: str | None = None, cache: str | None = None) -> dict:
    t0 = time.perf_counter()
    net, st = step3_network(s, step2)
    batch = batch_for(s, cache)
    out = net({"rgb": batch["rgb"], "depth": batch["depth"]})
    hall, depth = out.streams["hall"], out.streams["depth"]
    params = [p for p in net.streams["hall"].parameters() if p.requires_grad]
    l_gd, _ = generalized_distillation_loss(hall.video_logits, depth.video_logits, batch["label"],
                                            lam=st.loss.lam, T=st.loss.T)
    raw, _ = hallucination_loss(depth.features, hall.features, {"layer4": 1.0}, reduction="sum")
    g_gd = torch.autograd.grad((1 - ALPHA) * l_gd, params, retain_graph=True, allow_unused=True)
    g_raw = torch.autograd.grad(raw, params, allow_unused=True)  # eq. 3 does not reach the classifier
    g_gd, g_raw = ([torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)] for gs in (g_gd, g_raw))
    feat = depth.features["layer4"]
    n_frames, elems = feat.shape[0], feat.numel()
    divisor = {"sum": 1.0, "sample": n_frames / s.frames, "frame": float(n_frames), "mean": float(elems)}
    n_gd, n_raw = _norm(g_gd), _norm(g_raw)
    dot = float(sum((a.double() * b.double()).sum() for a, b in zip(g_gd, g_raw)))
    cos = dot / (n_gd * n_raw) if n_gd and n_raw else float("nan")
    rows = []
    for label, red, w in OPTIONS:
        scale = ALPHA * w / divisor[red]
        n_hall = scale * n_raw
        rows.append({"option": label, "reduction": red, "weight": w, "grad_gd": n_gd, "grad_hall": n_hall,
                     "hall_share": n_hall / (n_gd + n_hall), "l_gd": float(l_gd.detach()),
                     "l_hall": float(raw.detach()) * w / divisor[red]})
    return {"setting": asdict(s), "alpha": ALPHA, "step2": step2, "cache": cache,
            "layer4_shape": list(feat.shape), "elements_per_video": elems * s.frames // n_frames,
            "cosine_gd_hall": cos, "options": rows, "seconds": time.perf_counter() - t0}


def table(res: dict) -> str:
    s = res["setting"]
    head = (f"{s['name']}: {s['backbone']} x{s['width']:g}, {s['size']} px, batch {s['batch']} x {s['frames']} "
            f"frames; layer4 {tuple(res['layer4_shape'])} ({res['elements_per_video']} elements per video); "
            f"cos(g_GD, g_hall) = {res['cosine_gd_hall']:.3f}; "
            f"{'trained step 2' if res['step2'] else 'random init'}, {'real' if res['cache'] else 'random'} batch")
    lines = [head, "| eq. 3 option | L_GD | L_hall | ‖(1-α) g_GD‖ | ‖α g_hall‖ | hall share |",
             "|---|---|---|---|---|---|"]
    for r in res["options"]:
        lines.append(f"| {r['option']} | {r['l_gd']:.3f} | {r['l_hall']:.4g} | {r['grad_gd']:.4g} | "
                     f"{r['grad_hall']:.4g} | {100 * r['hall_share']:.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", nargs="+", choices=sorted(SETTINGS), default=["demo", "ntu"])
    ap.add_argument("--quick", action="store_true", help="the tiny 'quick' setting only")
    ap.add_argument("--step2", default=None, help="a trained step-2 checkpoint (best.safetensors) to start from")
    ap.add_argument("--cache", default=None, help="a prepared cache to draw one real training batch from")
    ap.add_argument("--batch", type=int, default=None, help="override the batch size (videos)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--append", action="store_true", help="add to the results already in --out")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["quick"] if args.quick else args.setting
    results = []
    for n in names:
        s = SETTINGS[n]
        if args.batch:
            s = Setting(**{**asdict(s), "batch": args.batch})
        res = measure(s, args.step2, args.cache)
        results.append(res)
        print(table(res), f"\n({res['seconds']:.0f} s)\n", flush=True)
    if args.out:
        if args.append and Path(args.out).is_file():
            results = json.loads(Path(args.out).read_text())["results"] + results
        payload = {"benchmark": "loss_gradient_share", "machine": platform.platform(),
                   "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
