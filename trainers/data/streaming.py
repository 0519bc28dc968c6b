"""Data sets read from image files (list files, folders): decoded once into memory, or per batch (streaming).

Both paths decode with the same functions (`decode_file`, `view_of`), so for the same weights an image gives
the same evaluation feature on either path. The streaming path decodes in DataLoader worker processes:
RandomResizedCrop on the full-resolution image (the papers' ImageNet transform) or the eval view for training,
resize + centre crop for evaluation; flip and padded crop then run on the whole batch on the device.

`pipeline=auto` keeps a data set in memory when its three splits, decoded as uint8 at the view's size, fit in
IN_MEMORY_LIMIT; ImageNet-LT at 224 px (186k images, about 28 GB) streams, a few thousand images stay in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import RandomResizedCrop

from trainers.augment import RRC_RATIO, RRC_SCALE, AugmentSpec, random_resized_boxes
from trainers.config import DataConfig, default_decoders
from trainers.data.profiles import FileEntries
from trainers.data.types import FileSplit, ImageSplit, ImageView, LTDataset
from trainers.data_paths import inside_roots
from trainers.errors import CorruptImageError, UserInputError

# 4 GiB of uint8 pixels: ImageNet-LT at 64 px (1.4 GB) and small folder sets stay in memory; 224-px
# ImageNet-LT (28 GB) and iNaturalist 2018 (66 GB train alone) stream.
IN_MEMORY_LIMIT = 4 * 1024**3
STATS_SAMPLE = 2048  # train images (evenly spaced) that a folder set's mean and std are measured on


class LoaderStalledError(RuntimeError):
    """A DataLoader worker produced no batch within the timeout (stuck file system, deadlocked decoder)."""


def read_encoded(path: Path) -> torch.Tensor:
    """A file's bytes as a uint8 tensor; a missing or unreadable file names itself."""
    try:
        return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    except OSError as error:
        raise UserInputError(f"image file '{path}' cannot be read ({error.strerror}); fix the list or folder "
                             "that names it") from None


def decode_encoded(data: torch.Tensor, path: Path, channels: int) -> torch.Tensor:
    try:
        return decode_image(data, mode=_read_mode(channels))
    except RuntimeError as error:
        # torchvision prefixes its C++ source position: "decode_jpeg, .../decode_jpeg.cpp:171, Image is ..."
        reason = re.sub(r"^.*?\.cpp:\d+, ", "", str(error))
        raise CorruptImageError(f"image file '{path}' is damaged or not a PNG or JPEG ({reason}); replace or "
                                "remove it") from None


def decode_file(path: Path, channels: int) -> torch.Tensor:
    """A PNG or JPEG file as uint8 channels x H x W; a missing or unreadable file names itself."""
    return decode_encoded(read_encoded(path), path, channels)


def _read_mode(channels: int) -> ImageReadMode:
    return ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY


def view_of(image: torch.Tensor, view: ImageView) -> torch.Tensor:
    """Shorter side resized to view.resize (antialiased bilinear), then the view.size centre crop."""
    resized = TF.resize(image, [view.resize], antialias=True)
    return TF.center_crop(resized, [view.size, view.size])


def read_views(paths: Sequence[Path], view: ImageView) -> torch.Tensor:
    """Every file's eval view, stacked into one uint8 N x C x size x size tensor (the in-memory path)."""
    images = torch.empty((len(paths), view.channels, view.size, view.size), dtype=torch.uint8)

    def decode_into(index: int) -> None:
        images[index] = view_of(decode_file(paths[index], view.channels), view)

    # torchvision's decoders and resize release the GIL, so threads overlap the decoding of many files.
    with ThreadPoolExecutor(max_workers=default_decoders()) as pool:
        list(pool.map(decode_into, range(len(paths))))
    return images


def estimated_decoded_bytes(splits: Sequence[FileEntries], view: ImageView) -> int:
    return sum(len(paths) for paths, _ in splits) * view.channels * view.size**2


def file_dataset(cfg: DataConfig, splits: tuple[FileEntries, FileEntries, FileEntries], *, class_names: list[str],
                 roots: Sequence[Path] | None,
                 view: ImageView, mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None) -> LTDataset:
    """The in-memory or streaming LTDataset of three (files, labels) splits, chosen by cfg.pipeline and the
    decoded size; mean_std None: measured on a sample of train images."""
    estimate = estimated_decoded_bytes(splits, view)
    streaming = cfg.pipeline == "streaming" or (cfg.pipeline == "auto" and estimate > IN_MEMORY_LIMIT)
    if streaming:
        # The roots travel with the split: a streamed file is opened again every epoch, and checked each time.
        kept = tuple(roots) if roots is not None else None
        train, val, test = (FileSplit(list(paths), labels, kept) for paths, labels in splits)
    else:
        train, val, test = (ImageSplit(read_views(paths, view), labels) for paths, labels in splits)
    mean, std = mean_std or _sample_mean_std(train, view)
    return LTDataset(name=cfg.name, train=train, val=val, test=test, class_names=class_names, mean=mean, std=std,
                     augment=AugmentSpec.configured(cfg, view.size), view=view, estimated_decoded_bytes=estimate)


