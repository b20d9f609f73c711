"""YAML 1.2 core-schema reading and writing for configs (PyYAML implements YAML 1.1).

In YAML 1.1, 1e-3 is a *string*, "on"/"yes" are booleans and 010 is octal 8; configs are easier to read with the
1.2 rules (the ones most other YAML tools and JSON follow). Duplicate keys are errors with both line numbers.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Dumper", "yaml_load"]

_IMPLICIT = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_RESOLVERS = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+.0123456789"),
    ),
]


def _core_schema(cls: type) -> type:
    cls.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in lst if tag not in _IMPLICIT]
        for ch, lst in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, rx, first in _RESOLVERS:
        cls.add_implicit_resolver(tag, rx, first)
    return cls


@_core_schema
class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # unhashable key: PyYAML reports it below
                pass
        return super().construct_mapping(node, deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    s = str(loader.construct_scalar(node))
    if s.startswith(("0o", "0x")):
        return int(s[2:], 8 if s[1] == "o" else 16)
    return int(s, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class Dumper(yaml.SafeDumper):
    """Quotes every string that a YAML 1.2 *or* 1.1 reader would take for a bool/int/float ("1e-3", "yes"),
    so dumped configs read back equal here and in other YAML tools."""


for _tag, _rx, _first in _RESOLVERS:
    Dumper.add_implicit_resolver(_tag, _rx, _first)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# --- conversion -----------------------------------------------------------------------------------------
