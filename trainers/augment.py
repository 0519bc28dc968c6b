"""Augmentation as batched tensor ops on the device (airbench's habit): no per-image Python, no PIL.

`random_crop_flip` draws its randomness (`random_offsets`, then `random_flip_mask`) from the generator and
applies it with `crop_at` and `flip_where`, so a test can replay the same draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_offsets(count: int, padding: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """count x 2 crop offsets (row, column), each uniform in [0, 2 * padding] as in RandomCrop(padding)."""
    return torch.randint(0, 2 * padding + 1, (count, 2), generator=generator, device=device)


def random_flip_mask(count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """count booleans, each True with probability 0.5 (RandomHorizontalFlip's default)."""
    return torch.rand(count, generator=generator, device=device) < 0.5


def crop_at(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pads every image by `padding`, then cuts the H x W window at its own offset, with one gather."""
    _, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, 0, None] + torch.arange(height, device=images.device)  # N x H
    cols = offsets[:, 1, None] + torch.arange(width, device=images.device)  # N x W
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    # Advanced indexing on (N, H+2p, W+2p, C) picks padded[n, rows[n, i], cols[n, j], :] for every n, i, j.
    window = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return window.permute(0, 3, 1, 2)


def flip_where(images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Horizontally flips the images whose `chosen` entry is True, leaves the others as they are."""
    return torch.where(chosen[:, None, None, None], hflip(images), images)


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding) then, when `flip`, RandomHorizontalFlip(0.5), for a whole uint8 N x C x H x W
    batch; `generator` must live on the images' device."""
    count, device = images.shape[0], images.device
    if padding > 0:
        images = crop_at(images, padding, random_offsets(count, padding, generator, device))
    if flip:
        images = flip_where(images, random_flip_mask(count, generator, device))
    return images


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (the last axis); also the second view of flip test-time augmentation."""
    return images.flip(-1)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              channels_last: bool) -> torch.Tensor:
    """uint8 [0, 255] to float32 (x / 255 - mean) / std per channel, mean and std on the [0, 1] scale."""
    mean_255 = torch.tensor(mean, device=images.device).view(1, -1, 1, 1) * 255
    std_255 = torch.tensor(std, device=images.device).view(1, -1, 1, 1) * 255
    normalized = (images.float() - mean_255) / std_255
    return normalized.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
