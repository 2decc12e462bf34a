"""DESIGN.md's import table, enforced: pure layers stay pure, imports go one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "corral"

# package -> corral packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "limits": set(),
    "protocol": {"limits"},
    "consensus": {"limits"},
    "tree": {"protocol", "limits"},
    "storage": {"consensus", "protocol", "limits"},
    "replica": {"consensus", "tree", "protocol", "limits"},
    "client": {"protocol", "limits"},
    "server": {"limits", "protocol", "consensus", "tree", "storage", "replica"},
    "sim": {"limits", "protocol", "consensus", "tree", "storage", "replica", "client"},
    "cli": {
        "limits",
        "protocol",
        "consensus",
        "tree",
        "storage",
        "replica",
        "server",
        "client",
        "sim",
    },
}
PURE = {"protocol", "consensus", "tree", "replica", "sim"}
FORBIDDEN_IN_PURE = {"asyncio", "socket", "uvloop", "selectors", "threading", "time", "subprocess"}


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    package = rel.parts[0].removesuffix(".py") if len(rel.parts) > 0 else ""
    # `python -m corral` is the command line: it belongs with cli.
    return "cli" if package == "__main__" else package


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layer_table(path: Path) -> None:
    package = _package_of(path)
    if package in ("__init__", ""):
        return
    assert package in ALLOWED, f"{package} is not in DESIGN.md's table"
    for module, line in _imports(path):
        top = module.split(".")[0]
        if top == "corral":
            parts = module.split(".")
            if len(parts) == 1:
                continue
            target = parts[1]
            if target == package:
                continue
            allowed = ALLOWED[package]
            # sim may use the sans-IO client session, but not the asyncio client.
            if package == "sim" and target == "client":
                assert module != "corral.client.aio", f"{path}:{line} sim imports client.aio"
            assert target in allowed, f"{path}:{line}: {package} must not import corral.{target}"
        elif package in PURE:
            assert top not in FORBIDDEN_IN_PURE, f"{path}:{line}: pure {package} imports {top}"
        if package == "client" and top == "asyncio":
            assert path.name == "aio.py", f"{path}:{line}: only client/aio.py may import asyncio"


def test_pure_layers_do_not_use_the_global_random() -> None:
    for path in _sources():
        if _package_of(path) not in PURE:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
                and node.attr != "Random"
            ):
                raise AssertionError(f"{path}:{node.lineno}: module-level random.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "random":
                names = {a.name for a in node.names}
                assert names <= {"Random"}, f"{path}:{node.lineno}: from random import {names}"


def test_the_layer_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom corral.storage import wal\n")
    found = {module for module, _ in _imports(bad)}
    assert found == {"asyncio", "corral.storage"}
