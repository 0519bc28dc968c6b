"""The simple baseline every study is measured against: a class-balanced linear classifier on the raw pixels.

    from trainers.baseline import fit_linear_baseline
    fit_linear_baseline(load_dataset(config.data))   # BaselineResult: val/test per split, or why it was skipped

What a practitioner gets in a minute on a new data set: pixels scaled to [0, 1], standardised per pixel on the
train split, scikit-learn's LogisticRegression with class_weight="balanced" (loss weight n / (K n_k), the
inverse-frequency re-weighting) at its default C = 1, no tuning. Evaluated like every trial: per-class-mean
accuracy on val and test, per Many / Medium / Few split by the same rule (trainers/metrics.py).
On digits-lt (341 train images, 8 x 8, IF 20) it fits in about 0.3 s on one CPU core.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from pydantic import BaseModel, Field

from trainers.data.types import ImageSplit, LTDataset
from trainers.metrics import per_class_accuracy, split_accuracy
from trainers.results import SplitAccuracy

# Where a linear fit on raw pixels stays quick on a CPU (seconds to a minute): at most this many train images,
# each at most this many pixels a side. Beyond, the baseline is skipped with the reason stated.
MAX_TRAIN_IMAGES = 50_000
MAX_IMAGE_SIZE = 64
# lbfgs iterations: standardised pixels converge within a few hundred on the data sets tested; a fit that has
# not converged by then is still a fair "minute of work" baseline.
MAX_ITERATIONS = 500
BASELINE_MODEL = ("LogisticRegression(class_weight='balanced', C=1) on standardised raw pixels "
                  "(scikit-learn)")


class BaselineResult(BaseModel):
    """The baseline's per-split accuracies, or the reason it was not fitted."""

    model: str = BASELINE_MODEL
    val: SplitAccuracy | None = None
    test: SplitAccuracy | None = None
    skipped: str | None = Field(None, description="why no baseline was fitted (data too large, streamed)")
    fit_s: float | None = None


def skip_reason(data: LTDataset) -> str | None:
    """Why the baseline cannot be fitted quickly on these data, or None when it can."""
    if not isinstance(data.train, ImageSplit):
        return "the data set is streamed from files (too large to hold in memory), so no pixel baseline is fitted"
    if len(data.train) > MAX_TRAIN_IMAGES:
        return (f"the train split has {len(data.train)} images; the pixel baseline is fitted only up to "
                f"{MAX_TRAIN_IMAGES}")
    if data.image_size > MAX_IMAGE_SIZE:
        return (f"images are {data.image_size} px; the pixel baseline is fitted only up to {MAX_IMAGE_SIZE} px")
    return None


def fit_linear_baseline(data: LTDataset) -> BaselineResult:
    reason = skip_reason(data)
    if reason is not None:
        return BaselineResult(skipped=reason)
    from sklearn.linear_model import LogisticRegression  # scikit-learn takes a second to import
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    started = time.perf_counter()
    scaler = StandardScaler().fit(_pixels(data.train))
    classifier = LogisticRegression(class_weight="balanced", max_iter=MAX_ITERATIONS)
    # One BLAS thread: on matrices this small, threads spend their time synchronising; on 2 shared cores the
    # 16-px textures panel set fitted in 4.4 s with one thread and in 80 s with the default.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")  # ConvergenceWarning: see MAX_ITERATIONS
        classifier.fit(scaler.transform(_pixels(data.train)), data.train.labels.numpy())
    rule = data.split_rule()

    def evaluate(split: ImageSplit) -> SplitAccuracy:
        predicted = torch.from_numpy(classifier.predict(scaler.transform(_pixels(split)))).long()
        return split_accuracy(per_class_accuracy(predicted, split.labels, data.num_classes), rule)

    val, test = evaluate(data.val), evaluate(data.test)
    return BaselineResult(val=val, test=test, fit_s=round(time.perf_counter() - started, 3))


def _pixels(split: ImageSplit) -> np.ndarray:
    return split.images.reshape(len(split), -1).numpy().astype(np.float32) / 255.0
