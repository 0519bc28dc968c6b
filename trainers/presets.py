"""Method defaults ("tailtune default" in ALGORITHMS.md) and the papers' recipes ("paper preset").

Each paper preset carries the numbers its paper reports, so a user can compare a run against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogitAdjustConfig,
    Method,
    ModelConfig,
    RetrainConfig,
    Stage1Config,
    TauNormConfig,
)

_CIFAR100_IF100 = DataConfig(name="cifar100-lt", imbalance_factor=100)


def method_defaults(method: Method) -> ExperimentConfig:
    """tailtune defaults: val-split selection, BN frozen in stage 2 (cached features), PGD after every step."""
    if method == "wb":
        return ExperimentConfig(method="wb")
    if method == "tau-norm":
        return ExperimentConfig(method="tau-norm", stage2=TauNormConfig())
    if method == "los":
        return ExperimentConfig(method="los", stage2=_los_retrain())
    return ExperimentConfig(method="ewb", stage1=Stage1Config(weight_decay=5e-3, feature_reg=1e-2,
                                                              classifier="etf"),
                            stage2=LogitAdjustConfig(tau=0.65))


def _los_retrain(**overrides: object) -> RetrainConfig:
    # LOS code: fc only, from the stage-1 classifier, SGD lr 5e-4, WD 0, 20 epochs, no MaxNorm.
    settings = {"loss": "los", "over_smoothing": 0.98, "weight_decay": 0.0, "maxnorm": "none", "lr": 5e-4,
                "epochs": 20}
    return RetrainConfig(**(settings | overrides))


@dataclass(frozen=True)
class Preset:
    config: ExperimentConfig
    paper: str
    reported: dict[str, float] = field(default_factory=dict)  # the paper's test accuracies, percent


PRESETS: dict[str, Preset] = {
    "wb-cifar100-if100": Preset(
        config=ExperimentConfig(
            method="wb", data=_CIFAR100_IF100, model=ModelConfig(arch="resnet34-cifar"),
            stage1=Stage1Config(epochs=320, weight_decay=5e-3),
            stage2=RetrainConfig(loss="cb-bce", weight_decay=0.1, maxnorm="relative", maxnorm_thresh=0.1,
                                 maxnorm_every="epoch", epochs=10, bn_mode="train"),
            eval=EvalConfig(flip_tta=True)),
        paper="Alshammari et al., CVPR 2022, Table 1 (WD&Max, CIFAR100-LT IF100)",
        reported={"stage1.all": 46.08, "stage2.all": 53.35, "stage2.many": 72.60, "stage2.medium": 51.86,
                  "stage2.few": 32.63}),
    "wb-taunorm-cifar100-if100": Preset(
        config=ExperimentConfig(
            method="tau-norm", data=_CIFAR100_IF100, model=ModelConfig(arch="resnet34-cifar"),
            stage1=Stage1Config(epochs=320, weight_decay=5e-3), stage2=TauNormConfig(tau=1.9),
            eval=EvalConfig(flip_tta=True)),
        paper="Alshammari et al., CVPR 2022, Table 1 (WD + tau-norm)",
        reported={"stage1.all": 46.08, "stage2.all": 51.31}),
    "los-cifar100-if100": Preset(
        config=ExperimentConfig(
            method="los", data=_CIFAR100_IF100, model=ModelConfig(arch="resnet34-cifar"),
            stage1=Stage1Config(epochs=200, weight_decay=5e-3), stage2=_los_retrain(bn_mode="train"),
            eval=EvalConfig(flip_tta=True)),
        paper="Sun et al., ICLR 2025 (LOS), CIFAR100-LT IF100",
        reported={"stage2.all": 54.9}),
    "ewb-cifar100-if100": Preset(
        config=ExperimentConfig(
            method="ewb", data=_CIFAR100_IF100, model=ModelConfig(arch="resnet34-cifar"),
            stage1=Stage1Config(epochs=320, weight_decay=5e-3, feature_reg=1e-2, classifier="etf"),
            stage2=LogitAdjustConfig(tau=0.65)),
        paper="Hasegawa & Sato, ICLR 2024, CIFAR100-LT IF100 (WD&FR&ETF + LA)",
        reported={"stage2.all": 53.0}),
}