def _sample_mean_std(train: ImageSplit | FileSplit,
                     view: ImageView) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from trainers.data.images import channel_mean_std

    picked = torch.linspace(0, len(train) - 1, min(STATS_SAMPLE, len(train))).round().long().unique()
    if isinstance(train, ImageSplit):
        return channel_mean_std(train.images[picked])
    return channel_mean_std(read_views([train.paths[i] for i in picked.tolist()], view))


# ---------------------------------------------------------------------------------------------- per batch
class _ViewFiles(Dataset):
    """Item i: file i decoded to its train crop (RandomResizedCrop) or its eval view, and its label."""

    def __init__(self, split: FileSplit, view: ImageView, random_resized_crop: bool) -> None:
        self.split, self.view = split, view
        self.crop = RandomResizedCrop(view.size, scale=RRC_SCALE, ratio=RRC_RATIO, antialias=True) \
            if random_resized_crop else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = decode_file(inside_roots(self.split.paths[index], self.split.roots), self.view.channels)
        return (self.crop(image) if self.crop else view_of(image, self.view)), self.split.labels[index]


class _EncodedFiles(Dataset):
    """Item i: file i's encoded bytes, its label and its index, for batched decoding on the device."""

    def __init__(self, split: FileSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return read_encoded(inside_roots(self.split.paths[index], self.split.roots)), self.split.labels[index], index


def _as_list(items: list) -> list:
    return items


def file_batches(split: FileSplit, view: ImageView, *, batch_size: int, order: list[int] | None,
                 random_resized_crop: bool, workers: int, timeout_s: float, seed: int,
                 decode_device: torch.device | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 batches of a file split in `order` (None: file order). Without `decode_device` the `workers`
    processes (0: this process) decode and crop, and batches come on the CPU; with it the workers only read
    the files and this process decodes each batch at once on that device (nvJPEG on a GPU), crops there and
    returns the batch there. The RandomResizedCrop draws follow from `seed` either way."""
    on_device = decode_device is not None
    loader = DataLoader(_EncodedFiles(split) if on_device else _ViewFiles(split, view, random_resized_crop),
                        batch_size=batch_size, sampler=order, num_workers=workers,
                        timeout=timeout_s if workers > 0 else 0, collate_fn=_as_list if on_device else None,
                        generator=torch.Generator().manual_seed(seed),
                        pin_memory=torch.cuda.is_available() and not on_device)
    batches = iter(loader)
    crop_generator = torch.Generator().manual_seed(seed)
    try:
        for batch in _unwrapped(batches, timeout_s):
            if decode_device is None:
                yield batch
            else:
                yield _decoded_on(decode_device, batch, split, view, random_resized_crop, crop_generator)
    finally:
        # Dropping the iterator shuts its workers down now, not when a kept traceback lets it go.
        del batches


def _decoded_on(device: torch.device, items: list[tuple[torch.Tensor, torch.Tensor, int]], split: FileSplit,
                view: ImageView, random_resized_crop: bool,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of encoded files decoded together on `device` (JPEGs batched; PNGs one by one on the CPU),
    then cropped image by image there; a file that fails to decode is named."""
    encoded = [data for data, _, _ in items]
    paths = [split.paths[index] for _, _, index in items]
    is_jpeg = [len(data) > 2 and data[0] == 0xFF and data[1] == 0xD8 for data in encoded]
    jpegs = [data for data, jpeg in zip(encoded, is_jpeg, strict=True) if jpeg]
    try:
        decoded_jpegs = iter(decode_jpeg(jpegs, mode=_read_mode(view.channels), device=device) if jpegs else [])
    except RuntimeError:
        for data, path, jpeg in zip(encoded, paths, is_jpeg, strict=True):
            if jpeg:
                decode_encoded(data, path, view.channels)  # raises, naming the file
        raise
    images = [next(decoded_jpegs) if jpeg else decode_encoded(data, path, view.channels).to(device)
              for data, path, jpeg in zip(encoded, paths, is_jpeg, strict=True)]
    crops = [_random_resized_crop(image, view.size, generator) if random_resized_crop else view_of(image, view)
             for image in images]
    return torch.stack(crops), torch.stack([label for _, label, _ in items]).to(device)


def _random_resized_crop(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    _, height, width = image.shape
    x1, y1, x2, y2 = random_resized_boxes(1, height, width, generator, torch.device("cpu"))[0].tolist()
    top, left = round(y1), round(x1)
    return TF.resized_crop(image, top, left, max(1, round(y2) - top), max(1, round(x2) - left), [size, size],
                           antialias=True)


def _unwrapped(batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
               timeout_s: float) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except UserInputError as error:
            # A worker's exception arrives as its own type wrapped around its traceback text, whose last line
            # is the original message naming the file.
            last_line = str(error).strip().splitlines()[-1]
            failure = type(error)(last_line.partition("Error: ")[2] or last_line)
            error.__traceback__ = None
        except RuntimeError as error:
            if "timed out" not in str(error):
                raise
            failure = LoaderStalledError(f"no image batch arrived within {timeout_s:g} s from the DataLoader "
                                         f"workers (is the data set's file system reachable?): {error}")
            error.__traceback__ = None
        else:
            yield batch
            continue
        # Neither the DataLoader's exception (its traceback, dropped above, holds the iterator in a cycle) nor this
        # frame keeps the iterator: it goes with `file_batches`' reference and stops its workers at once. Left to
        # the garbage collector, their shutdown waited 5 s on a join of each worker.
        del batches
        raise failure
