"""Each paper preset is its authors' code and carries its paper's numbers, pinned against ALGORITHMS.md's tables."""

from __future__ import annotations

import pytest
import torch

from trainers.config import ExperimentConfig, RetrainConfig, RunOptions, with_fields
from trainers.data.cifar import cifar_lt_indices
from trainers.device import resolve_runtime
from trainers.presets import PRESETS, paper_comparison, preset_differences
from trainers.splits import split_rule

# Transcribed from /work/shared/ALGORITHMS.md: WB Table 1 (IF100 "WD tuned" stage 1, "+CB&WD&Max" with
# Many/Med/Few, "+tau-norm"; IF50 / IF10 "WD&Max"), LOS (IF100 / 50 / 10), EWB (IF100).
ALGORITHMS_MD_FIGURES = {
    "wb-cifar100-if100": {"stage1.all": 46.08, "stage2.all": 53.35, "stage2.many": 72.60, "stage2.medium": 51.86,
                          "stage2.few": 32.63},
    "wb-cifar100-if50": {"stage2.all": 57.71},
    "wb-cifar100-if10": {"stage2.all": 68.67},
    # Not in ALGORITHMS.md: the WB paper's Table 1 ("WD tuned" and "+ tau-norm" rows, Many/Medium/Few/All) and
    # Table 2 (IF 50 / 10 columns of "WD" and "+ tau-norm").
    "wb-taunorm-cifar100-if100": {"stage1.all": 46.08, "stage1.many": 76.94, "stage1.medium": 44.28,
                                  "stage1.few": 12.17, "stage2.all": 51.31, "stage2.many": 73.11,
                                  "stage2.medium": 47.69, "stage2.few": 30.10},
    "wb-taunorm-cifar100-if50": {"stage1.all": 52.71, "stage2.all": 57.65},
    "wb-taunorm-cifar100-if10": {"stage1.all": 66.03, "stage2.all": 67.79},
    "los-cifar100-if100": {"stage2.all": 54.9},
    "los-cifar100-if50": {"stage2.all": 58.8},
    "los-cifar100-if10": {"stage2.all": 69.7},
    "ewb-cifar100-if100": {"stage2.all": 53.0},
    # WB Table 3, the LOS paper and EWB: ImageNet-LT (ResNeXt-50) and iNaturalist 2018 (ResNet-50).
    "imagenet-lt-resnext50-wb": {"stage1.all": 48.6, "stage2.all": 53.9},
    "imagenet-lt-resnext50-los": {"stage2.all": 54.4, "stage2.many": 63.2, "stage2.medium": 50.7,
                                  "stage2.few": 42.3},
    "imagenet-lt-resnext50-ewb": {"stage2.all": 53.2},
    "inat2018-resnet50-wb": {"stage1.all": 65.4, "stage2.all": 70.2},
    "inat2018-resnet50-los": {"stage2.all": 70.8},
    "inat2018-resnet50-ewb": {},
}
# ALGORITHMS.md, "Data": CIFAR-100-LT IF100 training images and Many/Medium/Few classes of each paper's code.
WB_COUNTS_IF100 = (10_847, (35, 35, 30))
EWB_COUNTS_IF100 = 10_457


def test_every_preset_carries_exactly_the_numbers_algorithms_md_reports() -> None:
    assert {name: preset.reported for name, preset in PRESETS.items()} == ALGORITHMS_MD_FIGURES


def _train_counts(config: ExperimentConfig) -> list[int]:
    """Per-class training counts the CIFAR loader takes for this config, on CIFAR-100's 500 images per class."""
    labels = torch.arange(100).repeat(500)  # interleaved, as the real file's labels are mixed
    train, _ = cifar_lt_indices(labels, 100, config.data.imbalance_factor, config.data.cifar_counts)
    return torch.bincount(labels[train], minlength=100).tolist()


@pytest.mark.parametrize("name", ["wb-cifar100-if100", "wb-taunorm-cifar100-if100", "los-cifar100-if100"])
def test_wb_and_los_presets_train_on_the_wb_codes_counts(name: str) -> None:
    counts = _train_counts(PRESETS[name].config)
    rule = split_rule(counts, PRESETS[name].config.data.name)
    assert (sum(counts), (len(rule.many_classes), len(rule.medium_classes), len(rule.few_classes))) == (
        WB_COUNTS_IF100)
    assert (counts[0], counts[-1]) == (500, 5)


@pytest.mark.parametrize(("name", "imbalance"), [("wb-cifar100-if50", 50), ("wb-cifar100-if10", 10),
                                                 ("los-cifar100-if50", 50), ("los-cifar100-if10", 10)])
