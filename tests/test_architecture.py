"""The layout's import rules (pyproject.toml, [tool.importlinter]) hold: no module imports from a layer above its
own, inside studies/ or between the packages; no circles; the API starts without torch; only studies/store
touches the database."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa


def test_import_contracts_hold() -> None:
    # In a process of its own: import-linter configures logging with dictConfig, which disables every logger
    # that exists already (the cache's warnings then vanish from later tests' caplog).
    linted = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=Path(__file__).parent.parent,
                            capture_output=True, text=True, timeout=300)
    assert linted.returncode == 0, f"an import breaks a contract in pyproject.toml:\n{linted.stdout}"


def test_the_api_process_starts_without_torch() -> None:
    # A fresh interpreter: this one may have imported torch for other tests. The contract above ignores the lazy
    # imports inside the model and report routes; this is what proves them lazy.
    loaded = subprocess.run([sys.executable, "-c", "import service.main, sys; "
                             "print(sorted({'torch', 'torchvision', 'matplotlib'} & set(sys.modules)))"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert loaded == "[]"


# ---------------------------------------------------------------------------------------------- the store
ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "studies" / "store"
# What only the store may touch: a connection (the engines), a statement's execution, a table's columns.
STORE_ATTRIBUTES = {"engine", "side_engine", "execute", "exec_driver_sql", "c"}


def test_only_the_store_touches_the_database() -> None:
    """studies/store owns every table and SQL statement: elsewhere SQLAlchemy is imported for its exceptions at
    most, and no code opens a connection, runs a statement or names a table's columns."""
    outside = [path for package in ("studies", "service", "tailtune") for path in (ROOT / package).rglob("*.py")
               if not path.is_relative_to(STORE)]
    found = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in outside for line, what in _database_uses(path)]
    assert not found, "outside studies/store, move these into a typed function of the store:\n" + "\n".join(found)


def _database_uses(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            yield from ((node.lineno, f"imports the table {name}") for name in _store_tables(node))
        elif isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES:
            yield node.lineno, f"uses .{node.attr}"
            continue
        else:
            continue
        yield from ((node.lineno, f"imports {module}") for module in modules
                    if module.split(".")[0] == "sqlalchemy" and module != "sqlalchemy.exc")


def _store_tables(node: ast.ImportFrom) -> list[str]:
    if not node.module.startswith("studies.store"):
        return []
    module = importlib.import_module(node.module)
    return [alias.name for alias in node.names if isinstance(getattr(module, alias.name, None), sa.Table)]
