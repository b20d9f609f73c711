"""Helpers shared by the recipe tests (tests/test_recipes*.py): the tiny prepared cache, tiny experiments,
the stage plan of a recipe, fabricated "finished" stages, and a spy on the runner's call into the engine.

Sizes are the smallest the pipeline accepts so a stage trains in about a second on one CPU core: ResNet-18 at
width 1/16 (4 base channels), 32x32 crops, 2 frames per clip, 1 epoch, batches of 4 videos. The synthetic
tiny preset with subjects 1-3 gives 18 samples, 3 classes, 6 per split under xsub (train subject 2, val
subject 1, test subject 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modistill.pipeline.runner import build_network, plan_recipe
from modistill.pipeline.session import load_experiment
from modistill.recipes.experiment import ExperimentConfig
from modistill.recipes.stages import Stage

NUM_CLASSES = 3
TINY_MODEL = {"backbone": "resnet18", "width": 0.0625}
TINY_TRAIN = {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False, "log_every": 1}


def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared tiny cache, built once per test session under pytest's session temp folder (the synth
    generator and `prepare_cache` skip finished samples, so a second caller only re-checks)."""
    from modistill.data.prepare import PrepareOptions, prepare_cache
    from modistill.data.synth import generate_dataset

    base = tmp_path_factory.getbasetemp() / "recipe_data"
    cache = base / "cache"
    if not (cache / "done.marker").is_file():
        generate_dataset(base / "raw", preset="tiny", seed=0, workers=1, subjects=[1, 2, 3])
        res = prepare_cache(cache, base / "raw", options=PrepareOptions(size=32, frames=8))
        assert not res.failures, res.failures
        (cache / "done.marker").write_text("ok")
    return cache


def exp_dict(cache: Path, out_dir: Path, **train: Any) -> dict[str, Any]:
    return {
        "out_dir": str(out_dir),
        "data": {"cache": str(cache), "frames": 2},
        "model": dict(TINY_MODEL),
        "train": {**TINY_TRAIN, **train},
    }


def make_exp(
    cache: Path, out_dir: Path, overrides: list[str] | tuple[str, ...] = (), **train: Any
) -> ExperimentConfig:
    return load_experiment(exp_dict(cache, out_dir, **train), list(overrides))


def plan(exp: ExperimentConfig) -> dict[str, tuple[Stage, str, Path]]:
    """Stage name -> (stage, key, folder), computed exactly as `run_recipe` does."""
    return {n: (p.stage, p.key, p.dir) for n, p in plan_recipe(exp).items()}


def fake_finished_stage(exp: ExperimentConfig, name: str, seed: int) -> dict[str, torch.Tensor]:
    """Write a "finished" stage (best checkpoint + result.json) with distinctive random weights, so a later
    stage can start from it without training the earlier ones. BatchNorm buffers are randomised too (running
    statistics far from the defaults 0 / 1, an odd batch count), which makes "bit-identical buffers" checks
    meaningful. Returns the written state dict."""
    st, key, folder = plan(exp)[name]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(exp, st, NUM_CLASSES)
    sd = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.full_like(v, 7 + seed)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=gen)
        elif k.endswith("running_mean"):
            sd[k] = 0.2 * torch.randn(v.shape, generator=gen)
        else:  # weights keep their init scale; the noise makes them unlike any freshly built stream
            sd[k] = v + 0.05 * torch.randn(v.shape, generator=gen) * (v.std() if v.numel() > 1 else 1.0)
    sd = {k: v.contiguous() for k, v in sd.items()}
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "checkpoints" / "best.safetensors"))
    result = {
        "stage": name,
        "title": st.title,
        "paper_row": st.paper_row,
        "key": key,
        "dir": str(folder),
        "best_epoch": 1,
        "test": {"accuracy": 0.5, "paper_row": st.paper_row},
        "extra": {},
    }
    (folder / "result.json").write_text(json.dumps(result))
    return sd


def stream_state(sd: dict[str, torch.Tensor], stream: str) -> dict[str, torch.Tensor]:
    """The entries of ``stream`` in a network state dict, without their ``streams.<name>.`` prefix."""
    prefix = f"streams.{stream}."
    out = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    assert out, f"no stream {stream!r} in state dict (streams: {sorted({k.split('.')[1] for k in sd})})"
    return out


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Keys whose tensors are not bit-identical (dtype, shape and values); keys present in one only count."""
    keys = sorted(set(a) | set(b))
    return [
        k for k in keys if k not in a or k not in b or a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])
    ]


class TrainSpy:
    """Wraps `runner.train_stage` (monkeypatched in): records, per stage, the model's state and frozen streams
    at the moment training starts, and which parameters the optimizer may touch."""

    def __init__(self, real):
        self.real = real
        self.start: dict[str, dict[str, torch.Tensor]] = {}
        self.frozen: dict[str, set[str]] = {}
        self.no_grad: dict[str, set[str]] = {}

    def __call__(self, model, **kw):
        stage = kw["stage"]
        self.start[stage] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.frozen[stage] = set(model.frozen)
        self.no_grad[stage] = {n for n, p in model.named_parameters() if not p.requires_grad}
        return self.real(model, **kw)
