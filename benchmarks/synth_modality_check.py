"""Quick check of what each modality of the synthetic dataset carries: depth-only vs RGB-only vs chance.

Self-contained on purpose (plain torch, no modistill model or engine): for every sample, 5 evenly spaced
frames are read straight from the generated files (PyAV for RGB, OpenCV for the 16-bit depth PNGs), cropped
to a square around the performer using the truth sidecar's bounding boxes (standing in for the skeleton
alignment pipeline), resized to 64x64; depth is jet-coloured with the library's encoder (background 0). A
small CNN (4 strided conv layers, frame logits averaged over time, as the paper's video prediction) is
trained per modality on the NTU cross-subject training subjects and evaluated on the test subjects.

    nice python benchmarks/synth_modality_check.py --root /tmp/synth_demo      # generates it if missing
Results: printed, and written to benchmarks/results/synth_modality_check.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from modistill.data.depth import encode_depth
from modistill.data.normalize import normalize
from modistill.data.ntu import XSUB_TRAIN_SUBJECTS, XVIEW_TRAIN_CAMERAS, parse_sample_name
from modistill.data.synth import generate_dataset
from modistill.data.video import read_video_frames


def even_indices(n: int, k: int) -> np.ndarray:
    """Centres of k equal segments of n frames."""
    return np.minimum(((np.arange(k) + 0.5) * n / k).astype(int), n - 1)


def square_crop(img: np.ndarray, box: list[float], size: int, margin: float = 1.15) -> np.ndarray:
    """Square crop centred on ``box`` (x0, y0, x1, y1 in img pixels), zero-padded, resized to size x size."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * margin / 2
    a, b = int(round(cx - half)), int(round(cy - half))
    s = max(2, int(round(2 * half)))
    pad = np.zeros((s, s) + img.shape[2:], img.dtype)
    H, W = img.shape[:2]
    sx0, sy0, sx1, sy1 = max(a, 0), max(b, 0), min(a + s, W), min(b + s, H)
    if sx1 > sx0 and sy1 > sy0:
        pad[sy0 - b : sy1 - b, sx0 - a : sx1 - a] = img[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_NEAREST if img.dtype == np.uint16 else cv2.INTER_AREA
    return cv2.resize(pad, (size, size), interpolation=interp)


def union_box(boxes: list, idx: np.ndarray, sx: float, sy: float) -> list[float]:
    bs = np.array([boxes[i] for i in idx if boxes[i] is not None], float)
    if bs.size == 0:
        return [0, 0, 1.0 / sx, 1.0 / sy]
    b = [bs[:, 0].min(), bs[:, 1].min(), bs[:, 2].max(), bs[:, 3].max()]
    return [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]


def load(root: Path, k: int, size: int) -> dict:
    """All samples -> {"rgb": (N,k,3,S,S) uint8, "depth": same (jet), "silhouette": the depth mask only
    (a control: what the masked depth gives without its depth values), "label", "subject", "camera"}."""
    rgbs, deps, sils, labels, subjects, cameras, names = [], [], [], [], [], [], []
    for tp in sorted((root / "synth_truth").glob("*.json")):
        t = json.loads(tp.read_text())
        name, F = t["sample"], t["num_frames"]
        idx = even_indices(F, k)
        rgb = read_video_frames(root / "nturgb+d_rgb" / f"{name}_rgb.avi", idx)
        W, H = t["rgb_size"]
        box = union_box(t["body_bbox_color_px"], idx, W / 1920, H / 1080)
        rgbs.append(np.stack([square_crop(f, box, size) for f in rgb]))
        dep = [
            cv2.imread(
                str(root / "nturgb+d_depth_masked" / name / f"MDepth-{i + 1:08d}.png"), cv2.IMREAD_UNCHANGED
            )
            for i in idx
        ]
        w, h = t["depth_size"]
        dbox = union_box(t["body_bbox_depth_px"], idx, w / 512, h / 424)
        dcrop = np.stack([square_crop(d, dbox, size) for d in dep])
        deps.append(encode_depth(dcrop, mode="jet"))
        sils.append(np.repeat(((dcrop > 0) * 255).astype(np.uint8)[..., None], 3, -1))
        sn = parse_sample_name(name)
        labels.append(sn.action - 1)
        subjects.append(sn.subject)
        cameras.append(sn.camera)
        names.append(name)
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 1, 4, 2, 3).contiguous()  # noqa: E731
    return {
        "rgb": to_t(rgbs),
        "depth": to_t(deps),
        "silhouette": to_t(sils),
        "label": torch.tensor(labels),
        "subject": np.array(subjects),
        "camera": np.array(cameras),
        "names": names,
    }