def test_other_imbalance_presets_keep_the_wb_floor_counts(name: str, imbalance: int) -> None:
    counts = _train_counts(PRESETS[name].config)
    assert (counts[0], counts[-1]) == (500, 500 // imbalance)
    assert counts == [int(500 * (1 / imbalance) ** (k / 99)) for k in range(100)]  # the WB code's int()


def test_ewb_preset_trains_on_the_ewb_codes_counts() -> None:
    counts = _train_counts(PRESETS["ewb-cifar100-if100"].config)
    assert (sum(counts), counts[0], counts[-1]) == (EWB_COUNTS_IF100, 480, 5)


@pytest.mark.parametrize("name", ["wb-cifar100-if100", "wb-cifar100-if50", "wb-cifar100-if10"])
def test_wb_presets_are_the_wb_code(name: str) -> None:
    config = PRESETS[name].config
    assert config.model.arch == "resnet34-cifar" and config.eval.flip_tta
    stage1 = config.stage1
    assert (stage1.epochs, stage1.lr, stage1.momentum, stage1.batch_size, stage1.weight_decay) == (
        320, 0.01, 0.9, 64, 5e-3)
    assert config.stage2 == RetrainConfig(loss="cb-bce", cb_beta=0.9999, weight_decay=0.1, maxnorm="relative",
                                          maxnorm_thresh=0.1, maxnorm_every="epoch", epochs=10, lr=0.01,
                                          momentum=0.9, batch_size=64, layers="classifier", bn_mode="train")


@pytest.mark.parametrize("name", ["los-cifar100-if100", "los-cifar100-if50", "los-cifar100-if10"])
def test_los_presets_are_the_los_code(name: str) -> None:
    config = PRESETS[name].config
    assert config.stage1.epochs == 200 and config.stage1.weight_decay == 5e-3 and config.eval.flip_tta
    stage2 = config.stage2
    assert (stage2.loss, stage2.over_smoothing, stage2.lr, stage2.weight_decay, stage2.epochs, stage2.maxnorm,
            stage2.bn_mode, stage2.batch_size) == ("los", 0.98, 5e-4, 0.0, 20, "none", "train", 64)


def test_ewb_and_tau_norm_presets_are_their_code() -> None:
    ewb = PRESETS["ewb-cifar100-if100"].config
    assert (ewb.stage1.epochs, ewb.stage1.weight_decay, ewb.stage1.feature_reg, ewb.stage1.classifier) == (
        320, 5e-3, 1e-2, "etf")
    assert (ewb.stage2.tau, ewb.stage2.form, ewb.eval.flip_tta) == (0.65, "multiplicative", False)
    tau_norm = PRESETS["wb-taunorm-cifar100-if100"].config
    assert tau_norm.stage2.tau == 1.9 and tau_norm.stage1.weight_decay == 5e-3 and tau_norm.eval.flip_tta


def test_runs_are_fp32_unless_amp_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The authors trained in fp32 and no GPU benchmark shows bf16 matches it, so even on CUDA the default
    runtime has no autocast."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_runtime(RunOptions()).autocast_dtype is None
    assert resolve_runtime(RunOptions(amp="auto")).autocast_dtype == torch.bfloat16
    assert resolve_runtime(RunOptions(device="cpu", amp="bf16")).autocast_dtype == torch.bfloat16


@pytest.mark.parametrize(("prefix", "data_set", "arch", "batch_size"), [
    ("imagenet-lt-resnext50", "imagenet-lt", "resnext50", 64), ("inat2018-resnet50", "inat2018", "resnet50", 512)])
def test_large_presets_train_at_224_px_streamed_with_their_papers_backbone(prefix: str, data_set: str, arch: str,
                                                                          batch_size: int) -> None:
    for method in ("wb", "los", "ewb"):
        config = PRESETS[f"{prefix}-{method}"].config
        assert (config.method, config.data.name, config.model.arch) == (method, data_set, arch)
        assert (config.data.image_size, config.data.pipeline, config.stage1.batch_size) == (224, "streaming",
                                                                                            batch_size)
        # RandomResizedCrop + flip come from the list data sets' defaults (the papers' transform)
        assert (config.data.random_resized_crop, config.data.flip) == (None, None)
    assert PRESETS[f"{prefix}-wb"].config.stage2.loss == "cb-bce"
    assert PRESETS[f"{prefix}-los"].config.stage2.over_smoothing == 0.98
    assert PRESETS[f"{prefix}-ewb"].config.stage1.classifier == "etf"


def test_paper_numbers_are_shown_only_for_the_unmodified_preset() -> None:
    preset = PRESETS["wb-cifar100-if100"].config
    same = with_fields(preset, {"data.root": "/data/cifar", "seed": 3, "data.pipeline": "in-memory"})
    assert "stage2.all 53.35" in paper_comparison("wb-cifar100-if100", same)
    changed = paper_comparison("wb-cifar100-if100", with_fields(preset, {"data.imbalance_factor": 10}))
    assert "53.35" not in changed and "differs from it in data.imbalance_factor" in changed
    assert preset_differences("wb-cifar100-if100", with_fields(preset, {"stage2.loss": "cb"})) == ["stage2.loss"]
