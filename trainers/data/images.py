"""Image file checks, resizing and channel statistics shared by the loaders (files are decoded in
trainers/data/streaming.py, on both the in-memory and the streaming path)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from trainers.data.types import ImageSplit
from trainers.errors import CorruptImageError, UserInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_STATS_CHUNK = 4096  # images per chunk when summing channel statistics, to bound float64 memory


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def all_grayscale(paths: Sequence[Path]) -> bool:
    """Whether every file is a grayscale image; reads headers only."""
    for path in paths:
        with _open(path) as image:
            if image.mode not in GRAYSCALE_MODES:
                return False
    return True


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 N x C x H x W tensor to size x size (antialiased bilinear), still uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def resize_split(split: ImageSplit, size: int) -> ImageSplit:
    return ImageSplit(resize_images(split.images, size), split.labels)


def channel_mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images on the [0, 1] scale."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(_STATS_CHUNK):
        values = chunk.to(torch.float64).div_(255).transpose(0, 1).flatten(1)
        total += values.sum(dim=1)
        squares += values.square().sum(dim=1)
    count = images.numel() // images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise UserInputError(f"image file '{path}' does not exist; fix the list or folder that "
                             "names it") from None
    except UnidentifiedImageError:
        raise CorruptImageError(f"'{path}' is not a readable PNG or JPEG image; remove or replace it") from None
