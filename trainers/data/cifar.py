"""cifar10-lt / cifar100-lt: the authors' long-tailed CIFAR, read from torchvision's pickled "python version".

Class k (original label order, class 0 the head) keeps the FIRST n_k training images of that class in file
order.
- cifar_counts "ewb" (default): n_max = images per class - 20 (480 / 4980), round(); the next 20 images of
  each class form the balanced validation split (CIFAR-100 IF 100: 10,457 training images).
- cifar_counts "wb": n_max = images per class (500 / 5000), floor() (CIFAR-100 IF 100: 10,847); validation
  takes the next up to 20 unused images of each class, so a class that uses all its images (the head) has
  none there. Tuning never sees the test set either way.
n_max comes from the file's images per class, which gives the authors' numbers on the real files and a
proportionally smaller profile on small test fixtures. Test: the whole balanced test file.

The files are pickles, and a pickle may name any function to call; they are read by an unpickler that admits
only what the format holds (dicts, lists, bytes, str, numbers and numpy arrays), so a crafted file under a data
root is refused, naming itself, instead of running code on the worker.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from trainers.augment import AugmentSpec
from trainers.config import DataConfig
from trainers.data.images import resize_split
from trainers.data.types import ImageSplit, LTDataset
from trainers.data_paths import checked_path, inside_roots
from trainers.dataset_facts import CIFAR_DEFAULT_IMBALANCE, VAL_PER_CLASS, cifar_train_counts, data_defaults
from trainers.errors import UserInputError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_SIZE = 32  # the files' images


@dataclass(frozen=True)
class CifarLayout:
    """Where torchvision's CIFAR python version keeps its files and labels."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    archive: str


CIFAR10 = CifarLayout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                      "test_batch", "batches.meta", "labels", "label_names", "cifar-10-python.tar.gz")
CIFAR100 = CifarLayout("CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_labels",
                       "fine_label_names", "cifar-100-python.tar.gz")


def load_cifar_lt(cfg: DataConfig, layout: CifarLayout, roots: Sequence[Path] | None = None) -> LTDataset:
    """With `roots`, the folder and every batch file must lie under one of them (trainers/data_paths.py)."""
    folder = _cifar_folder(cfg, layout, roots)
    train_images, train_labels = _read_batches(folder, layout.train_files, layout.label_key, roots)
    test_images, test_labels = _read_batches(folder, (layout.test_file,), layout.label_key, roots)
    class_names = [_text(name) for name in _unpickle(folder / layout.meta_file, roots)[layout.names_key]]
    train_index, val_index = cifar_lt_indices(train_labels, len(class_names), cfg.imbalance_factor
                                              or CIFAR_DEFAULT_IMBALANCE, cfg.cifar_counts)
    size = cfg.image_size or data_defaults(cfg.name).image_size
    splits = [resize_split(split, size) for split in (
        ImageSplit(train_images[train_index], train_labels[train_index]),
        ImageSplit(train_images[val_index], train_labels[val_index]),
        ImageSplit(test_images, test_labels))]
    return LTDataset(name=cfg.name, train=splits[0], val=splits[1], test=splits[2], class_names=class_names,
                     mean=CIFAR_MEAN, std=CIFAR_STD,
                     augment=AugmentSpec.configured(cfg, size))


def cifar_lt_indices(labels: torch.Tensor, num_classes: int, imbalance_factor: float,
                     counts_kind: Literal["ewb", "wb"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) indices into the training file: per class the first n_k, then the next up to 20."""
    per_class = torch.bincount(labels, minlength=num_classes)
    train_counts = cifar_train_counts(int(per_class.min()), num_classes, imbalance_factor, counts_kind)
    train_parts, val_parts = [], []
    for label, n_train in enumerate(train_counts):
        members = torch.nonzero(labels == label).flatten()  # file order, as the authors take them
        train_parts.append(members[:n_train])
        val_parts.append(members[n_train:n_train + VAL_PER_CLASS])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def _cifar_folder(cfg: DataConfig, layout: CifarLayout, roots: Sequence[Path] | None) -> Path:
    if cfg.root is None:
        raise UserInputError(f"{cfg.name} needs --data-root (the folder that holds {layout.folder}/)")
    folder = inside_roots(checked_path(cfg.root, roots) / layout.folder, roots)
    if not folder.is_dir() and cfg.download:
        _download(cfg.root, layout)
    if not folder.is_dir():
        raise UserInputError(f"dataset root '{cfg.root}' has no {layout.folder}/ folder; put the "
                             f"{layout.title} python version there ({layout.archive} extracted) "
                             "or pass --download")
    return folder


def _download(root: Path, layout: CifarLayout) -> None:
    from torchvision.datasets import CIFAR10 as TorchCifar10
    from torchvision.datasets import CIFAR100 as TorchCifar100

    dataset_class = TorchCifar10 if layout is CIFAR10 else TorchCifar100
    dataset_class(str(root), train=True, download=True)  # fetches, checks the MD5 and extracts both splits


def _read_batches(folder: Path, files: tuple[str, ...], label_key: str,
                  roots: Sequence[Path] | None) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [_unpickle(folder / name, roots) for name in files]
    pixels = np.concatenate([np.asarray(batch["data"], dtype=np.uint8) for batch in batches])
    labels = np.concatenate([np.asarray(batch[label_key], dtype=np.int64) for batch in batches])
    images = torch.from_numpy(pixels.reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE))  # rows are R, G, B planes
    return images, torch.from_numpy(labels)


def _unpickle(path: Path, roots: Sequence[Path] | None) -> dict[str, Any]:
    inside_roots(path, roots)
    if not path.is_file():
        raise UserInputError(f"CIFAR file '{path}' is missing; extract the complete archive "
                             f"into '{path.parent}'")
    with path.open("rb") as file:
        # The files were pickled by Python 2: keys come back as bytes with encoding="bytes".
        try:
            content = _ArraysOnly(file, encoding="bytes").load()
        except pickle.UnpicklingError as error:
            raise UserInputError(f"CIFAR file '{path}' is not a CIFAR batch: {error}; extract the archive from "
                                 "https://www.cs.toronto.edu/~kriz/cifar.html again") from None
    if not isinstance(content, dict):
        raise UserInputError(f"CIFAR file '{path}' holds a {type(content).__name__}, not a CIFAR batch dict")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


class _ArraysOnly(pickle.Unpickler):
    """Admits the globals a CIFAR batch (numpy 1 or 2, pickled by Python 2 or 3) needs to rebuild its arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: protocol-2 bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name
