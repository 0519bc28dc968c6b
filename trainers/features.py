"""Features of a frozen backbone, computed once so every stage-2 trial on it costs seconds, not a training run.

The backbone runs in eval mode (BN running statistics fixed), so a view of an image always gives the same
feature; the train set is cached under a few augmented views to keep the re-training's augmentation. Flipped
val/test images are extracted only for a config that evaluates with flip TTA: on a small data set they are a
fifth of the bank's forward passes.

A bank of a streamed data set (ImageNet-LT, iNaturalist at 224 px: 437k x 2048 is 1.8 GB per view in float16)
is written batch by batch into arrays on disk, float16 or float32 (`eval.feature_precision`; memory-mapped files
under TMPDIR, unlinked at once, so the OS pages them and they vanish with the bank); stage 2 reads it batch by
batch (trainers/heads.py) and `save`/`load` keep it memory-mapped, so it is never held whole in memory. Banks of
in-memory data sets stay float32 on the device.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from trainers.augment import hflip
from trainers.batches import eval_batches, train_batches
from trainers.config import FeaturePrecision
from trainers.data.types import FileSplit, ImageSplit, LTDataset
from trainers.device import Runtime, seeded_generator
from trainers.loop import predict_batches
from trainers.metrics import fisher_discriminant_ratio
from trainers.models import LTModel

_EXTRACT_BATCH = 512  # images per forward pass when extracting features
# Rows of a bank Fisher's discriminant ratio is computed on (evenly spaced): its d x d scatter matrices need
# the rows in float64, 3.5 GB for iNaturalist's 437k train features, 330 MB for 20k.
FDR_ROWS = 20_000


@dataclass(frozen=True)
class FeatureBank:
    train_views: torch.Tensor  # V x N x d, augmented views of the train split
    train_plain: torch.Tensor  # N x d, unaugmented (for diagnostics)
    train_labels: torch.Tensor
    val: torch.Tensor
    val_flipped: torch.Tensor | None  # None unless extracted with flips=True
    val_labels: torch.Tensor
    test: torch.Tensor
    test_flipped: torch.Tensor | None
    test_labels: torch.Tensor
    fdr_train: float
    fdr_test: float
    on_disk: bool = False  # features memory-mapped on the CPU (a streamed data set's bank), else on the device

    def save(self, path: Path) -> None:
        torch.save(asdict(self), path)  # an on-disk bank is copied from its mapping page by page

    @classmethod
    def load(cls, path: Path, device: torch.device) -> FeatureBank:
        """Features memory-mapped (an on-disk bank stays so) or moved to the device; labels on the device."""
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        keep_mapped = stored.get("on_disk", False)
        return cls(**{name: value.to(device) if isinstance(value, torch.Tensor) and
                      (name.endswith("labels") or not keep_mapped) else value for name, value in stored.items()})

    def to(self, device: torch.device) -> FeatureBank:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in asdict(self).items()}
        return FeatureBank(**moved)


def extract_feature_bank(model: LTModel, data: LTDataset, runtime: Runtime, *, views: int, flips: bool,
                         seed: int, precision: FeaturePrecision) -> FeatureBank:
    """`views` augmented train views (0: none, for a head that is evaluated but not re-trained on them);
    `flips`: also the val/test features of horizontally flipped images, for flip TTA; `precision`: the dtype of
    a streamed data set's on-disk bank."""
    generator = seeded_generator(seed, runtime.device)
    on_disk, device = data.pipeline == "streaming", runtime.device
    dtype = getattr(torch, precision) if on_disk else torch.float32

    def features(split: ImageSplit | FileSplit, *, flip: bool = False) -> torch.Tensor:
        batches = eval_batches(split, data, runtime, _EXTRACT_BATCH)
        out = _bank_array((len(split), model.feature_dim), on_disk, device, dtype)
        return _write_features(out, model, (hflip(batch) if flip else batch for batch in batches), data, runtime)

    train_plain = features(data.train)
    train_views = _bank_array((views, len(data.train), model.feature_dim), on_disk, device, dtype)
    for view in range(views):
        augmented = (images for images, _ in train_batches(data, _EXTRACT_BATCH, runtime, generator, shuffle=False))
        _write_features(train_views[view], model, augmented, data, runtime)
    val, test = features(data.val), features(data.test)
    return FeatureBank(
        train_views=train_views, train_plain=train_plain, train_labels=data.train.labels.to(device),
        val=val, val_flipped=features(data.val, flip=True) if flips else None, val_labels=data.val.labels.to(device),
        test=test, test_flipped=features(data.test, flip=True) if flips else None,
        test_labels=data.test.labels.to(device),
        fdr_train=_fisher_ratio(train_plain, data.train.labels), fdr_test=_fisher_ratio(test, data.test.labels),
        on_disk=on_disk)


def _bank_array(shape: tuple[int, ...], on_disk: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """float32 on the device, or `dtype` in a memory-mapped temporary file."""
    if not on_disk:
        return torch.empty(shape, device=device)
    if 0 in shape:
        return torch.empty(shape, dtype=dtype)
    handle, name = tempfile.mkstemp(prefix="tailtune-bank-", suffix=".bank")
    os.close(handle)
    try:
        array = np.memmap(name, dtype=np.float16 if dtype == torch.float16 else np.float32, mode="w+", shape=shape)
    finally:
        os.unlink(name)  # the mapping outlives the name: the space goes back when the bank does
    return torch.from_numpy(array)


def _write_features(out: torch.Tensor, model: LTModel, batches: Iterable[torch.Tensor], data: LTDataset,
                    runtime: Runtime) -> torch.Tensor:
    start = 0
    for batch in batches:
        features, _ = predict_batches(model, [batch], data, runtime)
        out[start:start + len(features)] = features.to(out.device, out.dtype)
        start += len(features)
    return out


def _fisher_ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    rows = torch.linspace(0, len(labels) - 1, min(FDR_ROWS, len(labels))).round().long().unique()
    return fisher_discriminant_ratio(features[rows.to(features.device)].float(), labels[rows.to(labels.device)])
