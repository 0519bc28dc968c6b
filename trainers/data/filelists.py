"""imagenet-lt and inat2018 from the standard list files: "relative/path.jpg label" per line, under root.

- imagenet-lt: ImageNet_LT_train.txt, ImageNet_LT_val.txt (20 per class), ImageNet_LT_test.txt (OLTR's lists).
- inat2018: iNaturalist18_train.txt and iNaturalist18_val.txt; the official val list serves as the test set
  and a balanced val split (min(20, n_k // 5) per class, seeded by split_seed) is carved from train. Many /
  Medium / Few still count the full train list (the papers' groups: a class of 110 images keeping 90 is Many).
Images are seen as the papers' code sees them: image_size 224 by default, RandomResizedCrop + flip for training,
shorter side resized to 256/224 of image_size then the centre crop for evaluation; decoded once into memory when
the splits fit, else per batch (trainers/data/streaming.py). Class counts are the lists' own; class k is label k;
normalised with the ImageNet mean and std. A list that maps one class folder to two labels (or one label to two
train folders), or names a file outside the root, is refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from trainers.config import DataConfig
from trainers.data.profiles import FileEntries, carve_val_files
from trainers.data.streaming import file_dataset
from trainers.data.types import ImageView, LTDataset
from trainers.data_paths import checked_path, inside_roots
from trainers.dataset_facts import data_defaults
from trainers.errors import UserInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE_RATIO = 256 / 224  # the papers' evaluation: resize to 256, centre crop 224

IMAGENET_LT_LISTS = ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt")
INAT2018_LISTS = ("iNaturalist18_train.txt", "iNaturalist18_val.txt")


def load_imagenet_lt(cfg: DataConfig, roots: Sequence[Path] | None = None) -> LTDataset:
    root = _list_root(cfg, IMAGENET_LT_LISTS, roots)
    train, val, test = (read_list(root, name, roots) for name in IMAGENET_LT_LISTS)
    _check_class_folders(root, IMAGENET_LT_LISTS, train, val, test)
    return _list_dataset(cfg, train, val, test, roots)


def load_inat2018(cfg: DataConfig, roots: Sequence[Path] | None = None) -> LTDataset:
    root = _list_root(cfg, INAT2018_LISTS, roots)
    full_train, test = (read_list(root, name, roots) for name in INAT2018_LISTS)
    _check_class_folders(root, INAT2018_LISTS, full_train, test)
    num_classes = int(full_train[1].max()) + 1
    train, val = carve_val_files(full_train, num_classes, cfg.split_seed)
    data = _list_dataset(cfg, train, val, test, roots)
    return dataclasses.replace(data, full_train_counts=torch.bincount(full_train[1], minlength=num_classes).tolist())


def read_list(root: Path, list_name: str, roots: Sequence[Path] | None = None) -> FileEntries:
    """Image paths (resolved under root) and int64 labels of one list file; with `roots`, the list and every
    image must lie under one of them once symlinks are resolved."""
    list_path = inside_roots(root / list_name, roots)
    paths, labels = [], []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        relative, _, label = line.strip().rpartition(" ")
        if not relative or not label.isdigit():
            raise UserInputError(f"{list_path}:{number}: expected 'relative/path.jpg label', "
                                 f"got {line.strip()!r}")
        if os.path.isabs(relative) or os.path.normpath(relative).split(os.sep)[0] == os.pardir:
            raise UserInputError(f"{list_path}:{number}: {relative!r} is outside the data root '{root}'; "
                                 "list paths must be relative to the folder holding the list files")
        paths.append(inside_roots(root / relative, roots))
        labels.append(int(label))
    if not paths:
        raise UserInputError(f"list file '{list_path}' names no images")
    return paths, torch.tensor(labels, dtype=torch.int64)


def _list_root(cfg: DataConfig, list_names: tuple[str, ...], roots: Sequence[Path] | None) -> Path:
    if cfg.root is None:
        raise UserInputError(f"{cfg.name} needs --data-root (the folder holding {', '.join(list_names)})")
    checked_path(cfg.root, roots)
    for name in list_names:
        if not (cfg.root / name).is_file():
            raise UserInputError(f"dataset root '{cfg.root}' has no {name}; put the list files "
                                 f"({', '.join(list_names)}) there, with image paths relative to that root")
    return cfg.root


def _check_class_folders(root: Path, list_names: tuple[str, ...], train: FileEntries, *others: FileEntries) -> None:
    """The train list's class folders (an image's parent folder) and labels must match one to one, and a val or
    test file in a train class folder must carry that folder's label: a shuffled or mis-merged list fails here
    instead of training on wrong labels. (ImageNet-LT's test images sit in one flat folder, not checked.)"""
    label_of: dict[Path, int] = {}
    folder_of: dict[int, Path] = {}
    for path, label in zip(train[0], train[1].tolist(), strict=True):
        folder = path.parent
        known_label, known_folder = label_of.setdefault(folder, label), folder_of.setdefault(label, folder)
        if known_label != label or known_folder != folder:
            clash = (f"its folder holds label {known_label}" if known_label != label else
                     f"label {label} is already folder '{known_folder.relative_to(root)}'")
            raise UserInputError(f"{root / list_names[0]}: classes out of order: '{path.relative_to(root)}' has "
                                 f"label {label}, but {clash}; every class folder needs one label of its own")
    for list_name, (paths, labels) in zip(list_names[1:], others, strict=True):
        for path, label in zip(paths, labels.tolist(), strict=True):
            if label_of.get(path.parent, label) != label:
                raise UserInputError(f"{root / list_name}: '{path.relative_to(root)}' has label {label}, but its "
                                     f"class folder has label {label_of[path.parent]} in {list_names[0]}")


def _list_dataset(cfg: DataConfig, train: FileEntries, val: FileEntries, test: FileEntries,
                  roots: Sequence[Path] | None) -> LTDataset:
    num_classes = int(train[1].max()) + 1
    _check_labels(cfg, num_classes, train[1], val[1], test[1])
    size = cfg.image_size or data_defaults(cfg.name).image_size
    view = ImageView(size=size, resize=round(size * EVAL_RESIZE_RATIO), channels=3)
    return file_dataset(cfg, (train, val, test), class_names=[str(label) for label in range(num_classes)],
                        roots=roots, view=view, mean_std=(IMAGENET_MEAN, IMAGENET_STD))


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
