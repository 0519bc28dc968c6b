"""Image decoding, resizing and channel statistics shared by the loaders.

Files are decoded once into one uint8 N x C x H x W tensor (shorter side resized, then a centre crop), so that
training augments whole batches as tensor ops instead of per-image PIL calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
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


def read_images(paths: Sequence[Path], size: int, channels: int) -> torch.Tensor:
    """Decode files into a uint8 N x channels x size x size tensor (channels 1: grayscale, 3: RGB)."""
    images = torch.empty((len(paths), channels, size, size), dtype=torch.uint8)

    def decode_into(index: int) -> None:
        images[index] = torch.from_numpy(_decode(paths[index], size, channels))

    # PIL releases the GIL while decoding, so threads overlap the decoding of many files.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode_into, range(len(paths))))
    return images


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


def crop_padding_for(size: int) -> int:
    """Random-crop padding scaled with the image: CIFAR's 4 pixels at 32, 1 pixel at 8."""
    return max(1, size // 8)


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise UserInputError(f"image file '{path}' does not exist; fix the list or folder that "
                             "names it") from None
    except UnidentifiedImageError:
        raise CorruptImageError(f"'{path}' is not a readable PNG or JPEG image; remove or replace it") from None


def _decode(path: Path, size: int, channels: int) -> np.ndarray:
    with _open(path) as image:
        image.draft("RGB" if channels == 3 else "L", (size, size))  # JPEG: decode at a reduced scale
        try:
            converted = image.convert("RGB" if channels == 3 else "L")
        except (OSError, SyntaxError, ValueError) as error:  # PIL's "image file is truncated", "broken data stream"
            raise CorruptImageError(f"image file '{path}' is damaged ({error}); replace or remove it") from None
    pixels = np.array(_shorter_side_center_crop(converted, size), dtype=np.uint8)  # a writable copy
    return pixels.reshape(size, size, channels).transpose(2, 0, 1)


def _shorter_side_center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    resized = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return resized.crop((left, top, left + size, top + size))
