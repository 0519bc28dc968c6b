"""Batches of a split on the device, from memory or from image files: the one place the two data paths differ.

In memory (airbench's habit) a batch is gathered from the uint8 tensor and augmented on the device. Streamed,
DataLoader workers decode the files (with RandomResizedCrop when the data set uses it); padded crop and flip
then run on the device as for an in-memory batch, drawn from the same generator.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainers.augment import augment_batch, random_crop_flip
from trainers.data.streaming import file_batches
from trainers.data.types import FileSplit, ImageSplit, LTDataset
from trainers.device import Runtime


def train_batches(data: LTDataset, batch_size: int, runtime: Runtime, generator: torch.Generator, *,
                  shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented uint8 train batches and their labels on the device, shuffled by `generator` (or in order)."""
    split, device = data.train, runtime.device
    if isinstance(split, ImageSplit):
        images, labels = split.images.to(device), split.labels.to(device)
        order = torch.randperm(len(labels), device=device, generator=generator) if shuffle else \
            torch.arange(len(labels), device=device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield augment_batch(images[index], data.augment, generator), labels[index]
        return
    order = torch.randperm(len(split), device=device, generator=generator).tolist() if shuffle else None
    loader_seed = int(torch.randint(2**62, (1,), device=device, generator=generator))
    for images, labels in _streamed(split, data, runtime, batch_size, order, data.augment.random_resized_crop,
                                    loader_seed):
        yield random_crop_flip(images, data.augment.crop_padding, data.augment.horizontal_flip, generator), labels


def eval_batches(split: ImageSplit | FileSplit, data: LTDataset, runtime: Runtime,
                 batch_size: int) -> Iterator[torch.Tensor]:
    """The split's unaugmented uint8 images on the device, in order (the eval view for files)."""
    if isinstance(split, ImageSplit):
        for start in range(0, len(split), batch_size):
            yield split.images[start:start + batch_size].to(runtime.device)
        return
    for images, _ in _streamed(split, data, runtime, batch_size, None, random_resized_crop=False, seed=0):
        yield images


def _streamed(split: FileSplit, data: LTDataset, runtime: Runtime, batch_size: int, order: list[int] | None,
              random_resized_crop: bool, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if data.view is None:
        raise TypeError("a data set of image files needs its view (size, resize, channels)")
    for images, labels in file_batches(split, data.view, batch_size=batch_size, order=order,
                                       random_resized_crop=random_resized_crop, workers=runtime.loader_workers,
                                       timeout_s=runtime.loader_timeout_s, seed=seed,
                                       decode_device=runtime.device if runtime.decode_on_device else None):
        yield images.to(runtime.device, non_blocking=True), labels.to(runtime.device, non_blocking=True)
