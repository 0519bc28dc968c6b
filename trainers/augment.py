"""Augmentation as batched tensor ops on the device (airbench's habit): no per-image Python, no PIL.

`random_crop_flip` draws its randomness (`random_offsets`, then `random_flip_mask`) from the generator and
applies it with `crop_at` and `flip_where`, so a test can replay the same draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from trainers.config import DataConfig
from trainers.dataset_facts import resolved_augmentation

# RandomResizedCrop's defaults, which the ImageNet-LT and iNaturalist code of all three papers uses.
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class AugmentSpec:
    """Train-time augmentation as the authors use it: RandomResizedCrop (ImageNet-style), random crop with
    zero padding (CIFAR-style), horizontal flip; applied in that order."""

    crop_padding: int
    horizontal_flip: bool
    random_resized_crop: bool = False

    @classmethod
    def configured(cls, cfg: DataConfig, image_size: int) -> AugmentSpec:
        """The config's explicit choices, else the data set's defaults (trainers/dataset_facts.py)."""
        resolved = resolved_augmentation(cfg, image_size)
        return cls(resolved.crop_padding, resolved.flip, resolved.random_resized_crop)


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


def random_resized_boxes(count: int, height: int, width: int, generator: torch.Generator,
                         device: torch.device) -> torch.Tensor:
    """count x 4 boxes (x1, y1, x2, y2) of RandomResizedCrop: area fraction in RRC_SCALE, log-uniform aspect
    ratio in RRC_RATIO, uniform position. A box that would not fit is clamped to the image instead of
    torchvision's ten redraws (it clamps to the same full-image side torchvision's fallback uses)."""
    draws = torch.rand(count, 4, generator=generator, device=device)
    scale = RRC_SCALE[0] + draws[:, 0] * (RRC_SCALE[1] - RRC_SCALE[0])
    log_low, log_high = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    ratio = torch.exp(log_low + draws[:, 1] * (log_high - log_low))
    area = scale * height * width
    box_width = torch.sqrt(area * ratio).clamp(max=width)
    box_height = torch.sqrt(area / ratio).clamp(max=height)
    x1 = draws[:, 2] * (width - box_width)
    y1 = draws[:, 3] * (height - box_height)
    return torch.stack([x1, y1, x1 + box_width, y1 + box_height], dim=1)


def resized_crop_at(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cuts each box out of its uint8 image and resizes it to size x size in one batched roi_align (bilinear,
    averaging ceil(box / size) samples per output pixel, so a large box is antialiased)."""
    indexed = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], dim=1)
    crops = roi_align(images.float(), indexed, output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                      aligned=True)
    return crops.round().clamp(0, 255).to(torch.uint8)


def augment_batch(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """A data set's train augmentation for a whole uint8 batch on its device: RandomResizedCrop (when the spec
    asks for it), then padded random crop and flip."""
    if spec.random_resized_crop:
        count, _, height, width = images.shape
        boxes = random_resized_boxes(count, height, width, generator, images.device)
        images = resized_crop_at(images, boxes, size=height)
    return random_crop_flip(images, spec.crop_padding, spec.horizontal_flip, generator)


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
