"""Long-tailed class-count profiles and balanced validation carving (ALGORITHMS.md, "Data").

The authors' profile: class k keeps n_k = n_max * (1/IF)^(k/(K-1)) images, class 0 the head. WB truncates with
int() (floor), EWB rounds; for CIFAR-100 IF 100 that gives 10,847 (n_max 500, floor) and 10,457 (n_max 480,
round) training images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch

from trainers.errors import UserInputError

Rounding = Literal["floor", "round"]
FileEntries = tuple[list[Path], torch.Tensor]  # image files and their int64 labels

VAL_PER_CLASS = 20  # EWB's balanced validation split: 20 images per class
CARVE_FRACTION = 5  # carving takes at most n_k // 5 images of a class, so small classes keep most of theirs


def lt_counts(n_max: int, imbalance_factor: float, num_classes: int, rounding: Rounding) -> list[int]:
    """Per-class training counts of the exponential long-tailed profile, head first.

    Computed with the authors' float expression so the counts match theirs to the image.
    """
    if num_classes < 2:
        raise UserInputError(f"a long-tailed profile needs at least 2 classes, got {num_classes}")
    to_int = math.floor if rounding == "floor" else round
    counts = [int(to_int(n_max * (1 / imbalance_factor) ** (k / (num_classes - 1))))
              for k in range(num_classes)]
    if counts[-1] < 1:
        # floor() needs n_max / IF >= 1; round() (half to even) needs n_max / IF > 0.5
        limit = f"at most {n_max}" if rounding == "floor" else f"below {2 * n_max}"
        raise UserInputError(f"imbalance factor {imbalance_factor:g} would leave the rarest class with 0 "
                             f"training images (n_max {n_max}); use an imbalance factor {limit}")
    return counts


def carve_balanced_val(labels: torch.Tensor, num_classes: int,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, val): val takes min(20, n_k // 5) random images of each class.

    n_k // 5 < n_k, so every class keeps at least one training image. Both index lists come back sorted,
    so images keep their original order.
    """
    generator = torch.Generator().manual_seed(seed)
    val_parts = []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        take = min(VAL_PER_CLASS, len(members) // CARVE_FRACTION)
        val_parts.append(members[torch.randperm(len(members), generator=generator)[:take]])
    val = torch.cat(val_parts).sort().values
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[val] = True
    return torch.nonzero(~is_val).flatten(), val


def carve_val_files(entries: FileEntries, num_classes: int, seed: int) -> tuple[FileEntries, FileEntries]:
    """`carve_balanced_val` applied to a list of image files: (train entries, val entries)."""
    paths, labels = entries
    train_index, val_index = carve_balanced_val(labels, num_classes, seed)
    return (([paths[i] for i in train_index.tolist()], labels[train_index]),
            ([paths[i] for i in val_index.tolist()], labels[val_index]))
