"""Typed configs: nested dataclasses <- YAML files + dotted command-line overrides.

```python
cfg = load_config(ExperimentConfig, "configs/x.yaml", ["train.lr=1e-4", "stages.step3.loss.alpha=0.7"])
dump_yaml(cfg, "runs/x/config.yaml"); config_hash(cfg)
```

Rules (docs/config.md): YAML is read with the YAML 1.2 core schema (``1e-3`` is a float, ``yes``/``on``
are strings, ``010`` is 10); duplicate YAML keys, unknown keys and wrong types are errors naming the file (or
the override) and the full dotted key, with a difflib suggestion for misspelt keys. ``int`` is accepted for
``float``; nothing else is coerced except ``str`` -> ``Path``. A YAML mapping for a nested dataclass fills
only the keys it names (the rest keep their defaults); a value for a ``dict``/``list`` field replaces the
whole default. Overrides are applied to the complete effective config, so ``stages.step3.loss.alpha=0.7``
edits one entry of a default dict without dropping the others.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import hashlib
import json
import os
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .atomic import write_text_atomic
from .errors import ModistillError
from .yamlio import Dumper as _Dumper
from .yamlio import yaml_load as _yaml_load

__all__ = [
    "ConfigError",
    "apply_overrides",
    "config_hash",
    "dump_yaml",
    "load_config",
    "parse_override",
    "to_dict",
    "to_yaml",
]

C = TypeVar("C")
#: the field that tells the members of a tagged union of dataclasses apart (``recipe.name``)
TAG = "name"
_NONE = type(None)


class ConfigError(ModistillError, ValueError):
    """A config problem: ``"<origin>: <dotted.key>: <message>"`` (origin = file name or override)."""

    def __init__(self, message: str, key: str | None = None, origin: str | None = None) -> None:
        super().__init__(message)
        self.message, self.key, self.origin = message, key, origin

    def __str__(self) -> str:
        return ": ".join(p for p in (self.origin, self.key, self.message) if p)


def _join(key: str, part: str | int) -> str:
    return f"{key}.{part}" if key else str(part)


def _tname(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _desc(value: Any) -> str:
    if value is None:
        return "null"
    r = repr(value)
    return f"{type(value).__name__} {r if len(r) <= 60 else r[:57] + '...'}"


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except NameError as e:
        raise ConfigError(f"cannot resolve the type annotations of {cls.__qualname__}: {e}") from e


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check/coerce ``value`` (parsed YAML) against the type ``tp``; ``key`` is the dotted path for errors."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin is Literal:
        for opt in args:  # type too, so True never passes for Literal[1]
            if value == opt and type(value) is type(opt):
                return opt
        hint = _suggest(value, [a for a in args if isinstance(a, str)]) if isinstance(value, str) else ""
        opts = ", ".join(repr(a) for a in args)
        raise ConfigError(f"expected one of {opts}, got {_desc(value)}" + (f" ({hint})" if hint else ""), key)
    if origin is Union or origin is types.UnionType:
        if value is None:
            if _NONE in args:
                return None
            raise ConfigError(f"expected {_tname(tp)}, got null", key)
        choices = [a for a in args if a is not _NONE]
        if len(choices) == 1:
            return _convert(choices[0], value, key)
        if _is_tagged(choices):
            return _convert_tagged(choices, value, key)
        for a in choices:
            try:
                return _convert(a, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"expected {_tname(tp)}, got {_desc(value)}", key)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, key)
    if value is None:
        raise ConfigError(f"expected {_tname(tp)}, got null", key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        hint = " (use true or false)" if isinstance(value, str) else ""
        raise ConfigError(f"expected bool, got {_desc(value)}{hint}", key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"expected int, got {_desc(value)}", key)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"expected float, got {_desc(value)}", key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"expected str, got {_desc(value)} (quote it to make it a string)", key)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, str | PurePath):
            return tp(value)
        raise ConfigError(f"expected a path string, got {_desc(value)}", key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value == member.value or value is member:
                return member
        raise ConfigError(f"expected one of {[m.value for m in tp]}, got {_desc(value)}", key)
    container = origin or tp
    if container in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected a list, got {_desc(value)}", key)
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"expected a list of {len(args)} items, got {len(value)}", key)
            return tuple(_convert(a, v, _join(key, i)) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, _join(key, i)) for i, v in enumerate(value)]
        return items if container is list else tuple(items)
    if container in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {_desc(value)}", key)
        kt, vt = args if args else (Any, Any)
        return {_convert(kt, k, _join(key, k)): _convert(vt, v, _join(key, k)) for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"unsupported field type {_tname(tp)} for value {_desc(value)}", key)


def _convert_dataclass(cls: type, value: Any, key: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping for {cls.__name__}, got {_desc(value)}", key or None)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        if not isinstance(k, str) or k not in fields:
            hint = _suggest(str(k), list(fields)) or f"valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown key ({hint})", _join(key, k))
        kwargs[k] = _convert(hints[k], v, _join(key, k))
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ConfigError("missing required key", _join(key, name))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError, AssertionError) as e:  # __post_init__ validation
        # A message that starts with a field name ("alpha must be ...") is pinned to that field's key.
        m = re.match(r"[A-Za-z_]\w*", str(e))
        where = _join(key, m.group(0)) if m and m.group(0) in fields else key or "(top level)"
        raise ConfigError(f"invalid {cls.__name__}: {e}", where) from e


def _tag_options(cls: type) -> tuple:
    return get_args(_hints(cls).get(TAG, None)) if get_origin(_hints(cls).get(TAG, None)) is Literal else ()


def _is_tagged(choices: list[Any]) -> bool:
    return all(dataclasses.is_dataclass(c) and isinstance(c, type) and _tag_options(c) for c in choices)


def _convert_tagged(choices: list[type], value: Any, key: str) -> Any:
    """A tagged union of dataclasses: the ``name`` field picks the member (default: the first member's).

    Keys of another member whose value equals that member's default are dropped: they are what a complete
    effective config carries after an override switched the tag (``recipe.name=motion`` on a depth config).
    Any other key of another member is an error that names the member it belongs to.
    """
    if any(isinstance(value, c) for c in choices):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping, got {_desc(value)}", key or None)
    default = dataclasses.fields(choices[0])
    tag = value.get(TAG, next(f.default for f in default if f.name == TAG))
    member = next((c for c in choices if tag in _tag_options(c)), None)
    if member is None:
        opts = [t for c in choices for t in _tag_options(c)]
        hint = _suggest(tag, opts) if isinstance(tag, str) else ""
        raise ConfigError(f"expected one of {', '.join(map(repr, opts))}, got {_desc(tag)}"
                          + (f" ({hint})" if hint else ""), _join(key, TAG))
    own = {f.name for f in dataclasses.fields(member)}
    kept: dict[str, Any] = {}
    for k, v in value.items():
        others = [c for c in choices if c is not member and k in {f.name for f in dataclasses.fields(c)}]
        if k in own or not others:
            kept[k] = v  # an unknown key is reported by the member's own conversion
        elif not all(v == to_dict(_field_default(c, k)) for c in others):
            names = "/".join(str(t) for c in others for t in _tag_options(c))
            raise ConfigError(f"is a setting of the {names!r} {key or 'config'}, not of {tag!r}", _join(key, k))
    return _convert_dataclass(member, kept, key)


def _field_default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# --- public API -----------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> Any:
    """A dataclass config (or nested value) as plain YAML/JSON-safe data: dicts, lists, str, numbers, None.

    Tuples become lists, paths strings and enums their values; only ``init`` fields are kept, so the result
    loads back into an equal config.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, Mapping):
        return {(k.value if isinstance(k, enum.Enum) else k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, PurePath):
        return str(cfg)
    if isinstance(cfg, enum.Enum):
        return cfg.value
    if cfg is None or isinstance(cfg, bool | int | float | str):
        return cfg
    raise TypeError(f"to_dict: cannot serialise a value of type {type(cfg).__name__}: {cfg!r}")


def to_yaml(cfg: Any) -> str:
    """The YAML text of ``to_dict(cfg)`` (field order kept; reads back equal with ``load_config``)."""
    return yaml.dump(
        to_dict(cfg), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def dump_yaml(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` as YAML to ``path`` atomically (`core.atomic`); returns the path."""
    return write_text_atomic(path, to_yaml(cfg))


def config_hash(cfg: Any, length: int = 12) -> str:
    """Stable hex digest (sha256 prefix) of the config's content; equal configs hash equal."""
    text = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b.c=VALUE"`` -> ``("a.b.c", value)``, VALUE parsed as YAML (``1e-4``, ``[1, 2]``, ``{k: 1}``)."""
    where = f"override {text!r}"
    if "=" not in text:
        raise ConfigError("expected KEY=VALUE, e.g. train.lr=1e-4", origin=where)
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError("empty key or key component", origin=where)
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse the value {raw!r} as YAML: {e}", key, where) from e
    return key, value


def _set_path(tree: dict, key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"not an index of this {len(node)}-item list", here, where)
            idx: Any = int(part)
        elif isinstance(node, dict):
            idx = part
        else:
            parent = ".".join(parts[:i])
            raise ConfigError(f"{parent} is a {type(node).__name__} value, not a mapping", here, where)
        if last:
            node[idx] = value
        else:
            if isinstance(node, dict) and node.get(idx) is None:
                node[idx] = {}  # a missing entry of a dict field, or an Optional section that was null
            node = node[idx]


def apply_overrides(cfg: C, overrides: Sequence[str]) -> C:
    """A new config: ``cfg`` with dotted ``KEY=VALUE`` overrides applied, re-validated as a whole."""
    tree = to_dict(cfg)
    parsed = [(parse_override(o), o) for o in overrides]
    for (key, value), text in parsed:
        _set_path(tree, key, value, f"override {text!r}")
    try:
        return _convert(type(cfg), tree, "")
    except ConfigError as e:
        ek = e.key if e.key and e.key != "(top level)" else ""
        hits = [
            t for (k, _), t in parsed if not ek or ek == k or ek.startswith(k + ".") or k.startswith(ek + ".")
        ]
        e.origin = ", ".join(f"override {t!r}" for t in (hits or [t for _, t in parsed]))
        raise


def _read_source(source: Any) -> tuple[str | None, Any]:
    if source is None:
        return None, {}
    if isinstance(source, Mapping):
        return None, dict(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError("config file not found", origin=str(path))
    try:
        data = _yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", origin=str(path)) from e
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"the top level must be a mapping, got {_desc(data)}", origin=str(path))
    return str(path), data


def load_config(
    cls: type[C],
    source: str | os.PathLike[str] | Mapping[str, Any] | C | None = None,
    overrides: Sequence[str] = (),
) -> C:
    """Build a ``cls`` (a dataclass) from a YAML file, a mapping, an existing instance or nothing (defaults),
    then apply dotted ``overrides`` such as ``"train.lr=1e-4"``.

    Raises:
        ConfigError: unknown keys, wrong types, Literal violations, failed ``__post_init__`` checks, bad YAML;
            the message names the file (or the override) and the full dotted key.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"load_config: cls must be a dataclass type, got {cls!r}")
    if isinstance(source, cls):
        cfg = source
    else:
        origin, raw = _read_source(source)
        try:
            cfg = _convert(cls, raw, "")
        except ConfigError as e:
            e.origin = e.origin or origin
            raise
    return apply_overrides(cfg, overrides) if overrides else cfg
