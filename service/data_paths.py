"""Which data a study created over the API may read: only paths under the roots the operator allows.

A request names data by `dataset: folder:PATH`, `data_root`, or the same config fields through `fixed` or a
search space's choices; every combination a trial could resolve to is checked before anything is written.
Errors repeat the path as the request gave it and name the allowed roots, never what lies on the server's disk.
"""

from __future__ import annotations

from pathlib import Path

from studies.definition.space import Choices
from studies.definition.spec import StudySpec
from trainers.config import FOLDER_PREFIX
from trainers.errors import UserInputError


def check_data_paths(spec: StudySpec, allowed_roots: list[Path]) -> None:
    """Raises a UserInputError for the first path a trial of `spec` could read outside `allowed_roots`."""
    data = spec.base_config().data
    space = spec.resolved_space()
    names = _choices(space.get("data.name")) or [data.name]
    roots = _choices(space.get("data.root")) or [data.root]
    for name in names:
        for root in roots:
            for given in _paths_read(str(name), None if root is None else str(root)):
                _check_one(given, allowed_roots)


def _choices(param: object) -> list:
    return list(param.choices) if isinstance(param, Choices) else []


def _paths_read(name: str, root: str | None) -> list[str]:
    """What a worker opens for this data set name and root (trainers/data: a folder path is relative to root)."""
    paths = [root] if root is not None else []
    if name.startswith(FOLDER_PREFIX):
        folder = name.removeprefix(FOLDER_PREFIX)
        paths.append(folder if Path(folder).is_absolute() or root is None else str(Path(root) / folder))
    return paths


def _check_one(given: str, allowed_roots: list[Path]) -> None:
    if not allowed_roots:
        raise UserInputError(f"data path {given!r}: this server lets API requests read no data paths "
                             "(TAILTUNE_DATA_ROOTS is empty); use a built-in data set such as digits-lt, or ask "
                             "the operator to allow a root")
    allowed = ", ".join(str(root) for root in allowed_roots)
    if not Path(given).is_absolute():
        raise UserInputError(f"data path {given!r} is relative; give an absolute path under an allowed data "
                             f"root: {allowed}")
    # resolve(): '..' and symlinks cannot lead out of a root. Nothing is listed or read here.
    resolved = Path(given).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in allowed_roots):
        raise UserInputError(f"data path {given!r} is outside the data roots this server allows: {allowed}")
