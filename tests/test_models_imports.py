"""Structure of modistill.models: leaf registries, no import cycles, allowed imports, error classes, sizes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import modistill.models
from modistill.core.errors import ModistillError

PKG = Path(modistill.models.__file__).parent
FILES = sorted(PKG.glob("*.py"))
REGISTRIES = ("registry", "fusion_registry")


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved within modistill.models)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
            elif node.module:
                names.append(f"modistill.models.{node.module}")
            else:  # `from . import x`
                names += [f"modistill.models.{a.name}" for a in node.names]
    return names


def _internal(path: Path) -> set[str]:
    return {n.rsplit(".", 1)[-1] for n in _imports(path) if n.startswith("modistill.models.")}


def test_registries_are_leaves() -> None:
    """A registry imports no architecture: within modistill only the error classes (which import only core)."""
    for name in REGISTRIES:
        mods = [n for n in _imports(PKG / f"{name}.py") if n.startswith("modistill")]
        assert mods == ["modistill.models.errors"], (name, mods)
    assert [n for n in _imports(PKG / "errors.py") if n.startswith("modistill")] == ["modistill.core.errors"]


def test_no_import_cycles_within_models() -> None:
    graph = {p.stem: _internal(p) for p in FILES if p.stem != "__init__"}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for dep in graph.get(node, ()):
            visit(dep, (*path, node))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_models_import_only_core_and_models() -> None:
    for path in FILES:
        bad = [
            n
            for n in _imports(path)
            if n.split(".")[0] == "modistill" and not n.startswith(("modistill.core", "modistill.models"))
        ]
        assert not bad, (path.name, bad)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_bare_builtin_errors_for_user_input(path: Path) -> None:
    """User-side errors are ModistillError subclasses (they keep the builtin type as a second base)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            name = getattr(node.exc.func, "id", None)
            assert name not in ("ValueError", "KeyError", "FileNotFoundError"), (path.name, node.lineno)


def test_error_classes_subclass_modistill_error() -> None:
    classes = [
        obj
        for mod in vars(modistill.models).values()
        if inspect.ismodule(mod) and mod.__name__.startswith("modistill.models.")
        for obj in vars(mod).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__
    ]
    assert classes
    for cls in classes:
        assert issubclass(cls, ModistillError), cls
        assert any(not issubclass(b, ModistillError) for b in cls.__bases__), f"{cls}: keep the builtin base"


def test_unknown_names_are_modistill_key_errors() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'") as info:
        modistill.models.create_model("nope")
    assert isinstance(info.value, ModistillError)
    assert str(info.value).startswith("unknown model 'nope'")  # no KeyError quoting in CLI messages
    with pytest.raises(KeyError, match="unknown fusion 'nope'") as info:
        modistill.models.create_fusion("nope", streams=("a",), num_classes=2, feature_dims={})
    assert isinstance(info.value, ModistillError)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sizes(path: Path) -> None:
    """Files under 400 lines, functions under 80 lines (keeps each piece reviewable)."""
    text = path.read_text()
    assert len(text.splitlines()) < 400
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno - node.lineno + 1 < 80, (path.name, node.name)
