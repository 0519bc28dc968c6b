"""The in-memory form every data set loader returns: uint8 image tensors plus per-class train counts."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
class AugmentSpec:
    """Train-time augmentation as the authors use it: random crop with zero padding, optional flip."""

    crop_padding: int
    horizontal_flip: bool


@dataclass(frozen=True)
class LTDataset:
    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    augment: AugmentSpec

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.train.labels, minlength=self.num_classes).tolist()

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]
