"""Augmentation as batched tensor ops on the device (airbench's habit): no per-image Python, no PIL."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_offsets(count: int, padding: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """count x 2 crop offsets (row, column) in [0, 2 * padding]."""
    return torch.randint(0, 2 * padding + 1, (count, 2), generator=generator, device=device)


def crop_at(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pads every image by `padding`, then cuts the H x W window at its own offset, with one gather."""
    _, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, 0, None] + torch.arange(height, device=images.device)  # N x H
    cols = offsets[:, 1, None] + torch.arange(width, device=images.device)  # N x W
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    # Advanced indexing on (N, H+2p, W+2p, C): picks padded[n, rows[n, i], cols[n, j], :].
    window = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return window.permute(0, 3, 1, 2)


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding) then, when `flip`, RandomHorizontalFlip(0.5), for a whole uint8 batch."""
    if padding > 0:
        images = crop_at(images, padding, random_offsets(images.shape[0], padding, generator, images.device))
    if flip:
        chosen = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
        images = torch.where(chosen[:, None, None, None], hflip(images), images)
    return images


def hflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              channels_last: bool) -> torch.Tensor:
    """uint8 [0, 255] to float, minus mean over std per channel (mean/std on the [0, 1] scale)."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1) * 255
    normalized = (images.float() - mean_t) / std_t
    return normalized.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
