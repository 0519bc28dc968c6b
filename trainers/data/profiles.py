"""Balanced validation carving (ALGORITHMS.md, "Data"); the long-tailed profiles are in trainers/dataset_facts.py."""

from __future__ import annotations

from pathlib import Path

import torch

from trainers.dataset_facts import VAL_PER_CLASS

FileEntries = tuple[list[Path], torch.Tensor]  # image files and their int64 labels

CARVE_FRACTION = 5  # carving takes at most n_k // 5 images of a class, so small classes keep most of theirs


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
