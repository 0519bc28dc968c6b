"""The layout's import rules (pyproject.toml, [tool.importlinter]) hold: no module imports from a layer above its
own, inside studies/ or between the packages; no circles; the API starts without torch."""

from __future__ import annotations

import subprocess
import sys

from importlinter.cli import lint_imports


def test_import_contracts_hold() -> None:
    assert lint_imports() == 0, "an import breaks a contract in pyproject.toml: the output above names it"


def test_the_api_process_starts_without_torch() -> None:
    # A fresh interpreter: this one may have imported torch for other tests. The contract above ignores the lazy
    # imports inside the model and report routes; this is what proves them lazy.
    loaded = subprocess.run([sys.executable, "-c", "import service.main, sys; "
                             "print(sorted({'torch', 'torchvision', 'matplotlib'} & set(sys.modules)))"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert loaded == "[]"
