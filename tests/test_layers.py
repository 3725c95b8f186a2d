"""The layers point one way (DESIGN.md §8): nothing under ``models/`` or ``losses/`` imports ``tools/``,
so a model can be used, tested and exported without the training machinery."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement in ``path`` names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["models", "losses"])
def test_lower_layers_never_import_tools(package):
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "tools")
                 for p in sorted((ROOT / package).rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_an_import_of_tools(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tools.config import ConfigError\n    return ConfigError\n")
    assert "tools.config" in imported_modules(module)
