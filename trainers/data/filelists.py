"""imagenet-lt and inat2018 from the standard list files: "relative/path.jpg label" per line, under root.

- imagenet-lt: ImageNet_LT_train.txt, ImageNet_LT_val.txt (20 per class), ImageNet_LT_test.txt (OLTR's lists).
- inat2018: iNaturalist18_train.txt and iNaturalist18_val.txt; the official val list serves as the test set
  and a balanced val split (min(20, n_k // 5) per class, seeded by split_seed) is carved from train.
Images are decoded once (RGB, shorter side resized, centre crop) to image_size, default 64 so the whole train
set fits in memory as uint8 (ImageNet-LT train at 64: about 1.4 GB; iNaturalist 2018 at 64: about 5.4 GB).
Class counts are the lists' own; class k is label k. Normalised with the ImageNet mean and std.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainers.config import DataConfig
from trainers.data.images import crop_padding_for, read_images
from trainers.data.profiles import FileEntries, carve_val_files
from trainers.data.types import AugmentSpec, ImageSplit, LTDataset
from trainers.errors import UserInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LIST_DEFAULT_SIZE = 64

IMAGENET_LT_LISTS = ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt")
INAT2018_LISTS = ("iNaturalist18_train.txt", "iNaturalist18_val.txt")


def load_imagenet_lt(cfg: DataConfig) -> LTDataset:
    root = _list_root(cfg, IMAGENET_LT_LISTS)
    train, val, test = (read_list(root, name) for name in IMAGENET_LT_LISTS)
    return _list_dataset(cfg, train, val, test)


def load_inat2018(cfg: DataConfig) -> LTDataset:
    root = _list_root(cfg, INAT2018_LISTS)
    full_train, test = (read_list(root, name) for name in INAT2018_LISTS)
    train, val = carve_val_files(full_train, int(full_train[1].max()) + 1, cfg.split_seed)
    return _list_dataset(cfg, train, val, test)


def read_list(root: Path, list_name: str) -> FileEntries:
    """Image paths (resolved under root) and int64 labels of one list file."""
    list_path = root / list_name
    paths, labels = [], []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        relative, _, label = line.strip().rpartition(" ")
        if not relative or not label.isdigit():
            raise UserInputError(f"{list_path}:{number}: expected 'relative/path.jpg label', "
                                 f"got {line.strip()!r}")
        paths.append(root / relative)
        labels.append(int(label))
    if not paths:
        raise UserInputError(f"list file '{list_path}' names no images")
    return paths, torch.tensor(labels, dtype=torch.int64)


def _list_root(cfg: DataConfig, list_names: tuple[str, ...]) -> Path:
    if cfg.root is None:
        raise UserInputError(f"{cfg.name} needs --data-root (the folder holding {', '.join(list_names)})")
    for name in list_names:
        if not (cfg.root / name).is_file():
            raise UserInputError(f"dataset root '{cfg.root}' has no {name}; put the list files "
                                 f"({', '.join(list_names)}) there, with image paths relative to that root")
    return cfg.root


def _list_dataset(cfg: DataConfig, train: FileEntries, val: FileEntries, test: FileEntries) -> LTDataset:
    num_classes = int(train[1].max()) + 1
    _check_labels(cfg, num_classes, train[1], val[1], test[1])
    size = cfg.image_size or LIST_DEFAULT_SIZE
    splits = [ImageSplit(read_images(paths, size, channels=3), labels)
              for paths, labels in (train, val, test)]
    return LTDataset(name=cfg.name, train=splits[0], val=splits[1], test=splits[2],
                     class_names=[str(label) for label in range(num_classes)],
                     mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     augment=AugmentSpec(crop_padding=crop_padding_for(size), horizontal_flip=True))


def _check_labels(cfg: DataConfig, num_classes: int, train: torch.Tensor, *others: torch.Tensor) -> None:
    counts = torch.bincount(train, minlength=num_classes)
    if (counts == 0).any():
        empty = int(torch.nonzero(counts == 0)[0])
        raise UserInputError(f"{cfg.name}: class {empty} has no training images in the train list; "
                             "every label below the largest one needs at least one")
    for labels in others:
        if len(labels) and int(labels.max()) >= num_classes:
            raise UserInputError(f"{cfg.name}: label {int(labels.max())} in a val/test list is not a "
                                 f"training class (train labels run 0..{num_classes - 1})")
