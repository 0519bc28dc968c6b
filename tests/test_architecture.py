"""The layout's import rules (pyproject.toml, [tool.importlinter]) hold: no module imports from a layer above its
own, inside studies/ or between the packages."""

from __future__ import annotations

from importlinter.cli import lint_imports


def test_import_contracts_hold() -> None:
    assert lint_imports() == 0, "an import breaks a contract in pyproject.toml: the output above names it"
