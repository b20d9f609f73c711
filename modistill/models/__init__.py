"""modistill.models: ResNet backbones, video streams, the multi-stream network, fusion, registry, pretrained
loading.

See docs/models.md and docs/ARCHITECTURE.md ("models").
"""

from .fusion import MeanFusion, create_fusion, list_fusions, register_fusion
from .multistream import Connection, MultiStreamNet, MultiStreamOutput, StreamSpec
from .pretrained import LoadReport, load_pretrained, read_state_dict
from .registry import create_model, list_models, model_description, register_model
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .stream import StreamOutput, VideoStream
from .temporal import TemporalConv

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "Connection",
    "LoadReport",
    "MeanFusion",
    "MultiStreamNet",
    "MultiStreamOutput",
    "ResNet",
    "StreamOutput",
    "StreamSpec",
    "TemporalConv",
    "VideoStream",
    "create_fusion",
    "create_model",
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
