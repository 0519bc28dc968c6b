"""What is known about a data set from its config alone, without reading a file (and without torch, so the
service can check a study spec): each data set's default image size, augmentation and model, and the class
counts of the generated long-tailed profiles (ALGORITHMS.md, "Data").

The authors' profile: class k keeps n_k = n_max * (1/IF)^(k/(K-1)) images, class 0 the head. WB truncates with
int() (floor), EWB rounds; for CIFAR-100 IF 100 that gives 10,847 (n_max 500, floor) and 10,457 (n_max 480,
round) training images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from trainers.config import FOLDER_PREFIX, DataConfig
from trainers.errors import UserInputError

Rounding = Literal["floor", "round"]

VAL_PER_CLASS = 20  # EWB's balanced validation split: 20 images per class
DIGITS_N_MAX = 100
DIGITS_DEFAULT_IMBALANCE = 20.0
CIFAR_DEFAULT_IMBALANCE = 100.0
# (classes, training images per class) of torchvision's CIFAR files
_CIFAR_FILES = {"cifar10-lt": (10, 5000), "cifar100-lt": (100, 500)}
_DIGITS_CLASSES = 10


@dataclass(frozen=True)
class DataDefaults:
    """A data set's image size and train-time augmentation where the config leaves them None."""

    image_size: int | None  # None: the config must give one (folder: data sets)
    flip: bool
    random_resized_crop: bool


_DIGITS = DataDefaults(image_size=8, flip=False, random_resized_crop=False)  # a mirrored digit is another or none
_CIFAR = DataDefaults(image_size=32, flip=True, random_resized_crop=False)  # the papers' RandomCrop(32, 4) + flip
_LISTS = DataDefaults(image_size=224, flip=True, random_resized_crop=True)  # the papers' ImageNet transform
# A folder's content is unknown and a mirror can turn one class into another (README, "Augmentation").
_FOLDER = DataDefaults(image_size=None, flip=False, random_resized_crop=False)
_DEFAULTS = {"digits-lt": _DIGITS, "cifar10-lt": _CIFAR, "cifar100-lt": _CIFAR, "imagenet-lt": _LISTS,
             "inat2018": _LISTS}


def data_defaults(name: str) -> DataDefaults:
    return _FOLDER if name.startswith(FOLDER_PREFIX) else _DEFAULTS[name]


def crop_padding_for(size: int) -> int:
    """Random-crop padding scaled with the image: CIFAR's 4 pixels at 32, 1 pixel at 8."""
    return max(1, size // 8)


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation with the data set's defaults resolved (AugmentSpec's fields, without torch)."""

    crop_padding: int
    flip: bool
    random_resized_crop: bool


def resolved_augmentation(cfg: DataConfig, image_size: int | None = None) -> Augmentation:
    """The augmentation a config trains with: its explicit choices, else the data set's defaults; padding
    defaults to image_size // 8, or 0 under RandomResizedCrop (which already moves and scales the image)."""
    defaults = data_defaults(cfg.name)
    size = image_size or cfg.image_size or defaults.image_size
    if size is None:
        raise UserInputError("folder data sets need --image-size N (images are resized to N x N)")
    resized_crop = defaults.random_resized_crop if cfg.random_resized_crop is None else cfg.random_resized_crop
    padding = 0 if resized_crop else crop_padding_for(size)
    return Augmentation(crop_padding=padding if cfg.crop_padding is None else cfg.crop_padding,
                        flip=defaults.flip if cfg.flip is None else cfg.flip, random_resized_crop=resized_crop)


def lt_counts(n_max: int, imbalance_factor: float, num_classes: int, rounding: Rounding) -> list[int]:
    """Per-class training counts of the exponential long-tailed profile, head first.

    Computed with the authors' float expression so the counts match theirs to the image.
    """
    if num_classes < 2:
        raise UserInputError(f"a long-tailed profile needs at least 2 classes, got {num_classes}")
    to_int = math.floor if rounding == "floor" else round
    counts = [int(to_int(n_max * (1 / imbalance_factor) ** (k / (num_classes - 1))))
              for k in range(num_classes)]
    if counts[-1] < 1:
        # floor() needs n_max / IF >= 1; round() (half to even) needs n_max / IF > 0.5
        limit = f"at most {n_max}" if rounding == "floor" else f"below {2 * n_max}"
        raise UserInputError(f"imbalance factor {imbalance_factor:g} would leave the rarest class with 0 "
                             f"training images (n_max {n_max}); use an imbalance factor {limit}")
    return counts


def cifar_train_counts(images_per_class: int, num_classes: int, imbalance_factor: float,
                       counts_kind: Literal["ewb", "wb"]) -> list[int]:
    """EWB: n_max = images per class - 20 with round() (the next 20 form val); WB: n_max = images per class,
    floor()."""
    if counts_kind == "ewb":
        return lt_counts(images_per_class - VAL_PER_CLASS, imbalance_factor, num_classes, "round")
    return lt_counts(images_per_class, imbalance_factor, num_classes, "floor")


def digits_train_counts(imbalance_factor: float | None) -> list[int]:
    return lt_counts(DIGITS_N_MAX, imbalance_factor or DIGITS_DEFAULT_IMBALANCE, _DIGITS_CLASSES, "round")


def generated_counts(cfg: DataConfig) -> tuple[list[int], list[int]] | None:
    """(train, val) per-class counts of a generated profile on the standard files (digits-lt, CIFAR-LT); None
    for data sets whose counts are in their files (lists, folders)."""
    if cfg.name == "digits-lt":
        train = digits_train_counts(cfg.imbalance_factor)
        return train, [VAL_PER_CLASS] * len(train)
    if cfg.name in _CIFAR_FILES:
        classes, per_class = _CIFAR_FILES[cfg.name]
        train = cifar_train_counts(per_class, classes, cfg.imbalance_factor or CIFAR_DEFAULT_IMBALANCE,
                                   cfg.cifar_counts)
        # val: the next up to 20 unused images of each class (none for a WB-counts head class that uses all)
        return train, [min(VAL_PER_CLASS, per_class - n) for n in train]
    return None


# Largest image side small-cnn is picked for under arch=auto (digits are 8x8, MNIST-like sets 28x28).
SMALL_IMAGE_MAX = 28
# Largest side a folder data set gets the CIFAR-size ResNet-32 for (the LOS and EWB papers' network at 32 px);
# above it, the ImageNet-size ResNet-50 (the papers' iNaturalist network).
CIFAR_SIZE_MAX = 64


def resolve_arch(arch: str, dataset_name: str, image_size: int) -> str:
    """`auto` picks what the papers train on each data set, small-cnn for small images, and for a folder data set
    the papers' network for its image size."""
    if arch != "auto":
        return arch
    if image_size <= SMALL_IMAGE_MAX or dataset_name == "digits-lt":
        return "small-cnn"
    if dataset_name.startswith(FOLDER_PREFIX):
        return "resnet32-cifar" if image_size <= CIFAR_SIZE_MAX else "resnet50"
    if dataset_name.startswith("cifar"):
        return "resnet34-cifar"
    if dataset_name == "imagenet-lt":
        return "resnext50"
    if dataset_name == "inat2018":
        return "resnet50"
    return "small-cnn"
