"""What every data set loader returns: per split either uint8 image tensors (in memory) or image files
decoded per batch (streaming), plus per-class train counts and the augmentation it trains with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from trainers.augment import AugmentSpec
from trainers.results import SplitCoverage, SplitRule
from trainers.splits import split_coverage, split_rule


@dataclass(frozen=True)
class ImageSplit:
    images: torch.Tensor  # uint8, N x C x H x W, kept whole so augmentation runs as batched tensor ops
    labels: torch.Tensor  # int64, N

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise TypeError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise TypeError("labels must hold one int per image")

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class FileSplit:
    """Image files decoded per batch (the streaming path)."""

    paths: list[Path]
    labels: torch.Tensor  # int64, N
    roots: tuple[Path, ...] | None = None  # checked again on every read (trainers/data_paths.py); None: any

    def __post_init__(self) -> None:
        if self.labels.shape != (len(self.paths),):
            raise TypeError("labels must hold one int per image file")

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class ImageView:
    """How a file becomes a size x size image for evaluation (and for the in-memory tensor): shorter side
    resized to `resize`, then the centre crop (the ImageNet papers: 256 then 224)."""

    size: int
    resize: int
    channels: int


@dataclass(frozen=True)
class LTDataset:
    name: str
    train: ImageSplit | FileSplit
    val: ImageSplit | FileSplit
    test: ImageSplit | FileSplit
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    augment: AugmentSpec
    view: ImageView | None = None  # set for data sets read from image files
    estimated_decoded_bytes: int | None = None  # of all three splits as uint8 at the view's size
    # The data set's own per-class train counts where val was carved from them (inat2018): Many / Medium / Few
    # are the papers' groups only when counted on these, not on what each class kept.
    full_train_counts: list[int] | None = None

    @property
    def pipeline(self) -> Literal["in-memory", "streaming"]:
        return "streaming" if isinstance(self.train, FileSplit) else "in-memory"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.train.labels, minlength=self.num_classes).tolist()

    def split_rule(self) -> SplitRule:
        return split_rule(self.full_train_counts or self.class_counts, self.name)

    def val_coverage(self) -> SplitCoverage:
        return split_coverage(torch.bincount(self.val.labels, minlength=self.num_classes).tolist(), self.split_rule())

    @property
    def channels(self) -> int:
        return self.view.channels if self.view is not None else self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.view.size if self.view is not None else self.train.images.shape[-1]
