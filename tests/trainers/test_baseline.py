"""The simple baseline: a class-balanced logistic regression on the raw pixels, per split, or why it was skipped."""

from __future__ import annotations

import dataclasses

import torch

from trainers.baseline import MAX_IMAGE_SIZE, MAX_TRAIN_IMAGES, fit_linear_baseline
from trainers.config import DataConfig
from trainers.data import load_dataset
from trainers.data.types import FileSplit, ImageSplit


def test_the_baseline_scores_every_split_of_val_and_test_on_digits_lt() -> None:
    data = load_dataset(DataConfig(name="digits-lt"))
    result = fit_linear_baseline(data)
    assert result.skipped is None and result.val is not None and result.test is not None
    # A linear model on digits is far from chance (10 %) and, balanced, keeps its Few classes well above it.
    assert result.test.all > 80 and result.test.few is not None and result.test.few > 50
    assert result.val.many is not None and result.val.medium is not None
    assert fit_linear_baseline(data).test == result.test  # deterministic: the same splits give the same numbers


def test_class_weights_balance_the_few_classes() -> None:
    """Without class_weight='balanced' the rarest classes lose: the balanced fit must beat an unweighted one on
    Few (the point of calling it a long-tail baseline)."""
    from sklearn.linear_model import LogisticRegression

    data = load_dataset(DataConfig(name="digits-lt", imbalance_factor=100))
    balanced = fit_linear_baseline(data)
    pixels = data.train.images.reshape(len(data.train), -1).float().numpy() / 255
    plain = LogisticRegression(max_iter=500).fit(pixels, data.train.labels.numpy())
    test_pixels = data.test.images.reshape(len(data.test), -1).float().numpy() / 255
    hits = plain.predict(test_pixels) == data.test.labels.numpy()
    rarest = data.test.labels.numpy() == len(data.class_names) - 1
    assert balanced.test is not None and balanced.test.few is not None
    assert balanced.test.few > 100 * hits[rarest].mean()


def test_data_too_large_are_skipped_with_the_reason() -> None:
    data = load_dataset(DataConfig(name="digits-lt"))
    big = torch.zeros(2, 1, MAX_IMAGE_SIZE + 1, MAX_IMAGE_SIZE + 1, dtype=torch.uint8)
    large_images = dataclasses.replace(data, train=ImageSplit(big, torch.tensor([0, 1])))
    assert f"only up to {MAX_IMAGE_SIZE} px" in fit_linear_baseline(large_images).skipped
    many = dataclasses.replace(data, train=ImageSplit(torch.zeros(MAX_TRAIN_IMAGES + 1, 1, 1, 1, dtype=torch.uint8),
                                                      torch.zeros(MAX_TRAIN_IMAGES + 1, dtype=torch.long)))
    assert f"only up to {MAX_TRAIN_IMAGES}" in fit_linear_baseline(many).skipped
    streamed = dataclasses.replace(data, train=FileSplit([], torch.zeros(0, dtype=torch.long)))
    result = fit_linear_baseline(streamed)
    assert "streamed" in result.skipped and result.val is None and result.test is None
