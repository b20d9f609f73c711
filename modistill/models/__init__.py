"""modistill.models: ResNet backbones, video streams, the multi-stream network, fusion, registry, pretrained
loading.

The registries (``registry.py`` for models, ``fusion_registry.py`` for fusion modules) are leaves; every
architecture and fusion module registers itself where it is defined. Importing this package imports those
modules, so ``create_model`` / ``create_fusion`` find every built-in entry.

See docs/models.md and docs/ARCHITECTURE.md ("models").
"""

from .attention_fusion import AttentionFusion
from .connections import eq2_paper, eq2_released
from .errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ModelConfigError,
    ModelInputError,
    UnknownNameError,
)
from .fusion import MeanFusion, create_fusion, list_fusions, register_fusion
from .multistream import Connection, MultiStreamNet, MultiStreamOutput, StreamSpec
from .pretrained import LoadReport, load_pretrained, read_state_dict
from .registry import create_model, list_models, model_description, register_model
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .stream import StreamOutput, VideoStream
from .temporal import TemporalConv

__all__ = [
    "AttentionFusion",
    "BasicBlock",
    "Bottleneck",
    "CheckpointError",
    "CheckpointNotFoundError",
    "Connection",
    "LoadReport",
    "MeanFusion",
    "ModelConfigError",
    "ModelInputError",
    "MultiStreamNet",
    "MultiStreamOutput",
    "ResNet",
    "StreamOutput",
    "StreamSpec",
    "TemporalConv",
    "UnknownNameError",
    "VideoStream",
    "create_fusion",
    "create_model",
    "eq2_paper",
    "eq2_released",
    "list_fusions",
    "list_models",
    "load_pretrained",
    "model_description",
    "read_state_dict",
    "register_fusion",
    "register_model",
    "resnet18",
    "resnet34",
    "resnet50",
]
