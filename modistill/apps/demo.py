"""The main job: synthetic NTU-format RGB-D data -> prepared cache -> the four steps over several seeds ->
robustness study -> report (``modistill demo``). ``method="motion"`` (or ``"both"``) adds optical flow to the
cache and runs the motion-distillation variants (recipes/motion.py) with their own table in the report.

Every step is cached or resumable: the generator skips finished samples, ``prepare`` skips cached ones, stages
are content-addressed (a re-run reuses trained stages; a killed one resumes), so running the demo again after an
interruption continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modistill.data.synth import class_groups
from modistill.data.synth.pretext import PretextConfig
from modistill.engine import distributed as D
from modistill.pipeline.pretrain import PretrainConfig, pretrain_dir
from modistill.pipeline.session import cache_datasets, load_experiment
from modistill.pipeline.sweep import run_seeds, seed_worker_setup
from modistill.recipes.ablation import VARIANTS

__all__ = ["DemoSettings", "run_demo", "QUICK", "FULL"]

log = logging.getLogger("modistill.demo")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo flavour: the synthetic preset, the cache resolution and frame budget, the seeds, and
    the pretraining that stands in for ImageNet initialisation (docs/pretrain.md; None: from scratch)."""

    config: str  # packaged YAML under modistill/configs
    preset: str
    synth_overrides: tuple[tuple[str, Any], ...]
    size: int
    cache_frames: int
    seeds: tuple[int, ...]
    pretrain: PretrainConfig | None = None


# 16 performers (NTU-60 cross-subject: 1, 2, 4, 5, 8, 9, 13, 14, 15, 16 train, subject 1 of them for validation;
# 3, 6, 7, 10, 11, 12 test) seen by cameras 1 and 2: 384 videos. Why not the preset's 8 performers x 3 cameras:
# with 4 training performers a from-scratch RGB stream memorises their appearance and tests at chance (measured:
# 10.5 +- 1.9 % over 3 seeds, 12 classes), which leaves nothing to distil into; 9 performers lift it to ~21 %
# at the same cost per video, and a second camera adds little for cross-subject (docs/demo.md).
# The held-out performers (validation: subject 1; test: 3, 6, 7, 10, 11, 12 and the NTU-60 test subjects 20-23)
# perform HELD_OUT_REPLICATIONS times, the training performers once: validation and test get enough videos to
# separate the rows (96 and 480 instead of 24 and 144) while the training set, and so the training cost, stay.
HELD_OUT_SUBJECTS = (1, 3, 6, 7, 10, 11, 12, 20, 21, 22, 23)
HELD_OUT_REPLICATIONS = {1: 4, **{p: 2 for p in HELD_OUT_SUBJECTS[1:]}}
# The stand-in for ImageNet (docs/pretrain.md): one trunk per modality, pretrained on body parts and joints of
# random poses of other performers in other rooms, at the demo's model size and crop size.
DEMO_PRETRAIN = PretrainConfig(backbone="resnet18", width=0.25, pretext=PretextConfig(size=64))
FULL = DemoSettings("demo.yaml", "demo", (("subjects", [*range(1, 17), 20, 21, 22, 23]), ("cameras", [1, 2]),
                                          ("subject_replications", HELD_OUT_REPLICATIONS)),
                    size=64, cache_frames=16, seeds=(0, 1, 2), pretrain=DEMO_PRETRAIN)
# Subjects 1-3 give non-empty train (2), validation (1) and test (3) splits under cross-subject.
QUICK = DemoSettings("demo_quick.yaml", "tiny", (("subjects", [1, 2, 3]),), size=32, cache_frames=8, seeds=(0,),
                     pretrain=PretrainConfig(backbone="resnet18", width=0.125, epochs=1,
                                             pretext=PretextConfig(frames=576, size=32, label_size=16)))


def packaged_config(name: str) -> str:
    return resources.files("modistill").joinpath("configs", name).read_text()


def _timed(timings: dict[str, float], key: str):
    class _T:
        def __enter__(self):
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - self.t0

    return _T()


