"""The architecture rule (docs/ARCHITECTURE.md): layers, no cycles, leaf registries, one error base, file sizes,
and one way the CLI reports user errors."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import modistill
from modistill.cli import main
from modistill.core.errors import ModistillError

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "modistill"


def test_import_contracts_hold():
    """`lint-imports` with the contracts in pyproject.toml (layers; no cycles inside any package)."""
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip("import-linter is not installed in this environment (pip install -e '.[dev]')")
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout


def _modistill_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                out.add("." * node.level + (node.module or ""))
            elif node.module and node.module.startswith("modistill"):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("modistill")}
    return out


@pytest.mark.parametrize("registry", sorted(p.relative_to(ROOT).as_posix() for p in PKG.rglob("*registry*.py")))
def test_registries_are_leaves(registry):
    """A registry imports nothing of modistill but `core` and error types: architectures register themselves."""
    bad = {m for m in _modistill_imports(ROOT / registry)
           if not m.startswith(("modistill.core", "..core")) and not m.endswith("errors")}
    assert not bad, f"{registry} imports {sorted(bad)}"


def test_no_file_over_the_size_limit():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in PKG.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 400} == {}


def _all_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(modistill.__path__, "modistill.")]


def test_every_library_error_derives_from_modistill_error():
    internal = {"SampleFailure"}  # control flow inside prepare, never raised to a caller
    offenders = []
    for name in _all_modules():
        mod = importlib.import_module(name)
        for cname, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, Exception) and cname not in internal:
                if not issubclass(cls, ModistillError):
                    offenders.append(f"{name}.{cname}")
    assert offenders == []


def test_cli_formats_user_errors_once_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: fast\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modistill: error: ") and "Traceback" not in err
    assert "train.lr" in err and str(bad) in err and err.count("\n") == 1
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_keeps_the_traceback_of_a_bug(monkeypatch):
    from modistill.commands import models as models_cmd

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(models_cmd, "run", boom)
    with pytest.raises(ZeroDivisionError):
        main(["models"])
