"""The report's figures as PNG files: loss curves (L_hall included, as the paper's Fig. 4), the depth-noise curve
(Table 3) and the confusion matrix of the deployed model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from modistill.engine.metrics_log import read_metrics  # noqa: E402

__all__ = ["loss_curves", "hall_curve", "noise_curve", "confusion_figure", "epoch_records"]


def epoch_records(stage_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a stage's ``metrics.jsonl`` (last record per epoch wins, as after a resume)."""
    if not (Path(stage_dir) / "metrics.jsonl").is_file():
        return []
    by_epoch: dict[int, dict[str, Any]] = {}
    for rec in read_metrics(stage_dir):
        if rec.get("kind") == "epoch":
            by_epoch[int(rec["epoch"])] = rec
    return [by_epoch[e] for e in sorted(by_epoch)]


def loss_curves(stage_dirs: dict[str, str], out: Path) -> Path:
    """Training loss per epoch of every stage (one panel), and validation accuracy (second panel)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, d in stage_dirs.items():
        recs = epoch_records(d)
        if not recs:
            continue
        ep = [r["epoch"] for r in recs]
        ax1.plot(ep, [r["loss"] for r in recs], marker="o", ms=3, label=name)
        val = [(r["epoch"], r["val"]["accuracy"]) for r in recs if r.get("val")]
        if val:
            ax2.plot(*zip(*val), marker="o", ms=3, label=name)
    ax1.set(xlabel="epoch", ylabel="training loss", title="Training loss per stage")
    ax2.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per stage")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def hall_curve(stage_dirs: dict[str, str], out: Path) -> Path | None:
    """The eq. 3 term (L_hall) per epoch of the stages that log it (Fig. 4 of the paper compares step 3 with and
    without connections this way)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, d in stage_dirs.items():
        recs = epoch_records(d)
        keys = sorted({k for r in recs for k in (r.get("parts") or {}) if k.startswith("hall/")})
        if len(keys) == 2 and "hall/total" in keys:  # one layer: its total is the same curve
            keys.remove("hall/total")
        for k in keys:
            ax.plot(
                [r["epoch"] for r in recs],
                [r["parts"].get(k, np.nan) for r in recs],
                marker="o",
                ms=3,
                label=f"{name} {k}",
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch", ylabel="L_hall (eq. 3)", title="Hallucination loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def noise_curve(rob: dict[str, Any], out: Path) -> Path:
    """Accuracy of the step-2 teacher against the depth noise variance, with void depth and the RGB-only final
    model as horizontal references; the paper's cross-view curve is drawn for shape (different data)."""
    sig = np.asarray(rob["sigma2"], dtype=float)
    x = np.where(sig > 0, sig, 1e-4)  # sigma^2 = 0 drawn at the left edge of the log axis
    mean = np.array([a["mean"] for a in rob["accuracy"]]) * 100
    std = np.array([a["std"] or 0.0 for a in rob["accuracy"]]) * 100
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label="ours: step-2 teacher, noisy depth")
    if rob["void"]["mean"] is not None:
        ax.axhline(rob["void"]["mean"] * 100, color="tab:red", ls="--", label="ours: void depth")
    if rob["rgb_final"]["mean"] is not None:
        ax.axhline(
            rob["rgb_final"]["mean"] * 100, color="tab:green", ls="--", label="ours: final RGB-only model"
        )
    p = rob["paper_cv"]
    px = np.where(np.asarray(p["sigma2"]) > 0, p["sigma2"], 1e-4)
    ax.plot(px, p["accuracy"], color="gray", marker="s", ms=3, alpha=0.6, label="paper (NTU, cross-view)")
    ax.set_xscale("log")
    ax.set(
        xlabel="noise variance sigma^2 (0 drawn at 1e-4)",
        ylabel="accuracy (%)",
        title="Robustness to depth noise (Table 3)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_figure(
    confusion: list[list[int]], class_names: list[str] | None, out: Path, title: str = "Confusion matrix"
) -> Path:
    """Row-normalised confusion matrix (rows = true class)."""
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = cm.shape[0]
    names = class_names if class_names and len(class_names) == k else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(0.45 * k + 3, 0.45 * k + 2.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
