"""Typed results of a run: per-split accuracies, diagnostics, and the provenance of every number."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field

from trainers.config import ExperimentConfig

# The papers' class splits by train count, and All; every table, CSV column and objective name takes this order.
SplitName = Literal["all", "many", "medium", "few"]
SPLITS: tuple[SplitName, ...] = get_args(SplitName)


class SplitAccuracy(BaseModel):
    """Per-class-mean top-1 accuracy in percent; None where the split has no class."""

    all: float
    many: float | None
    medium: float | None
    few: float | None


class SplitRule(BaseModel):
    """How classes were assigned to Many / Medium / Few from their train counts."""

    many_above: float = Field(description="a class is Many when n_k > many_above")
    few_below: float = Field(description="a class is Few when n_k < few_below; Medium otherwise")
    rule: str = Field(description="'paper' (100 / 20) or 'log-scaled' for small data sets, with the reason")
    many_classes: list[int]
    medium_classes: list[int]
    few_classes: list[int]
    class_counts: list[int] = Field(default_factory=list, description="the train counts the classes were grouped "
                                    "by: the data set's full train counts, before any val split was carved from "
                                    "them (inat2018), so the groups are the papers'")


class SplitCoverage(BaseModel):
    """Which classes an evaluation split has images of: its All / Many / Medium / Few are means over those
    classes only, and a split without any is null."""

    missing_classes: list[int] = Field(description="classes with no image here, left out of every mean")
    all_classes: int = Field(description="classes the All mean is over")
    many_classes: int
    medium_classes: int
    few_classes: int

    def text(self, split: str) -> str:
        missing = (f"no {split} image of class{'es' if len(self.missing_classes) > 1 else ''} "
                   f"{', '.join(map(str, self.missing_classes))}" if self.missing_classes
                   else f"every class has {split} images")
        return (f"{missing}; {split} All / Many / Medium / Few average over {self.all_classes} / "
                f"{self.many_classes} / {self.medium_classes} / {self.few_classes} classes")


class Diagnostics(BaseModel):
    weight_norms: list[float] = Field(description="||W_k||_2 per class, in class-index order")
    fdr_train: float | None = None
    fdr_test: float | None = None
    logits_magnitude: list[float | None] = Field(description="per class, on the test set (LOS)")
    regularized_std: list[float | None] = Field(description="per class, on the test set (LOS)")


class StageResult(BaseModel):
    val: SplitAccuracy
    test: SplitAccuracy
    per_class_val: list[float | None] = Field(description="percent; None for a class absent from the split")
    per_class_test: list[float | None]
    diagnostics: Diagnostics
    wall_time_s: float


class Provenance(BaseModel):
    device: str
    torch_version: str
    cuda_version: str | None
    git_revision: str | None
    tailtune_version: str
    tf32: bool = Field(False, description="CUDA matmuls and cuDNN convolutions allowed TF32 (RunOptions.tf32)")


class DataSummary(BaseModel):
    """What the run trained on, with the data set's defaults resolved: the augmentation it used is stated here
    even where the config left it to the data set (None)."""

    image_size: int
    channels: int
    pipeline: Literal["in-memory", "streaming"]
    estimated_decoded_gb: float | None = Field(description="all splits as uint8 at image_size (image files only); "
                                               "decides the pipeline under pipeline=auto")
    eval_resize: int | None = Field(description="shorter side before the eval centre crop (image files only)")
    flip: bool
    crop_padding: int
    random_resized_crop: bool
    train_images: int
    val_images: int
    test_images: int
    feature_precision: Literal["float16", "float32"] = Field(
        "float32", description="dtype of the feature bank stage 2 trained and evaluated on")


class ExperimentResult(BaseModel):
    config: ExperimentConfig
    data: DataSummary
    class_counts: list[int] = Field(description="train images each class kept (after any val carving)")
    class_names: list[str]
    split_rule: SplitRule
    val_coverage: SplitCoverage
    stage1: StageResult
    stage2: StageResult
    provenance: Provenance
