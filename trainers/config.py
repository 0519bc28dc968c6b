"""Typed configuration of one training run: data, model, stage 1 and the stage-2 variant.

Validated once at the edge (CLI, REST, study spec) and passed down as objects. Field defaults are the
"tailtune default" choices of ALGORITHMS.md; the papers' recipes live in `trainers.presets`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Arch = Literal["auto", "resnet34-cifar", "resnet32-cifar", "resnet50", "resnext50", "small-cnn"]
Method = Literal["wb", "tau-norm", "los", "ewb"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


BUILT_IN_DATASETS = ("digits-lt", "cifar10-lt", "cifar100-lt", "imagenet-lt", "inat2018")
FOLDER_PREFIX = "folder:"
# Upper bounds of the counts a config (and so a study request) may set: a value above them is a mistake, not a
# run (the papers train 200-320 epochs at batch 64-512), and would tie a worker up or exhaust its memory.
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers accept seeds 0 .. 2**32 - 1
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_FEATURE_VIEWS = 64
MAX_LOADER_WORKERS = 256


class DataConfig(_Frozen):
    """Which data set, how long-tailed, and where it lives on disk."""

    name: str = Field("digits-lt", description="digits-lt | cifar10-lt | cifar100-lt | imagenet-lt | "
                      "inat2018 | folder:PATH")
    root: Path | None = Field(None, description="directory holding the data set files")
    imbalance_factor: float | None = Field(
        None, le=1e6, description="n_max / n_min of the long-tailed profile (>= 1); None: the data set's default")
    image_size: int | None = Field(None, ge=4, le=1024, description="side length images are resized to")
    download: bool = Field(False, description="let torchvision download CIFAR when the root lacks it")
    cifar_counts: Literal["ewb", "wb"] = Field(
        "ewb", description="ewb: n_max 480 with round() and a 20-per-class val split; wb: the WB code's floor() counts")
    split_seed: int = Field(0, ge=0, le=MAX_SEED,
                            description="seed of the val/test carving where a data set needs one")
    # Augmentation: None takes the data set's default (the papers' for their data sets, see trainers/data);
    # every result states the values it trained with (ExperimentResult.data).
    flip: bool | None = Field(None, description="random horizontal flip in training; None: on for CIFAR, "
                              "ImageNet-LT and iNaturalist (the papers'), off for digits-lt and folder: sets")
    crop_padding: int | None = Field(None, ge=0, le=64, description="random crop after zero padding by this many "
                                     "pixels (0: none); None: image_size // 8 (CIFAR's 4 at 32), 0 with "
                                     "random_resized_crop")
    random_resized_crop: bool | None = Field(
        None, description="RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) in training; None: on for imagenet-lt "
        "and inat2018 (the papers'), off elsewhere")
    pipeline: Literal["auto", "in-memory", "streaming"] = Field(
        "auto", description="in-memory: decode once into a uint8 tensor; streaming: decode per batch in loader "
        "processes (list and folder data sets); auto: in memory when the decoded splits fit IN_MEMORY_LIMIT")

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in BUILT_IN_DATASETS and not (value.startswith(FOLDER_PREFIX) and len(value) > len(FOLDER_PREFIX)):
            raise ValueError(f"unknown data set {value!r}; choose one of {', '.join(BUILT_IN_DATASETS)} or "
                             f"{FOLDER_PREFIX}PATH")
        return value

    @field_validator("imbalance_factor")
    @classmethod
    def _imbalance_at_least_one(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value < 1):
            raise ValueError(f"imbalance factor must be >= 1 (n_max / n_min), got {value}")
        return value


class ModelConfig(_Frozen):
    arch: Arch = Field("auto", description="auto picks small-cnn for images up to 28 px, resnet34-cifar for CIFAR, "
                       "resnext50 for ImageNet-LT, resnet50 for iNaturalist; for a folder, resnet32-cifar up to "
                       "64 px, resnet50 above")


class Stage1Config(_Frozen):
    """WB stage 1 (CE + weight decay) or, with an ETF classifier and feature regularisation, EWB one-stage."""

    # The authors' lr with enough epochs to converge on the embedded digits-lt (6 steps per epoch): at 30 epochs
    # stage 1 reaches 73.5 % val All, at 100 93.5 % and at 150 93.8 %; an under-trained backbone overstates
    # what stage 2 adds. The presets carry the papers' 200-320 epochs.
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(64, ge=1, le=MAX_BATCH_SIZE)
    weight_decay: float = Field(5e-3, ge=0, description="lambda_1 (WB) or lambda_wd (EWB), on all trained parameters")
    feature_reg: float = Field(0.0, ge=0, description="lambda_fr: weight of mean ||f||^2/2 (EWB)")
    classifier: Literal["linear", "etf"] = "linear"

    _finite_values = field_validator("lr", "weight_decay", "feature_reg")(_finite)


class RetrainConfig(_Frozen):
    """Stage 2: classifier re-training on the frozen stage-1 backbone (WB or LOS)."""

    kind: Literal["retrain"] = "retrain"
    # CB with lambda_2 0.1 by measurement (benchmarks/wb_default_loss.py, seeds 0-2, val All, the choice never
    # looks at test): digits-lt (100 stage-1 epochs) cb 0.1 95.00, the WB code's cb-bce 0.1 94.83, cb at cb-bce's
    # equivalent 0.82 92.83; a generated 16 px folder (--data-sets folder --stage1-epochs 30) 97.67 / 85.67 /
    # 92.50. The WB preset keeps cb-bce (its authors' code).
    loss: Literal["ce", "cb", "cb-bce", "los"] = "cb"
    cb_beta: float = Field(0.9999, gt=0, le=1, description="effective-number beta; 1 = inverse frequency")
    over_smoothing: float = Field(0.98, ge=0, le=1, description="LOS delta: true class gets 1 - delta + delta/K")
    weight_decay: float = Field(0.1, ge=0, description="lambda_2 on the re-trained parameters")
    maxnorm: Literal["none", "relative", "absolute"] = "relative"
    maxnorm_thresh: float = Field(0.1, ge=0, le=1, description="relative radius t: min + t (max - min) of "
                                  "the stage-1 row norms")
    maxnorm_radius: float | None = Field(None, description="absolute radius delta > 0 (maxnorm=absolute)")
    maxnorm_every: Literal["step", "epoch"] = "step"
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(64, ge=1, le=MAX_BATCH_SIZE)
    layers: Literal["classifier", "last-two"] = "classifier"
    bn_mode: Literal["frozen", "train"] = Field(
        "frozen", description="frozen: backbone in eval mode so features can be cached; train: the authors' code")
    feature_views: int = Field(4, ge=1, le=MAX_FEATURE_VIEWS,
                               description="augmented views of the train set cached per backbone")

    @model_validator(mode="after")
    def _radius_given_when_absolute(self) -> RetrainConfig:
        if self.maxnorm == "absolute" and (self.maxnorm_radius is None or not self.maxnorm_radius > 0):
            raise ValueError(f"maxnorm_radius (delta) must be > 0 with maxnorm=absolute, got {self.maxnorm_radius}")
        return self

    @property
    def uses_cached_features(self) -> bool:
        return self.layers == "classifier" and self.bn_mode == "frozen"


class TauNormConfig(_Frozen):
    """Post-hoc W_k <- W_k / ||W_k||^tau on the stage-1 classifier (tau=1: L2-normalisation)."""

    kind: Literal["tau-norm"] = "tau-norm"
    tau: float = Field(1.9, ge=0, le=10)


class LogitAdjustConfig(_Frozen):
    """Post-hoc logit adjustment with class priors pi_k (EWB uses the multiplicative form)."""

    kind: Literal["logit-adjust"] = "logit-adjust"
    tau: float = Field(0.65, ge=0, le=10)
    form: Literal["multiplicative", "additive"] = "multiplicative"


Stage2Config = Annotated[RetrainConfig | TauNormConfig | LogitAdjustConfig, Field(discriminator="kind")]


FeaturePrecision = Literal["float16", "float32"]


class EvalConfig(_Frozen):
    flip_tta: bool = Field(False, description="average logits over the image and its horizontal flip (WB preset)")
    # float16 by measurement (benchmarks/feature_precision.py --seeds 2 --stage1-epochs 30, a streamed generated
    # folder, fp16 and fp32 banks of the same backbones): stage-1 and WB stage-2 val/test accuracy identical in
    # every split and seed (max |difference| 0.00 points), at half the bytes.
    feature_precision: FeaturePrecision = Field(
        "float16", description="dtype of a streamed data set's on-disk feature bank, which stage 2 trains and "
        "evaluates on (in-memory banks are float32 always); float16 takes half the disk and page cache")


# Decoding processes (streamed batches) or threads (reading a data set into memory) when none are named: one per
# core, and no more than 8, which keep a GPU fed at 224 px.
MAX_DECODERS = 8


def default_decoders() -> int:
    return min(MAX_DECODERS, os.cpu_count() or 1)


Device = Literal["auto", "cpu", "cuda"]


class RunOptions(_Frozen):
    """How to run, not what to compute: none of these change the result beyond floating-point noise, except
    `amp`, which stays fp32 (the three papers' precision) until a GPU benchmark shows bf16 gives equal accuracy,
    and `stage1_processes` > 1 (each rank's BatchNorm sees its own share of a batch; shuffles are per rank)."""

    device: Device = "auto"
    channels_last: bool = True
    amp: Literal["off", "auto", "bf16"] = Field("off", description="off: fp32, the authors' precision; "
                                                "auto: bf16 autocast on CUDA only; bf16: always")
    compile: Literal["auto", "off", "on"] = Field("auto", description="auto: torch.compile on CUDA only")
    checkpoint_dir: Path | None = None
    progress: bool = False
    loader_workers: int | None = Field(None, ge=0, le=MAX_LOADER_WORKERS, description="processes decoding streamed "
                                       f"images; None: one per CPU core, at most {MAX_DECODERS}; 0: decode in the "
                                       "training process")
    loader_timeout_s: float = Field(300.0, gt=0, description="a decoding worker silent this long fails the run "
                                    "(a stuck file system) instead of hanging it")
    decode: Literal["auto", "workers", "device"] = Field(
        "auto", description="where streamed JPEGs are decoded: workers (loader processes, on the CPU) or device "
        "(a whole batch at once on the run's device: nvJPEG on CUDA); auto: device on CUDA, workers on the CPU")
    stage1_processes: int = Field(1, ge=1, description="processes training stage 1 data-parallel (DDP), one per "
                                  "GPU on CUDA; 1: in this process")
    data_roots: tuple[Path, ...] | None = Field(None, description="a worker's TAILTUNE_DATA_ROOTS: every data "
                                                "folder and file read must lie under one (trainers/data_paths.py); "
                                                "None: any path")
    tf32: bool = Field(False, description="let CUDA matmuls and cuDNN convolutions use TF32 (10-bit mantissa); off: "
                       "true fp32, the papers' precision, whatever PyTorch's own default (cuDNN's is on)")


class ExperimentConfig(_Frozen):
    method: Method = "wb"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = RetrainConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _stage2_fits_method(self) -> ExperimentConfig:
        expected = {"wb": "retrain", "los": "retrain", "tau-norm": "tau-norm", "ewb": "logit-adjust"}[self.method]
        if self.stage2.kind != expected:
            raise ValueError(f"method {self.method!r} needs a stage2 of kind {expected!r}, got {self.stage2.kind!r}")
        if self.method == "los" and self.stage2.loss != "los":
            raise ValueError("method 'los' re-trains with loss='los'")
        if self.method == "ewb" and self.stage1.classifier != "etf":
            raise ValueError("method 'ewb' trains stage 1 with classifier='etf'")
        return self


def leaf_values(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config dump's leaves by dotted name: `stage2.weight_decay`, `seed`."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves |= leaf_values(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return leaves


def with_fields(base: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
    """A copy of `base` with dotted fields (`stage2.weight_decay`) set, re-validated as a whole."""
    tree = base.model_dump()
    for dotted, value in values.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown config field {dotted!r}")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"unknown config field {dotted!r}; e.g. stage1.weight_decay, stage2.tau")
        node[leaf] = value
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None
