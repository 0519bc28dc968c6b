"""digits-lt: scikit-learn's bundled 8x8 handwritten digits, made long-tailed; the embedded default data set.

Per class, a seeded permutation gives 50 test images, then 20 validation images (both balanced), and the rest
is the pool; training keeps the first n_c = round(100 * IF^(-c/9)) pool images of class c (default IF 20:
100 .. 5).
Loads in a few milliseconds, needs no files.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.augment import AugmentSpec
from trainers.config import DataConfig
from trainers.data.images import channel_mean_std, resize_split
from trainers.data.types import ImageSplit, LTDataset
from trainers.dataset_facts import VAL_PER_CLASS, data_defaults, digits_train_counts

DIGITS_TEST_PER_CLASS = 50
_GRAY_LEVELS = 16  # load_digits pixels run 0..16


def load_digits_lt(cfg: DataConfig) -> LTDataset:
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes about a second to import

    digits = load_digits()
    images = torch.from_numpy(np.rint(digits.images * (255 / _GRAY_LEVELS)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    num_classes = int(labels.max()) + 1
    train, val, test = digits_split_indices(labels, digits_train_counts(cfg.imbalance_factor), cfg.split_seed)
    size = cfg.image_size or data_defaults(cfg.name).image_size
    splits = [resize_split(ImageSplit(images[index], labels[index]), size) for index in (train, val, test)]
    mean, std = channel_mean_std(splits[0].images)
    return LTDataset(name=cfg.name, train=splits[0], val=splits[1], test=splits[2],
                     class_names=[str(digit) for digit in range(num_classes)], mean=mean, std=std,
                     augment=AugmentSpec.configured(cfg, size))


def digits_split_indices(labels: torch.Tensor, train_counts: list[int],
                         seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sorted (train, val, test) indices: per class a seeded permutation, 50 test, 20 val, then n_c train."""
    generator = torch.Generator().manual_seed(seed)
    parts: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] = ([], [], [])
    for label, n_train in enumerate(train_counts):
        members = torch.nonzero(labels == label).flatten()
        shuffled = members[torch.randperm(len(members), generator=generator)]
        test_end = DIGITS_TEST_PER_CLASS
        val_end = test_end + VAL_PER_CLASS
        parts[0].append(shuffled[val_end:val_end + n_train])
        parts[1].append(shuffled[test_end:val_end])
        parts[2].append(shuffled[:test_end])
    train, val, test = (torch.cat(part).sort().values for part in parts)
    return train, val, test
