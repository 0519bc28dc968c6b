"""Features of a frozen backbone, computed once so every stage-2 trial on it costs seconds, not a training run.

The backbone runs in eval mode (BN running statistics fixed), so a view of an image always gives the same
feature; the train set is cached under a few augmented views to keep the re-training's augmentation. Flipped
val/test images are extracted only for a config that evaluates with flip TTA: on a small data set they are a
fifth of the bank's forward passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from trainers.batches import train_batches
from trainers.data.types import LTDataset
from trainers.device import Runtime, seeded_generator
from trainers.loop import predict, predict_batches
from trainers.metrics import fisher_discriminant_ratio
from trainers.models import LTModel

_EXTRACT_BATCH = 512  # images per forward pass when extracting features


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

    def save(self, path: Path) -> None:
        torch.save(asdict(self), path)

    @classmethod
    def load(cls, path: Path, device: torch.device) -> FeatureBank:
        stored = torch.load(path, map_location=device, weights_only=True)
        return cls(**stored)

    def to(self, device: torch.device) -> FeatureBank:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in asdict(self).items()}
        return FeatureBank(**moved)


def extract_feature_bank(model: LTModel, data: LTDataset, runtime: Runtime, *, views: int, flips: bool,
                         seed: int) -> FeatureBank:
    """`views` augmented train views (0: none, for a head that is evaluated but not re-trained on them);
    `flips`: also the val/test features of horizontally flipped images, for flip TTA."""
    generator = seeded_generator(seed, runtime.device)
    train_plain, _ = predict(model, data.train, data, runtime)
    train_views = [_augmented_features(model, data, runtime, generator) for _ in range(views)]
    val, _ = predict(model, data.val, data, runtime)
    test, _ = predict(model, data.test, data, runtime)
    val_flipped = predict(model, data.val, data, runtime, flip=True)[0] if flips else None
    test_flipped = predict(model, data.test, data, runtime, flip=True)[0] if flips else None
    device = runtime.device
    stacked_views = torch.stack(train_views) if train_views else train_plain.new_empty((0, *train_plain.shape))
    return FeatureBank(
        train_views=stacked_views, train_plain=train_plain, train_labels=data.train.labels.to(device),
        val=val, val_flipped=val_flipped, val_labels=data.val.labels.to(device),
        test=test, test_flipped=test_flipped, test_labels=data.test.labels.to(device),
        fdr_train=fisher_discriminant_ratio(train_plain, data.train.labels),
        fdr_test=fisher_discriminant_ratio(test, data.test.labels))


def _augmented_features(model: LTModel, data: LTDataset, runtime: Runtime,
                        generator: torch.Generator) -> torch.Tensor:
    batches = train_batches(data, _EXTRACT_BATCH, runtime, generator, shuffle=False)
    features, _ = predict_batches(model, (images for images, _ in batches), data, runtime)
    return features
