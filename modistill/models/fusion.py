"""Late fusion of stream predictions (``"mean"``), and the interface learned fusion modules implement.

The paper's fusion (Garcia et al. 2018 §3.1; REF §1 "Prediction") is the mean of the streams' video logits:
``"mean"``, the default of :class:`~modistill.models.multistream.MultiStreamNet`.

Fusion module interface (what a registered class must implement):

- constructor: ``cls(*, streams: tuple[str, ...], num_classes: int, feature_dims: dict[str, int], **options)``
  where ``streams`` are the names listed in the network's ``fuse`` (in that order), ``num_classes`` is K and
  ``feature_dims[name]`` is the channel count C of that stream's ``features["pooled"]``. Unknown options
  should raise ``TypeError`` (Python does so by itself if the signature has no ``**kwargs``).
- ``forward(outputs: dict[str, StreamOutput]) -> Tensor (B, K)``: ``outputs`` maps the *run* streams among
  ``streams`` (a non-empty subset, same order; a stream may not have been run, e.g. an RGB-only evaluation) to
  their :class:`~modistill.models.stream.StreamOutput`. A learned module may use ``video_logits`` (B, K),
  ``frame_logits`` (B, T, K) or features such as ``features["pooled"]`` (B*T, C) and ``features["layer4"]``
  (B*T, C, h, w); B and T can be read from ``frame_logits.shape[:2]``.
- it is an ``nn.Module``, so its parameters are part of the network's state_dict (key prefix ``fusion.``) and
  are trained with the rest.

Register with ``@register_fusion("name")`` where the class is defined; build with ``create_fusion("name",
streams=..., num_classes=..., feature_dims=..., **options)``. Registering an existing name is an error. The
registry itself lives in the leaf module ``fusion_registry.py`` (re-exported here); the built-in modules
(``"mean"`` here, ``"attention"`` in ``attention_fusion.py``) are registered by importing ``modistill.models``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import ModelInputError
from .fusion_registry import create_fusion, list_fusions, register_fusion
from .stream import StreamOutput

# The registry functions are re-exported here (their home is the leaf ``fusion_registry.py``).
__all__ = ["register_fusion", "create_fusion", "list_fusions", "MeanFusion"]


@register_fusion("mean")
class MeanFusion(nn.Module):
    """Mean of the run streams' video logits (Garcia et al. 2018 late fusion): (B, K). No parameters."""

    def __init__(
        self,
        *,
        streams: tuple[str, ...] = (),
        num_classes: int = 0,
        feature_dims: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.streams = tuple(streams)

    def forward(self, outputs: dict[str, StreamOutput]) -> Tensor:
        if not outputs:
            raise ModelInputError("MeanFusion got no stream outputs to fuse")
        return torch.stack([o.video_logits for o in outputs.values()]).mean(dim=0)