class TinyVideoCNN(nn.Module):
    """Frame-wise 2D CNN; video logits = mean of frame logits over T (Garcia et al. 2018 / REF §1)."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        chans = [3, width // 2, width, 2 * width, 2 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [
                nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, 3, S, S) float -> (B, K) video logits."""
        B, T = x.shape[:2]
        return self.head(self.features(x.flatten(0, 1))).view(B, T, -1).mean(1)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 clips (N, T, 3, H, W) -> ImageNet-normalised float (the dataset's one normalisation)."""
    return normalize(x)


def train_eval(
    x: torch.Tensor, y: torch.Tensor, tr: np.ndarray, te: np.ndarray, k: int, *, epochs: int, seed: int
) -> tuple[float, np.ndarray]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = TinyVideoCNN(k)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xtr, ytr = normalise(x[tr]), y[tr]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(tr), generator=g)
        for i in range(0, len(tr), 16):
            b = perm[i : i + 16]
            xb = xtr[b]
            shift = torch.randint(-3, 4, (2,), generator=g)  # small translation jitter
            xb = torch.roll(xb, shifts=(int(shift[0]), int(shift[1])), dims=(3, 4))
            loss = nn.functional.cross_entropy(model(xb), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(normalise(x[te])).argmax(1)
    conf = np.zeros((k, k), int)
    for t_, p_ in zip(y[te].tolist(), pred.tolist()):
        conf[t_, p_] += 1
    return float((pred == y[te]).float().mean()), conf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/synth_demo")
    ap.add_argument("--preset", default="demo", help="generated when --root holds no dataset")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--protocol", default="xsub", choices=["xsub", "xview"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modalities", default="rgb,depth,silhouette")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth_modality_check.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    if not (root / "synth_config.json").exists():
        generate_dataset(root, args.preset, workers=2, progress=True)
    t0 = time.perf_counter()
    data = load(root, args.frames, args.size)
    classes = json.loads((root / "classes.json").read_text())
    k = len(classes)
    if args.protocol == "xsub":
        is_tr = np.isin(data["subject"], list(XSUB_TRAIN_SUBJECTS))
    else:
        is_tr = np.isin(data["camera"], list(XVIEW_TRAIN_CAMERAS))
    tr, te = np.flatnonzero(is_tr), np.flatnonzero(~is_tr)
    print(
        f"{len(tr)} train / {len(te)} test samples, {k} classes, loaded in {time.perf_counter() - t0:.1f} s"
    )
    results: dict = {
        "root": str(root),
        "protocol": args.protocol,
        "train": len(tr),
        "test": len(te),
        "classes": k,
        "chance": 1.0 / k,
        "epochs": args.epochs,
        "size": args.size,
    }
    for mod in args.modalities.split(","):
        accs, confs = [], []
        for s in range(args.seeds):
            t1 = time.perf_counter()
            acc, conf = train_eval(data[mod], data["label"], tr, te, k, epochs=args.epochs, seed=s)
            accs.append(acc)
            confs.append(conf)
            print(f"{mod:10s} seed {s}: test accuracy {acc:.3f} ({time.perf_counter() - t1:.1f} s)")
        conf = np.sum(confs, 0)
        per_class = {
            classes[str(i + 1)]["name"]: round(float(conf[i, i] / max(conf[i].sum(), 1)), 3) for i in range(k)
        }
        results[mod] = {
            "accuracy": accs,
            "mean": float(np.mean(accs)),
            "per_class": per_class,
            "confusion": conf.tolist(),
        }
        print(f"{mod:10s} mean {np.mean(accs):.3f}  per class: {per_class}")
    if "rgb" in results and "depth" in results:
        print(f"chance {1.0 / k:.3f}; depth - rgb = {results['depth']['mean'] - results['rgb']['mean']:+.3f}")
        idx = {c["name"]: int(a) - 1 for a, c in classes.items()}
        for kind in ("depth-pair", "appearance-pair"):  # each kind: pairs one modality cannot tell apart
            pairs = {c["name"]: c["pair"] for c in classes.values() if c.get("pair") and c.get("kind") == kind}
            if not pairs:
                continue
            rows = [idx[a] for a in pairs]
            for mod in args.modalities.split(","):
                conf = np.array(results[mod]["confusion"])
                swapped = sum(conf[idx[a], idx[b]] for a, b in pairs.items())
                acc = sum(conf[i, i] for i in rows) / max(conf[rows].sum(), 1)
                results[mod][f"{kind}_accuracy"] = float(acc)
                results[mod][f"{kind}_swap_rate"] = float(swapped / max(conf[rows].sum(), 1))
                print(f"{mod:10s} {kind} classes: accuracy {acc:.3f}, predicted as the partner "
                      f"{results[mod][f'{kind}_swap_rate']:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
