"""Multi-stream video network with cross-stream multiplicative connections and late fusion.

Garcia et al. 2018 §3.1 (eq. 2), after Feichtenhofer et al. CVPR 2017 (REF §1). Before the 2nd residual unit
of a chosen stage, the residual branch of the *target* stream's unit 2 gets a product of the two streams'
unit-1 outputs, while unit 2's skip path is untouched. With ``a`` = target's unit-1 output *before* its final
ReLU and ``m`` = the source's unit-1 output *after* its ReLU:

- ``variant="paper"`` (eq. 2, Feichtenhofer's st-resnet):  x_{l+1} = relu( relu(a) + F(a ⊙ m) )
- ``variant="released"`` (Garcia's TensorFlow code):        x_{l+1} = relu( relu(a) + F(relu(a) + a ⊙ m) )

where F is unit 2's residual branch (it also holds the temporal conv). The two forms are the plain tensor
functions :func:`~modistill.models.connections.eq2_paper` and
:func:`~modistill.models.connections.eq2_released` (connections.py, which also defines :class:`Connection`).
Gradients flow into both streams (into the source through ``m``) unless the source is frozen. Direction is
free: depth -> rgb is the paper's, rgb -> depth (supplement Table 1) is just another :class:`Connection`.

One source per target and stage: two connections into the same (target, stage) are rejected at construction
(why: the paper defines only a single injected signal; a product of several is not a published design). A
stream may be both a source and a target (e.g. depth -> hall -> rgb): all products use unit-1 outputs, which
are computed for every stream of a stage before any unit 2 runs, so the order of streams never matters.

The streams run in lock-step stage by stage so that the connections can be applied; a connection is active
only when both its ends are run, so e.g. a hallucination stream can be evaluated on RGB alone.

Construction never loads weights: every stream starts from random (He) init with identity temporal convs.
ImageNet weights are loaded afterwards, per stream, with
:func:`~modistill.models.pretrained.load_pretrained` (``load_pretrained(net.streams[name], path)``).

Registered models (registry.py): ``twostream_resnet18/34/50``, a :class:`MultiStreamNet` with streams ``rgb``
and ``depth`` (reading batch keys ``"rgb"`` and ``"depth"``), depth -> rgb connections at all four stages and
mean late fusion: the paper's step-2 teacher (Garcia et al. 2018 §3.2; the paper uses ResNet-50).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .connections import VARIANTS, Connection, StandIn, connection_branch
from .errors import ModelConfigError, ModelInputError, UnknownNameError
from .fusion_registry import create_fusion
from .registry import register_model
from .resnet import STAGE_NAMES
from .stream import StreamOutput, VideoStream

__all__ = ["StreamSpec", "Connection", "StandIn", "MultiStreamNet", "MultiStreamOutput", "VARIANTS"]


@dataclass(frozen=True)
class StreamSpec:
    """How to build one stream (architecture only: weights are loaded separately, see ``load_pretrained``).

    Attributes:
        backbone: registered 2D ResNet name: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (the paper's).
        modality: the batch key the stream reads (``"rgb"``, ``"depth"``, ``"flow"`` ...).
        width: channel multiplier of the backbone.
        in_channels: channels per frame of that modality.
        temporal: add the identity-initialised temporal convs (REF §1).
    """

    backbone: str = "resnet50"
    modality: str = "rgb"
    width: float = 1.0
    in_channels: int = 3
    temporal: bool = True


@dataclass
class MultiStreamOutput:
    """``streams``: per run stream :class:`StreamOutput`; ``logits``: fused (B, K) video logits."""

    streams: dict[str, StreamOutput]
    logits: Tensor
    fused: tuple[str, ...] = field(default=())


class MultiStreamNet(nn.Module):
    """Named video streams + cross-stream connections + late fusion.

    Args:
        streams: name -> :class:`StreamSpec` (names are free strings without ``"."``).
        num_classes: K, shared by all streams.
        connections: cross-stream connections (see the module docstring).
        fusion: a registered fusion name (``"mean"`` = the paper's late fusion) or a ready ``nn.Module``
            with the fusion interface of fusion.py.
        fuse: the streams whose predictions are fused (default: all, in order).
        fusion_options: extra keyword arguments for ``create_fusion``.
        channels_last: passed to every :class:`VideoStream`.
        standins: what a stream receives where a connection's source is absent (:class:`StandIn`); the
            values are ``standin_values.<target>_<stage>`` ``(C,)`` (zeros until the caller sets them).
    """

    def __init__(
        self,
        streams: Mapping[str, StreamSpec],
        num_classes: int,
        connections: Iterable[Connection] = (),
        fusion: str | nn.Module = "mean",
        fuse: Sequence[str] | None = None,
        fusion_options: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        standins: Iterable[StandIn] = (),
    ) -> None:
        super().__init__()
        if not streams:
            raise ModelConfigError("MultiStreamNet needs at least one stream")
        for name in streams:
            if not name or "." in name:
                raise ModelConfigError(f"invalid stream name {name!r} (non-empty, no '.')")
        self.specs: dict[str, StreamSpec] = dict(streams)
        self.num_classes = num_classes
        self.streams = nn.ModuleDict()
        for name, spec in self.specs.items():  # streams are built (and draw their init) in `streams` order
            self.streams[name] = VideoStream(
                spec.backbone,
                num_classes=num_classes,
                in_channels=spec.in_channels,
                width=spec.width,
                temporal=spec.temporal,
                channels_last=channels_last,
            )
        self.connections: list[Connection] = list(connections)
        self._by_target: dict[tuple[str, int], Connection] = self._index_connections(self.connections)
        self.fuse: tuple[str, ...] = tuple(fuse) if fuse is not None else tuple(self.specs)
        unknown = [n for n in self.fuse if n not in self.specs]
        if unknown or not self.fuse or len(set(self.fuse)) != len(self.fuse):
            raise ModelConfigError(
                f"fuse must list distinct known streams {list(self.specs)}, got {list(self.fuse)}"
            )
        self.fusion = self._build_fusion(fusion, fusion_options)
        self._frozen: set[str] = set()
        self.standin_values = nn.Module()
        self._standins: dict[tuple[str, int], StandIn] = {}
        for sd in standins:
            if sd.target not in self.specs:
                raise ModelConfigError(f"stand-in: unknown stream {sd.target!r}; streams: {list(self.specs)}")
            chans = self.streams[sd.target].backbone.stage_channels()
            for st in sd.stages:
                if (sd.target, st) in self._standins:
                    raise ModelConfigError(f"two stand-ins for stream {sd.target!r} at stage {st}")
                self._standins[(sd.target, st)] = sd
                zeros = torch.zeros(chans[st - 1])
                if sd.learnable:
                    self.standin_values.register_parameter(f"{sd.target}_{st}", nn.Parameter(zeros))
                else:
                    self.standin_values.register_buffer(f"{sd.target}_{st}", zeros)

    def _index_connections(self, connections: list[Connection]) -> dict[tuple[str, int], Connection]:
        """Check each connection; map (target, stage) -> its one incoming connection."""
        by_target: dict[tuple[str, int], Connection] = {}
        for c in connections:
            self._check_connection(c)
            for s in c.stages:
                if (c.target, s) in by_target:
                    other = by_target[(c.target, s)]
                    raise ModelConfigError(
                        f"stream {c.target!r} already receives a connection from {other.source!r} at "
                        f"stage {s}; a second one from {c.source!r} is not supported (one source per "
                        "target and stage)"
                    )
                by_target[(c.target, s)] = c
        return by_target

    def _check_connection(self, c: Connection) -> None:
        for end in (c.source, c.target):
            if end not in self.specs:
                raise ModelConfigError(
                    f"connection {c.source}->{c.target}: unknown stream {end!r}; streams: {list(self.specs)}"
                )
        src = self.streams[c.source].backbone.stage_channels()
        dst = self.streams[c.target].backbone.stage_channels()
        for s in c.stages:
            if src[s - 1] != dst[s - 1]:
                raise ModelConfigError(
                    f"connection {c.source}->{c.target} at stage {s}: channel counts differ "
                    f"({src[s - 1]} vs {dst[s - 1]}); connected streams need the same backbone and width"
                )

    def _build_fusion(self, fusion: str | nn.Module, options: Mapping[str, Any] | None) -> nn.Module:
        """The fusion module: built from the registry when given by name (after the streams: init order)."""
        if isinstance(fusion, str):
            feature_dims = {n: self.streams[n].backbone.feature_dim for n in self.fuse}
            return create_fusion(
                fusion,
                streams=self.fuse,
                num_classes=self.num_classes,
                feature_dims=feature_dims,
                **(options or {}),
            )
        if options:
            raise ModelConfigError("fusion_options only apply when fusion is given by name")
        return fusion

    # ----------------------------------------------------------------------------------------------- freezing
    @property
    def frozen(self) -> set[str]:
        """Names of the frozen streams (a copy)."""
        return set(self._frozen)

    def freeze(self, name: str) -> None:
        """No gradients for stream ``name``; its BatchNorm layers stay in eval mode even under ``train()``."""
        stream = self._stream(name)
        for p in stream.parameters():
            p.requires_grad_(False)
        self._frozen.add(name)
        stream.eval()

    def unfreeze(self, name: str) -> None:
        """Undo :meth:`freeze`; the stream follows the network's train/eval mode again."""
        stream = self._stream(name)
        for p in stream.parameters():
            p.requires_grad_(True)
        self._frozen.discard(name)
        stream.train(self.training)

    def train(self, mode: bool = True) -> MultiStreamNet:
        super().train(mode)
        # A frozen teacher's BN uses (and keeps) its running statistics (REF §3 step 3).
        for name in self._frozen:
            self.streams[name].eval()
        return self

    def _stream(self, name: str) -> VideoStream:
        if name not in self.streams:
            raise UnknownNameError(f"unknown stream {name!r}; streams: {list(self.streams)}")
        return self.streams[name]  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------------ forward
    def active_connections(self, run: Iterable[str]) -> list[Connection]:
        """The connections whose two ends are both in ``run``."""
        run = set(run)
        return [c for c in self.connections if c.source in run and c.target in run]

    def forward(self, batch: Mapping[str, Tensor], streams: Sequence[str] | None = None) -> MultiStreamOutput:
        """Run ``streams`` (default: all) on ``batch`` (modality -> clips (B, T, C, H, W)).

        Returns per-stream outputs and ``logits`` (B, K): the fusion of the run streams listed in ``fuse``;
        when none of those is run, the mean of the run streams' video logits.
        """
        clips = self._select_clips(batch, streams)
        names = list(clips)
        incoming = self._incoming(clips)
        frames = {n: clips[n].shape[1] for n in names}
        x = {n: self._stream(n).stem(clips[n]) for n in names}
        feats: dict[str, dict[str, Tensor]] = {n: {} for n in names}
        for stage in range(1, 5):
            x = self._run_stage(stage, x, frames, incoming)
            for n in names:
                feats[n][STAGE_NAMES[stage - 1]] = x[n]
        outs = {n: self._stream(n).head(x[n], clips[n].shape[0], frames[n], feats[n]) for n in names}
        fused = tuple(n for n in self.fuse if n in outs)
        if fused:
            logits = self.fusion({n: outs[n] for n in fused})
        else:
            logits = torch.stack([o.video_logits for o in outs.values()]).mean(dim=0)
        return MultiStreamOutput(streams=outs, logits=logits, fused=fused)

    def _select_clips(self, batch: Mapping[str, Tensor], streams: Sequence[str] | None) -> dict[str, Tensor]:
        """Check the run list and the batch; return run stream -> its clips (B, T, C, H, W), in run order."""
        names = list(self.streams) if streams is None else list(streams)
        if not names:
            raise ModelInputError("no streams to run")
        if len(set(names)) != len(names):
            raise ModelInputError(f"streams listed twice in {names}")
        for n in names:
            if n not in self.streams:
                raise UnknownNameError(f"unknown stream {n!r}; streams: {list(self.streams)}")
            if self.specs[n].modality not in batch:
                raise UnknownNameError(
                    f"stream {n!r} reads modality {self.specs[n].modality!r}, which is not in the batch "
                    f"(batch keys: {sorted(batch)})"
                )
        clips = {n: batch[self.specs[n].modality] for n in names}
        for n in names:
            if clips[n].dim() != 5:
                raise ModelInputError(
                    f"stream {n!r}: expected clips (B, T, C, H, W), got shape {tuple(clips[n].shape)}"
                )
        return clips

    def _incoming(self, clips: Mapping[str, Tensor]) -> dict[tuple[str, int], Connection]:
        """(target, stage) -> the active connection into it (both ends run), with equal (B, T) checked."""
        incoming = {k: c for k, c in self._by_target.items() if c.source in clips and c.target in clips}
        for (tgt, _), c in incoming.items():
            if clips[c.source].shape[:2] != clips[tgt].shape[:2]:
                raise ModelInputError(
                    f"connection {c.source}->{tgt}: clips differ in (B, T): "
                    f"{tuple(clips[c.source].shape[:2])} vs {tuple(clips[tgt].shape[:2])}"
                )
        return incoming

    def _run_stage(
        self,
        stage: int,
        x: dict[str, Tensor],
        frames: Mapping[str, int],
        incoming: Mapping[tuple[str, int], Connection],
    ) -> dict[str, Tensor]:
        """One stage of every run stream, (B*T, C, h, w) in and out, with eq. 2 applied before unit 2.

        Unit 1 runs for all streams first, so a connection always multiplies unit-1 outputs whatever the
        stream order.
        """
        pre = {n: self._stream(n).unit0(stage, x[n]) for n in x}  # unit-1 outputs before their ReLU
        post = {n: torch.relu(p) for n, p in pre.items()}
        out: dict[str, Tensor] = {}
        for n in x:
            branch = None
            c = incoming.get((n, stage))
            if c is not None:
                a, m = pre[n], post[c.source]
                if a.shape != m.shape:
                    raise ModelInputError(
                        f"connection {c.source}->{n} at stage {stage}: feature shapes differ "
                        f"{tuple(m.shape)} vs {tuple(a.shape)} (inputs must have equal size)"
                    )
                branch = connection_branch(c.variant, a, m, relu_a=post[n])
            elif (n, stage) in self._standins:  # the source is absent: its stand-in (StandIn)
                m = getattr(self.standin_values, f"{n}_{stage}").view(1, -1, 1, 1).to(pre[n].dtype)
                branch = connection_branch(self._standins[(n, stage)].variant, pre[n], m, relu_a=post[n])
            out[n] = self._stream(n).rest(stage, post[n], frames[n], branch)
        return out


# ------------------------------------------------------------------------------------------ registered models
def _twostream(
    base: str,
    num_classes: int,
    width: float,
    in_channels: int,
    connections: bool,
    variant: str,
    temporal: bool,
) -> MultiStreamNet:
    specs = {
        m: StreamSpec(backbone=base, modality=m, width=width, in_channels=in_channels, temporal=temporal)
        for m in ("rgb", "depth")
    }
    conns = [Connection("depth", "rgb", (1, 2, 3, 4), variant)] if connections else []  # type: ignore[arg-type]
    return MultiStreamNet(specs, num_classes, conns, fusion="mean")


@register_model("twostream_resnet18")
def twostream_resnet18(
    num_classes: int = 60,
    width: float = 1.0,
    in_channels: int = 3,
    connections: bool = True,
    variant: str = "paper",
    temporal: bool = True,
) -> MultiStreamNet:
    """rgb + depth resnet18 streams, depth->rgb connections at stages 1-4, mean fusion."""
    return _twostream("resnet18", num_classes, width, in_channels, connections, variant, temporal)


@register_model("twostream_resnet34")
def twostream_resnet34(
    num_classes: int = 60,
    width: float = 1.0,
    in_channels: int = 3,
    connections: bool = True,
    variant: str = "paper",
    temporal: bool = True,
) -> MultiStreamNet:
    """rgb + depth resnet34 streams, depth->rgb connections at stages 1-4, mean fusion."""
    return _twostream("resnet34", num_classes, width, in_channels, connections, variant, temporal)


@register_model("twostream_resnet50")
def twostream_resnet50(
    num_classes: int = 60,
    width: float = 1.0,
    in_channels: int = 3,
    connections: bool = True,
    variant: str = "paper",
    temporal: bool = True,
) -> MultiStreamNet:
    """rgb + depth resnet50 streams, depth->rgb connections at stages 1-4, mean fusion."""
    return _twostream("resnet50", num_classes, width, in_channels, connections, variant, temporal)