def run_demo(out: str | Path, *, quick: bool = False, seeds: Sequence[int] | None = None, workers: int = 2,
             overrides: Sequence[str] = (), progress: bool = True, method: str = "depth",
             pretrain: bool = True) -> dict[str, Path]:
    """Run the whole demo into ``out``; returns the report's paths (``out/report.md``, ``out/report.html``,
    ``out/metrics.json`` and the figures). ``method``: ``"depth"`` (the paper's four steps), ``"motion"``
    (flow distillation, docs/motion.md) or ``"both"``. ``pretrain=False`` trains every stream from scratch
    instead of from the pretrained trunks (the stand-in for ImageNet, docs/pretrain.md)."""
    if method not in ("depth", "motion", "both"):
        raise ValueError(f"method must be 'depth', 'motion' or 'both', got {method!r}")
    from modistill.data.prepare import PrepareOptions, prepare_cache
    from modistill.data.synth import generate_dataset
    from modistill.reporting.report import write_report


    settings = QUICK if quick else FULL
    seeds = tuple(settings.seeds if seeds is None else seeds)
    out = Path(out)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    synth_root, cache_root = out / "data" / "synth", out / "data" / f"cache_{settings.size}px"
    with _timed(timings, "generate_s"):
        if D.is_main():
            log.info("generating the synthetic dataset (%s preset) in %s", settings.preset, synth_root)
            generate_dataset(synth_root, preset=settings.preset, seed=0, workers=workers, progress=progress,
                             **dict(settings.synth_overrides))
        D.barrier()
    with _timed(timings, "prepare_s"):
        if D.is_main():
            log.info("preparing the cache (%d px, %d frames) in %s", settings.size, settings.cache_frames,
                     cache_root)
            res = prepare_cache(cache_root, synth_root, workers=workers, progress=progress,
                                options=PrepareOptions(size=settings.size, frames=settings.cache_frames))
            if res.failures:
                log.warning("%d samples failed to prepare (see %s/failures*.jsonl)", len(res.failures), cache_root)
        D.barrier()
    if method != "depth":
        with _timed(timings, "flow_s"):
            if D.is_main():
                from modistill.data.prepare_flow import FlowOptions, prepare_flow

                from .motion_demo import DEMO_FLOW_OPTIONS

                log.info("computing optical flow (%s) in %s", DEMO_FLOW_OPTIONS, cache_root)
                fres = prepare_flow(cache_root, options=FlowOptions(**DEMO_FLOW_OPTIONS), workers=workers,
                                    progress=progress)
                if fres.failures:
                    log.warning("%d samples have no flow (see %s/flow_failures*.jsonl)", len(fres.failures),
                                cache_root)
            D.barrier()
    trunks = None
    if pretrain and settings.pretrain is not None:
        with _timed(timings, "pretrain_s"):
            trunks = _pretrained_trunks(out, settings.pretrain, workers, progress)
    base_raw = demo_base_config(out, settings, trunks)
    base_raw.setdefault("train", {})["progress"] = progress
    names = None
    if method != "motion":
        with _timed(timings, "depth_recipe_s"):
            log.info("the four steps and the robustness study over seeds %s", list(seeds))
            names = run_seeds(_seed_run, seeds, out, base_raw, tuple(overrides))[0]
    sections: dict[str, str] = {}
    motion: dict = {}
    if method != "depth":
        from .motion_demo import run_motion_demo

        with _timed(timings, "motion_s"):
            log.info("motion distillation over seeds %s", list(seeds))
            motion = run_motion_demo(out, base_raw, seeds, overrides)
        sections["Motion distillation (flow as the privileged modality)"] = motion["markdown"]
        if method == "motion":
            names = motion["class_names"]
    timings["total_s"] = time.perf_counter() - t_start
    if not D.is_main():
        return {}
    synth_cfg = json.loads((synth_root / "synth_config.json").read_text())
    intro = (
        "The paper's four-step method (Garcia et al., ECCV 2018) on the synthetic NTU-format RGB-D dataset "
        f"generated by `modistill synth` ({synth_cfg.get('preset')} preset: "
        f"{len(synth_cfg.get('classes', []))} classes, subjects {synth_cfg.get('subjects')}, cameras "
        f"{synth_cfg.get('cameras')}), prepared at {settings.size}x{settings.size} px, over seeds "
        f"{list(seeds)}. Settings: `{settings.config}` (packaged with modistill); see docs/demo.md."
        + (" The motion section trains flow-privileged variants on the same data (docs/motion.md)."
           if method == "both" else "")
        + (" Both streams start from trunks pretrained on synthetic body parts (`modistill pretrain`, the "
           "stand-in for ImageNet; docs/pretrain.md)." if base_raw["model"].get("pretrained")
           else " Every stream starts from scratch (no pretrained initialisation).")
        + (" **Quick mode: a smoke test, not a result.**" if quick else "")
    )
    if method == "motion":
        intro = intro.replace("The paper's four-step method (Garcia et al., ECCV 2018)",
                              "Motion distillation (flow teacher -> RGB-only student; docs/motion.md)")
    timing_md = "\n".join(f"- {k[:-2].replace('_', ' ')}: {v:.0f} s" for k, v in timings.items())
    sections["Time (this machine)"] = timing_md
    report_root = out / "runs" if method != "motion" else motion["run_root"]
    groups = class_groups(names) if names else None  # the gap per kind of class (depth / appearance pairs)
    return write_report(report_root, out, class_names=names, class_groups=groups, extra={
        "title": "modistill demo report" + (" (quick)" if quick else ""),
        "intro": intro,
        "sections": sections,
        "metrics": {"timings_s": timings, "seeds": list(seeds), "synthetic_config": synth_cfg,
                    "method": method, **({"motion": motion["summary"]} if motion else {}),
                    "demo_settings": {"size": settings.size, "cache_frames": settings.cache_frames,
                                      "config": packaged_config(settings.config)}},
    })


