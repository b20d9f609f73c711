"""Synthetic NTU-format RGB-D action dataset generator (``modistill synth``).

Articulated performers with the Kinect 25-joint skeleton perform parametric actions in textured rooms seen by
three Kinect v2-like rigs; the output is the exact NTU RGB+D on-disk layout (RGB .avi, masked 16-bit depth
PNGs, .skeleton text files) plus a truth sidecar per sample. See docs/synthetic.md.

    from modistill.data.synth import generate_dataset
    names = generate_dataset("data/synth", preset="demo", workers=2)
"""

from .actions import ACTION_NAMES, ACTIONS, ActionClass, class_groups
from .config import PRESETS, SynthConfig, make_config, sample_names
from .generate import generate_dataset, generate_sample, is_complete, sample_paths
from .sample import SampleData, synthesize

__all__ = [
    "ACTIONS",
    "ACTION_NAMES",
    "ActionClass",
    "class_groups",
    "PRESETS",
    "SynthConfig",
    "make_config",
    "sample_names",
    "generate_dataset",
    "generate_sample",
    "is_complete",
    "sample_paths",
    "SampleData",
    "synthesize",
]
