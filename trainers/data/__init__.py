"""Long-tailed data sets as whole uint8 tensors: `load_dataset(DataConfig) -> LTDataset`.

Names: digits-lt (embedded, no files), cifar10-lt, cifar100-lt, imagenet-lt, inat2018, folder:PATH.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from trainers.augment import AugmentSpec
from trainers.config import DataConfig
from trainers.data.cifar import CIFAR10, CIFAR100, load_cifar_lt
from trainers.data.digits import load_digits_lt
from trainers.data.filelists import load_imagenet_lt, load_inat2018
from trainers.data.folder import FOLDER_PREFIX, load_folder
from trainers.data.types import ImageSplit, LTDataset
from trainers.dataset_facts import lt_counts
from trainers.errors import UserInputError

__all__ = ["AugmentSpec", "ImageSplit", "LTDataset", "load_dataset", "lt_counts"]

# Each takes the config and the allowed data roots (None: any path), checked on every folder and file it opens.
_LOADERS: dict[str, Callable[[DataConfig, Sequence[Path] | None], LTDataset]] = {
    "digits-lt": lambda cfg, _roots: load_digits_lt(cfg),
    "cifar10-lt": lambda cfg, roots: load_cifar_lt(cfg, CIFAR10, roots),
    "cifar100-lt": lambda cfg, roots: load_cifar_lt(cfg, CIFAR100, roots),
    "imagenet-lt": load_imagenet_lt,
    "inat2018": load_inat2018,
    "folder": load_folder,
}
_GENERATED_PROFILES = {"digits-lt", "cifar10-lt", "cifar100-lt"}  # the only ones an imbalance factor shapes
_ARRAY_DATA_SETS = _GENERATED_PROFILES  # read from arrays, not image files: always in memory


def load_dataset(cfg: DataConfig, roots: Sequence[Path] | None = None) -> LTDataset:
    """Load the configured data set (in memory, or as files decoded per batch) with its configured
    augmentation; UserInputError names what to fix. With `roots` (a worker's TAILTUNE_DATA_ROOTS), every folder
    and file read must lie under one of them (trainers/data_paths.py)."""
    is_folder = cfg.name.startswith(FOLDER_PREFIX)  # DataConfig has already refused unknown names
    if cfg.imbalance_factor is not None and cfg.name not in _GENERATED_PROFILES:
        raise UserInputError(f"{cfg.name} keeps the class counts of its files; drop the imbalance factor "
                             f"(it shapes only {', '.join(sorted(_GENERATED_PROFILES))})")
    if cfg.pipeline == "streaming" and cfg.name in _ARRAY_DATA_SETS:
        raise UserInputError(f"{cfg.name} is read from arrays and always fits in memory; drop "
                             "data.pipeline=streaming (it is for list-file and folder: data sets)")
    return _LOADERS["folder" if is_folder else cfg.name](cfg, roots)