def _pretrained_trunks(out: Path, cfg: PretrainConfig, workers: int, progress: bool) -> dict[str, str]:
    """Pretrain (or reuse) the RGB and depth trunks under ``out/pretrain`` once for every seed; returns the
    ``model.pretrained`` mapping. Under torchrun every rank takes part (one DDP job per trunk; rank 0 renders
    the frames and writes the files)."""
    from modistill.pipeline.pretrain import pretrain_modalities

    root = out / "pretrain"
    log.info("pretraining the RGB and depth trunks (the stand-in for ImageNet) in %s", root)
    pretrain_modalities(root, cfg, ("rgb", "depth"), workers=workers, progress=progress)
    return demo_pretrained(out, cfg)


def demo_pretrained(out: str | Path, cfg: PretrainConfig) -> dict[str, str]:
    """The ``model.pretrained`` mapping of a demo in ``out``: where `modistill pretrain` with ``cfg`` puts
    each modality's trunk under ``out/pretrain`` (the paths are part of the stage keys, so a by-hand run that
    names the same paths reuses the demo's stages)."""
    root = Path(out) / "pretrain"
    return {m: str(pretrain_dir(root, dataclasses.replace(cfg, modality=m)) / "backbone.safetensors")
            for m in ("rgb", "depth")}


def demo_base_config(out: str | Path, settings: DemoSettings, pretrained: dict[str, str] | None) -> dict[str, Any]:
    """The demo's experiment before the seed is set: the packaged config on the demo's cache in ``out``, both
    streams starting from ``pretrained`` (None: from scratch)."""
    raw = yaml.safe_load(packaged_config(settings.config))
    raw["data"]["cache"] = str(Path(out) / "data" / f"cache_{settings.size}px")
    if pretrained is not None:
        raw["model"]["pretrained"] = pretrained
    return raw


def _seed_run(seed: int, threads: int | None, out: Path, base_raw: dict, overrides: Sequence[str]) -> list | None:
    """One seed of the depth recipe plus its robustness study (run in a worker process or in-process)."""
    from modistill.pipeline.robustness import run_robustness
    from modistill.pipeline.runner import run_recipe

    seed_worker_setup(seed, threads)
    exp = load_experiment(base_raw, [*overrides, f"train.seed={seed}"])
    exp.out_dir = str(out / "runs" / f"seed{seed}")
    exp.stage_root = str(out / "stages")
    datasets, num_classes, names = cache_datasets(exp)
    run_recipe(exp, datasets, num_classes, class_names=names)
    _released_route(exp, datasets, num_classes, names)
    run_robustness(exp.out_dir, seed=seed)  # under torchrun every rank evaluates its shard; rank 0 writes
    return names


def _released_route(exp, datasets, num_classes: int, names) -> None:
    """Beside the paper's steps 3-4, the released code's route from the same step-2 teacher: step 3 without the
    depth -> hall connections (Table 2 row 14; its L_hall curve beside row 13's is the paper's Fig. 4
    comparison) and step 4 from it (rows 14-init, 15-nc), added to the seed's results. Why the demo trains both:
    a hall stream trained with connections relies on the depth injected into it, so on this benchmark the
    paper's step 4 (row 15) starts from a weak model, while 15-nc is the best RGB-only model (docs/recipes.md,
    docs/demo.md). The stages are the ablation variant ``step4_from_no_connections``'s (same keys)."""
    from modistill.pipeline.runner import add_result, run_recipe
    from modistill.recipes.ablation import variant_config

    v = VARIANTS["step4_from_no_connections"]
    vexp = variant_config(exp, v)
    vexp.out_dir = str(Path(exp.out_dir) / "variants" / v.name)
    runs = run_recipe(vexp, datasets, num_classes, only=["step3", "step4"], class_names=names)
    add_result(Path(exp.out_dir), "step3_no_connections", runs["step3"])
    add_result(Path(exp.out_dir), "step4_no_connections", runs["step4"])
