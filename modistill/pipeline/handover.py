"""Stage hand-over: a stage's network takes its streams' weights from earlier stages' best checkpoints, and its
stand-ins (recipes/stages.py ``StandInPlan``) their values from the absent source stream's statistics.

Garcia et al. 2018 step 4 (REF §3): the hallucination stream was trained in step 3 with the frozen depth stream
injected through eq. 2; in step 4 depth is gone. A ``"mean"`` (or ``"learned"``) stand-in replaces the source's
post-ReLU unit-1 output m of each connected stage by its per-channel mean over the training split, computed
here from the source stream's weights (for the depth stream of step 3: frozen, so the step-2 depth stream's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from modistill.engine.utils import device_transform_of, move_to_device, resolve_device
from modistill.models.multistream import MultiStreamNet, StreamSpec
from modistill.recipes.stages import Stage, StandInPlan

__all__ = ["init_from_stages", "stream_weights", "set_standins", "source_unit1_means"]


def stream_weights(path: Path, stream: str, cache: dict[Path, dict[str, Tensor]] | None = None,
                   needed_by: str = "") -> dict[str, Tensor]:
    """The weights of ``stream`` in the network checkpoint ``path`` (prefix ``streams.<stream>.`` removed)."""
    cache = {} if cache is None else cache
    if path not in cache:
        if not path.is_file():
            raise FileNotFoundError(f"{needed_by}: {path} not found (stage {path.parent.parent.name!r} has not "
                                    "finished)")
        cache[path] = load_file(str(path))
    prefix = f"streams.{stream}."
    sd = {k[len(prefix):]: v for k, v in cache[path].items() if k.startswith(prefix)}
    if not sd:
        raise KeyError(f"{path}: no weights for stream {stream!r} (needed by {needed_by})")
    return sd


def init_from_stages(net: MultiStreamNet, stage: Stage, dirs: dict[str, Path]) -> None:
    """Copy each stream's weights from the best checkpoint of the stage it names (stage hand-over)."""
    cache: dict[Path, dict[str, Tensor]] = {}
    for s in stage.streams:
        src = s.source
        if src is None:
            continue
        path = dirs[src[0]] / "checkpoints" / "best.safetensors"
        sd = stream_weights(path, src[1], cache, needed_by=f"stage {stage.name!r}/{s.name}")
        try:
            net.streams[s.name].load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise RuntimeError(
                f"stage {stage.name!r}: cannot load {path} stream {src[1]!r} into stream {s.name!r}: {exc}"
            ) from exc


def source_unit1_means(spec: StreamSpec, weights: dict[str, Tensor], num_classes: int, data: Dataset,
                       modality: str, stages: tuple[int, ...], *, batch_size: int,
                       device: str = "cpu") -> dict[int, Tensor]:
    """Per-channel mean of ``relu(unit-1 output)`` of a stream run alone over ``data``, for each of ``stages``:
    stage -> ``(C,)``. The stream is in eval mode (a frozen source keeps its BatchNorm statistics)."""
    net = MultiStreamNet({"src": spec}, num_classes)
    net.streams["src"].load_state_dict(weights, strict=True)
    dev = resolve_device(device, int(os.environ.get("LOCAL_RANK", 0)))
    stream = net.streams["src"].to(dev).eval()
    sums: dict[int, Tensor] = {}
    counts: dict[int, int] = dict.fromkeys(stages, 0)
    on_device = device_transform_of(data)  # uint8 items are normalised on the device, as in training
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=batch_size):
            batch = move_to_device(batch, dev)
            clips = (on_device(batch) if on_device is not None else batch)[modality]
            x = stream.stem(clips)
            for st in range(1, max(stages) + 1):
                m = torch.relu(stream.unit0(st, x))
                if st in stages:
                    sums[st] = sums.get(st, 0) + m.double().sum(dim=(0, 2, 3))
                    counts[st] += m.shape[0] * m.shape[2] * m.shape[3]
                x = stream.rest(st, m, clips.shape[1])
    return {st: (sums[st] / counts[st]).float().cpu() for st in stages}


def set_standins(net: MultiStreamNet, stage: Stage, dirs: dict[str, Path],
                 spec_for: Callable[[str], StreamSpec],
                 datasets: Callable[[str, tuple[str, ...], bool], Dataset], num_classes: int, *,
                 batch_size: int, device: str = "cpu") -> dict[str, list[float]]:
    """Give ``net``'s stand-ins their initial values (``mode`` ``"mean"``/``"learned"``: the source's unit-1
    means on the training split, unaugmented; ``"zero"``: zeros, as built). Returns them for the record."""
    record: dict[str, list[float]] = {}
    for sd in stage.standins:
        if sd.mode == "zero":
            continue
        means = _means(sd, dirs, spec_for(sd.source_modality), datasets, num_classes, batch_size, device,
                       stage.name)
        for st, value in means.items():
            getattr(net.standin_values, f"{sd.target}_{st}").data.copy_(value)
            record[f"{sd.target}_{st}"] = [round(float(v), 6) for v in value]
    return record


def _means(sd: StandInPlan, dirs: dict[str, Path], spec: StreamSpec, datasets, num_classes: int,
           batch_size: int, device: str, stage_name: str) -> dict[int, Tensor]:
    src_stage, src_stream = sd.source
    weights = stream_weights(dirs[src_stage] / "checkpoints" / "best.safetensors", src_stream,
                             needed_by=f"stage {stage_name!r} stand-in for {sd.target!r}")
    data = datasets("train", (sd.source_modality,), False)
    return source_unit1_means(spec, weights, num_classes, data, sd.source_modality, sd.stages,
                              batch_size=batch_size, device=device)
