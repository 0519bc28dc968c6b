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

from pathlib import Path

import torch

from trainers.config import FOLDER_PREFIX, DataConfig
from trainers.data.images import all_grayscale, is_image_file
from trainers.data.profiles import FileEntries, carve_val_files
from trainers.data.streaming import file_dataset
from trainers.data.types import ImageView, LTDataset
from trainers.errors import UserInputError

_LAYOUT = "PATH/train/<class>/*.png|jpg|jpeg and PATH/test/<class>/..."


def load_folder(cfg: DataConfig) -> LTDataset:
    path = folder_path(cfg)
    if cfg.image_size is None:
        raise UserInputError("folder data sets need --image-size N (images are resized to N x N)")
    class_names = _class_folders(path / "train")
    train = _scan_split(path / "train", class_names, "train")
    test = _scan_split(path / "test", class_names, "test")
    if (path / "val").is_dir():
        val = _scan_split(path / "val", class_names, "val")
    else:
        train, val = carve_val_files(train, len(class_names), cfg.split_seed)
    channels = 1 if all_grayscale(train[0] + val[0] + test[0]) else 3
    view = ImageView(size=cfg.image_size, resize=cfg.image_size, channels=channels)
    return file_dataset(cfg, (train, val, test), class_names=class_names, view=view, mean_std=None)


def folder_path(cfg: DataConfig) -> Path:
    """The PATH of a folder:PATH data set name, checked to exist with train/ and test/ inside."""
    raw_path = cfg.name.removeprefix(FOLDER_PREFIX)
    if not raw_path:
        raise UserInputError("folder data sets are named folder:PATH; the PATH after 'folder:' is missing")
    path = Path(raw_path).expanduser()
    if not path.is_absolute() and cfg.root is not None:
        path = cfg.root / path
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


def _scan_split(split_dir: Path, class_names: list[str], split: str) -> FileEntries:
    index_of = {name: index for index, name in enumerate(class_names)}
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(child for child in split_dir.iterdir() if child.is_dir()):
        if class_dir.name not in index_of:
            train_dir = split_dir.parent / "train" / class_dir.name
            raise UserInputError(f"{split} class folder '{class_dir}' has no matching train folder "
                                 f"'{train_dir}'; add it or remove this one")
        images = sorted(file for file in class_dir.iterdir() if is_image_file(file))
        if not images:
            raise UserInputError(f"class folder '{class_dir}' has no .png, .jpg or .jpeg images; add some or "
                                 "remove the folder")
        paths += images
        labels += [index_of[class_dir.name]] * len(images)
    return paths, torch.tensor(labels, dtype=torch.int64)

