"""One rule for every data path a study names (`data.root`, `folder:PATH`) and every folder or file a loader
opens under it: no `~`, no environment variables, no `..`; made absolute; and, when allowed roots are given
(TAILTUNE_DATA_ROOTS, on the API and on each worker), its real path (symlinks resolved) lies under one of them.

The API applies it when a study is created; the loaders apply it again to each directory and file they open, so
a folder swapped for a symlink after creation, or a symlink inside a root that leads out of it, fails the trial.
Errors name the path as it was given, never what it resolves to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from trainers.errors import UserInputError


class DataPathError(UserInputError):
    """A data path the rule refuses."""


def checked_path(given: str | Path, roots: Sequence[Path] | None, *, base: Path | None = None) -> Path:
    """`given` (relative to `base` when it is relative and `base` is given), absolute and, with `roots`, inside
    one of them once symlinks are resolved. The path returned is the one given, made absolute: a loader keeps
    reading through it, and checks what it opens below it with `inside_roots`."""
    text = str(given)
    parts = Path(text).parts
    if any(part.startswith("~") for part in parts):
        raise _refused(text, "'~' is not expanded; give the full path", roots)
    if "$" in text or "%" in text:
        raise _refused(text, "environment variables are not expanded; give the full path", roots)
    if os.pardir in parts and (roots is not None or base is not None):
        raise _refused(text, "'..' is not allowed; give the path under its root directly", roots)
    path = Path(text)
    if not path.is_absolute():
        if base is None and roots is not None:
            raise _refused(text, "it is relative; give an absolute path under an allowed data root", roots)
        path = (base if base is not None else Path.cwd()) / path
    inside_roots(path, roots, shown=text)
    return path


def inside_roots(path: Path, roots: Sequence[Path] | None, *, shown: str | None = None) -> Path:
    """`path` when its real path lies under one of `roots` (always, when `roots` is None); the error names it as
    `shown` (default: `path`), never its resolved target."""
    if roots is None:
        return path
    if not roots:
        raise DataPathError(f"data path {shown or str(path)!r}: this server reads no data paths "
                            "(TAILTUNE_DATA_ROOTS is empty); use a built-in data set such as digits-lt, or ask "
                            "the operator to allow a root")
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        raise DataPathError(f"data path {shown or str(path)!r} is outside the data roots allowed here "
                            f"({_listed(roots)}), or leads out of them through a symlink")
    return path


def _refused(text: str, why: str, roots: Sequence[Path] | None) -> DataPathError:
    allowed = f" (allowed data roots: {_listed(roots)})" if roots else ""
    return DataPathError(f"data path {text!r}: {why}{allowed}")


def _listed(roots: Sequence[Path]) -> str:
    return ", ".join(str(root) for root in roots)
