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
from trainers.data_paths import checked_path


def check_data_paths(spec: StudySpec, allowed_roots: list[Path]) -> None:
    """Raises a UserInputError for the first path a trial of `spec` could read outside `allowed_roots`: the rule
    the loaders apply again to every folder and file they open (trainers/data_paths.py)."""
    data = spec.base_config().data
    space = spec.resolved_space()
    names = _choices(space.get("data.name")) or [data.name]
    roots = _choices(space.get("data.root")) or [data.root]
    for name in names:
        for root in roots:
            base = checked_path(str(root), allowed_roots) if root is not None else None
            if str(name).startswith(FOLDER_PREFIX):
                checked_path(str(name).removeprefix(FOLDER_PREFIX), allowed_roots, base=base)


def _choices(param: object) -> list:
    return list(param.choices) if isinstance(param, Choices) else []
