"""The one training loop: SGD with momentum, cosine LR, data kept on the device, augmentation as tensor ops.

Stage 1 (WB), the EWB one-stage run and end-to-end classifier re-training all call `fit`; they differ only in
which parameters train, the loss, and what runs after a step or an epoch (MaxNorm).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from trainers.augment import hflip, normalize
from trainers.batches import eval_batches, train_batches
from trainers.data.types import FileSplit, ImageSplit, LTDataset
from trainers.device import Runtime, seeded_generator
from trainers.errors import TrainingDivergedError
from trainers.metrics import per_class_accuracy
from trainers.models import LTModel

# loss(logits, features, labels) -> scalar; features are passed for EWB's feature regularisation.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# on_epoch(stage, epoch, epochs, val_all): progress and pruning; may raise to stop the run. `val_all()` evaluates
# the val split's All accuracy when called: a callback that only checks for a stop request costs no evaluation.
EpochCallback = Callable[[str, int, int, Callable[[], float]], None]
# images -> (features, logits): by default the model's own; data-parallel stage 1 passes its DDP replica.
Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SGDSettings:
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int


def fit(model: LTModel, params: list[nn.Parameter], data: LTDataset, loss_fn: LossFn, sgd: SGDSettings,
        runtime: Runtime, *, seed: int, stage: str, bn_train: bool = True,
        after_step: Callable[[], None] | None = None, after_epoch: Callable[[], None] | None = None,
        on_epoch: EpochCallback | None = None, forward: Forward | None = None) -> None:
    # Coupled SGD weight decay adds lambda*theta to the gradient, exactly the gradient of the papers'
    # lambda * ||theta||^2 / 2 loss term (EWB eq. 4), so one mechanism serves WB and EWB.
    optimizer = torch.optim.SGD(params, lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay)
    # Stepped once at the end of each epoch (the authors step at the start: an off-by-one we do not copy).
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=sgd.epochs, eta_min=0.0)
    generator = seeded_generator(seed, runtime.device)
    if forward is None:
        forward = _features_and_logits(runtime.maybe_compile(model.features), model.classifier)
    for epoch in range(sgd.epochs):
        model.train(bn_train)
        loss_sum = torch.zeros((), device=runtime.device)
        for images, labels in augmented_batches(data, sgd.batch_size, runtime, generator):
            loss_sum += _train_step(forward, optimizer, loss_fn, images, labels, runtime)
            if after_step is not None:
                after_step()
        if after_epoch is not None:
            after_epoch()
        schedule.step()
        _check_finite(loss_sum, stage, epoch)  # one host sync per epoch, none per step
        if on_epoch is not None:
            on_epoch(stage, epoch + 1, sgd.epochs, lambda: evaluate_all(model, data.val, data, runtime))


def _features_and_logits(features_fn: Callable[[torch.Tensor], torch.Tensor], classifier: nn.Linear) -> Forward:
    def forward(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = features_fn(images)
        return features, classifier(features)
    return forward


def _train_step(forward: Forward, optimizer: torch.optim.Optimizer, loss_fn: LossFn, images: torch.Tensor,
                labels: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    with runtime.autocast():
        features, logits = forward(images)
        loss = loss_fn(logits.float(), features.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _check_finite(loss_sum: torch.Tensor, stage: str, epoch: int) -> None:
    if not math.isfinite(loss_sum.item()):
        raise TrainingDivergedError(
            f"{stage}: the loss became NaN/inf in epoch {epoch + 1}; lower the learning rate or the "
            "regularisation weights (weight decay, feature_reg)")


def augmented_batches(data: LTDataset, batch_size: int, runtime: Runtime,
                      generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, augmented and normalised train batches on the device (trainers/batches.py)."""
    for batch, labels in train_batches(data, batch_size, runtime, generator):
        yield normalize(batch, data.mean, data.std, runtime.channels_last), labels


@torch.no_grad()
def predict(model: LTModel, split: ImageSplit | FileSplit, data: LTDataset, runtime: Runtime, *,
            flip: bool = False, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and logits of a split in eval mode (BN running statistics), optionally of flipped images."""
    batches = eval_batches(split, data, runtime, batch_size)
    return predict_batches(model, (hflip(batch) if flip else batch for batch in batches), data, runtime)


@torch.no_grad()
def predict_batches(model: LTModel, batches: Iterable[torch.Tensor], data: LTDataset,
                    runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and logits of uint8 image batches in eval mode."""
    model.eval()
    features, logits = [], []
    for batch in batches:
        with runtime.autocast():
            batch_features = model.features(normalize(batch, data.mean, data.std, runtime.channels_last)).float()
        features.append(batch_features)
        logits.append(model.classifier(batch_features))
    return torch.cat(features), torch.cat(logits)


def evaluate_all(model: LTModel, split: ImageSplit | FileSplit, data: LTDataset, runtime: Runtime) -> float:
    """Per-class-mean accuracy in percent (the papers' "All"), for progress and pruning."""
    _, logits = predict(model, split, data, runtime)
    # nanmean: a class absent from this split (NaN) must not turn the number into NaN.
    return per_class_accuracy(logits, split.labels.to(logits.device), data.num_classes).nanmean().item()
