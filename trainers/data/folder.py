"""folder:PATH: a user's own long-tailed data set laid out as PATH/{train,val,test}/<class>/*.png|jpg|jpeg.

Classes are the sorted train subfolder names (class k is the k-th name) with their counts as they are; test
and val class folders must be a subset of them. Without val/ a balanced val split (min(20, n_k // 5) per
class, seeded by split_seed) is carved from train. Images of any size are resized (shorter side) and
centre-cropped to image_size; one channel if every image is grayscale, else RGB. Mean and std come from
(up to 2048 of) the train images. A relative PATH is taken under --data-root when one is given. Decoded once
into memory when the splits fit, else per batch (trainers/data/streaming.py).

Training flips images only when asked (data.flip=true): a folder may hold characters, digits or other images a
mirror turns into another class or none: on handwritten digits flips cost 5 points (README, "Augmentation").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from trainers.config import FOLDER_PREFIX, DataConfig
from trainers.data.images import all_grayscale, is_image_file
from trainers.data.profiles import FileEntries, carve_val_files
from trainers.data.streaming import file_dataset
from trainers.data.types import ImageView, LTDataset
from trainers.data_paths import checked_path, inside_roots
from trainers.errors import UserInputError

_LAYOUT = "PATH/train/<class>/*.png|jpg|jpeg and PATH/test/<class>/..."


def load_folder(cfg: DataConfig, roots: Sequence[Path] | None = None) -> LTDataset:
    """With `roots`, every folder and image read must lie under one of them once symlinks are resolved."""
    path = folder_path(cfg, roots)
    if cfg.image_size is None:
        raise UserInputError("folder data sets need --image-size N (images are resized to N x N)")
    class_names = _class_folders(path / "train")
    train = _scan_split(path / "train", class_names, "train", roots)
    test = _scan_split(path / "test", class_names, "test", roots)
    if (path / "val").is_dir():
        val = _scan_split(path / "val", class_names, "val", roots)
    else:
        train, val = carve_val_files(train, len(class_names), cfg.split_seed)
    channels = 1 if all_grayscale(train[0] + val[0] + test[0]) else 3
    view = ImageView(size=cfg.image_size, resize=cfg.image_size, channels=channels)
    return file_dataset(cfg, (train, val, test), class_names=class_names, roots=roots, view=view, mean_std=None)


def folder_path(cfg: DataConfig, roots: Sequence[Path] | None = None) -> Path:
    """The PATH of a folder:PATH data set name (under --data-root when relative), checked by the data path rule
    (trainers/data_paths.py) and to exist with train/ and test/ inside."""
    raw_path = cfg.name.removeprefix(FOLDER_PREFIX)
    if not raw_path:
        raise UserInputError("folder data sets are named folder:PATH; the PATH after 'folder:' is missing")
    base = checked_path(cfg.root, roots) if cfg.root is not None else None
    path = checked_path(raw_path, roots, base=base)
    for split in ("train", "val", "test"):
        inside_roots(path / split, roots)
    if not path.is_dir():
        raise UserInputError(f"folder data set path '{path}' does not exist; lay it out as {_LAYOUT}")
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise UserInputError(f"folder data set '{path}' has no {split}/ folder; lay it out as {_LAYOUT}")
    return path


def _class_folders(split_dir: Path) -> list[str]:
    names = sorted(child.name for child in split_dir.iterdir() if child.is_dir())
    if len(names) < 2:
        raise UserInputError(f"'{split_dir}' needs one subfolder per class (at least 2), found {len(names)}")
    return names


def _scan_split(split_dir: Path, class_names: list[str], split: str, roots: Sequence[Path] | None) -> FileEntries:
    index_of = {name: index for index, name in enumerate(class_names)}
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(child for child in split_dir.iterdir() if child.is_dir()):
        inside_roots(class_dir, roots)
        if class_dir.name not in index_of:
            train_dir = split_dir.parent / "train" / class_dir.name
            raise UserInputError(f"{split} class folder '{class_dir}' has no matching train folder "
                                 f"'{train_dir}'; add it or remove this one")
        images = sorted(inside_roots(file, roots) for file in class_dir.iterdir() if is_image_file(file))
        if not images:
            raise UserInputError(f"class folder '{class_dir}' has no .png, .jpg or .jpeg images; add some or "
                                 "remove the folder")
        paths += images
        labels += [index_of[class_dir.name]] * len(images)
    return paths, torch.tensor(labels, dtype=torch.int64)

