"""Parametric action classes for the synthetic dataset.

Each class names a motion of :mod:`.motions` (a function ``(performer, n_frames, rng) -> PoseTrack``), the
class it is paired with and the object it holds, if any.

The class set is designed so that each modality carries information the other lacks: *depth pairs* differ
mainly along the optical axis of the central camera C001 (the performer faces it), so their RGB images from the
front are alike while their depth differs by 0.2-0.6 m; *appearance pairs* share one motion and one held object
whose colour alone tells them apart, so their depth is identical in distribution (the counterpart of NTU's
object classes, whose small objects the Kinect depth barely resolves); *image-plane* classes move mostly
across the image and are visible in both. See docs/synthetic.md for the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .body import Performer, PoseTrack
from .motions import (
    clap,
    hand_to_shoulder,
    hands_to_chest,
    hold_up_sign,
    jumping_jack,
    lean_backward,
    lean_forward,
    lift_box,
    point_forward,
    push_forward,
    squat,
    step_backward,
    step_forward,
    wave,
)

__all__ = ["ActionClass", "Prop", "ACTIONS", "ACTION_NAMES", "resolve_classes", "make_track", "class_groups"]


@dataclass(frozen=True)
class Prop:
    """A held object: ``shape`` ``"sign"`` (a flat 30 x 40 cm board held up in the right hand by its lower
    edge) or ``"box"`` (30 x 25 x 25 cm, held between both hands), ``color`` its linear RGB albedo. Both are
    large enough to cover tens of pixels of the demo's 64-pixel crops: a smaller card and mug (11 x 15 cm,
    8 cm) were not told apart by colour there, by RGB networks either (docs/synthetic.md)."""

    shape: str
    color: tuple[float, float, float]


@dataclass(frozen=True)
class ActionClass:
    """A named parametric motion. ``pair`` names the class it is hard to tell apart from: in front-view RGB
    for a ``"depth-pair"``, in depth for an ``"appearance-pair"`` (same motion function, a prop of the same
    shape in another colour); ``prop`` the held object, if any."""

    name: str
    description: str
    kind: str  # "depth-pair" | "appearance-pair" | "image-plane"
    pair: str | None
    fn: Callable[[Performer, int, np.random.Generator], PoseTrack]
    prop: Prop | None = None


def _cls(
    fn: Callable, pair: str | None, description: str, *, name: str | None = None, prop: Prop | None = None
) -> ActionClass:
    kind = "image-plane" if pair is None else "appearance-pair" if prop is not None else "depth-pair"
    return ActionClass(name or fn.__name__, description, kind, pair, fn, prop)


# fmt: off
ACTIONS: tuple[ActionClass, ...] = (
    _cls(push_forward, "hands_to_chest", "both hands pushed out from the chest straight towards the camera "
         "at chest height, palms forward, then drawn back"),
    _cls(hands_to_chest, "push_forward", "both hands brought onto the chest, elbows bent at the sides, head "
         "slightly bowed"),
    _cls(point_forward, "hand_to_shoulder", "right arm stretched straight out at the camera (foreshortened: "
         "from the front the hand covers the shoulder)"),
    _cls(hand_to_shoulder, "point_forward", "right hand raised to just in front of the right shoulder, elbow "
         "low in front of the chest"),
    _cls(lean_forward, "lean_backward", "trunk bows 30-45 degrees towards the camera, hips back, arms "
         "hanging"),
    _cls(lean_backward, "lean_forward", "trunk bends 18-28 degrees away from the camera, hips forward, arms "
         "hanging"),
    _cls(step_forward, "step_backward", "right foot steps 0.3-0.45 m towards the camera, weight follows, "
         "then back"),
    _cls(step_backward, "step_forward", "right foot steps 0.3-0.45 m away from the camera, weight follows, "
         "then back"),
    _cls(wave, None, "right hand raised beside the head, waving side to side at 1.6-2.6 Hz"),
    _cls(clap, None, "hands clap repeatedly in front of the chest at 1.8-2.6 Hz"),
    _cls(squat, None, "knees bend until the hips drop 0.3-0.42 m, arms swing forward, then up again"),
    _cls(jumping_jack, None, "jumps with arms swung overhead and feet apart, 1.1-1.6 Hz"),
    _cls(hold_up_sign, "hold_up_yellow_sign", "right arm raised forward and out holding up a red 30 x 40 cm "
         "sign above the hand", name="hold_up_red_sign", prop=Prop("sign", (0.72, 0.05, 0.04))),
    _cls(hold_up_sign, "hold_up_red_sign", "the same with a yellow sign", name="hold_up_yellow_sign",
         prop=Prop("sign", (0.85, 0.68, 0.04))),
    _cls(lift_box, "lift_green_box", "both hands lift a red 30 x 25 x 25 cm box from the waist to the chest, then "
         "lower it", name="lift_red_box", prop=Prop("box", (0.6, 0.08, 0.05))),
    _cls(lift_box, "lift_red_box", "the same with a green box", name="lift_green_box",
         prop=Prop("box", (0.08, 0.45, 0.1))),
)
# fmt: on
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)
_BY_NAME = {a.name: a for a in ACTIONS}


def resolve_classes(classes: list[str | int] | tuple[str | int, ...] | int | None) -> list[ActionClass]:
    """The class list: ``None`` = all of :data:`ACTIONS`, an int ``k`` = the first k, or names / 1-based indices into
    :data:`ACTIONS`. The dataset's action ids are 1..len(result) in this order."""
    if classes is None:
        return list(ACTIONS)
    if isinstance(classes, int):
        if not 1 <= classes <= len(ACTIONS):
            raise ValueError(f"classes: need 1..{len(ACTIONS)} classes, got {classes}")
        return list(ACTIONS[:classes])
    out = []
    for c in classes:
        if isinstance(c, str) and c.isdigit():
            c = int(c)
        if isinstance(c, int):
            if not 1 <= c <= len(ACTIONS):
                raise ValueError(f"classes: index {c} out of range 1..{len(ACTIONS)}")
            out.append(ACTIONS[c - 1])
        elif c in _BY_NAME:
            out.append(_BY_NAME[c])
        else:
            raise ValueError(f"classes: unknown class {c!r}; known: {', '.join(ACTION_NAMES)}")
    if len({a.name for a in out}) != len(out):
        raise ValueError(f"classes: duplicate entries in {list(classes)}")
    if not out:
        raise ValueError("classes: empty class list")
    return out


def make_track(action: ActionClass, perf: Performer, n_frames: int, rng: np.random.Generator) -> PoseTrack:
    """The pose track of one sample of ``action`` performed by ``perf`` over ``n_frames`` frames."""
    return action.fn(perf, int(n_frames), rng)


# How the report names each kind's group of classes (docs/synthetic.md).
_GROUP_NAMES = {"depth-pair": "depth pairs", "appearance-pair": "appearance pairs", "image-plane": "image-plane"}


def class_groups(names: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """Group name -> the classes of ``names`` of that kind, in ``names`` order (kinds in order of first
    appearance); names that are not synthetic classes are left out."""
    out: dict[str, list[str]] = {}
    for name in names:
        if name in _BY_NAME:
            out.setdefault(_GROUP_NAMES[_BY_NAME[name].kind], []).append(name)
    return out
