"""Each paper preset is its authors' code and carries its paper's numbers, pinned against ALGORITHMS.md's tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from trainers.backbone import build_backbone_model, stage1_loss
from trainers.config import ExperimentConfig, RunOptions, with_fields
from trainers.data.cifar import cifar_lt_indices
from trainers.device import resolve_runtime
from trainers.experiment import maxnorm_radius
from trainers.losses import ClassLoss, make_loss
from trainers.presets import FOLDER_STAGE1, PRESETS, method_defaults, paper_comparison, preset_differences
from trainers.provenance import provenance
from trainers.splits import split_rule

# Transcribed from /work/shared/ALGORITHMS.md: WB Table 1 (IF100 "WD tuned" stage 1, "+CB&WD&Max" with
# Many/Med/Few, "+tau-norm"; IF50 / IF10 "WD&Max"), LOS (IF100 / 50 / 10), EWB (IF100).
ALGORITHMS_MD_FIGURES = {
    "wb-cifar100-if100": {"stage1.all": 46.08, "stage2.all": 53.35, "stage2.many": 72.60, "stage2.medium": 51.86,
                          "stage2.few": 32.63},
    "wb-cifar100-if50": {"stage1.all": 52.71, "stage2.all": 57.71},  # WB Table 2, "WD" and "+ WD & Max"
    "wb-cifar100-if10": {"stage1.all": 66.03, "stage2.all": 68.67},
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
    # WB Table 3 ("WD" and "+ WD & Max" rows, Many/Med/Few/All), the LOS paper's table and EWB: ImageNet-LT
    # (ResNeXt-50) and iNaturalist 2018 (ResNet-50).
    "imagenet-lt-resnext50-wb": {"stage1.all": 48.6, "stage1.many": 68.5, "stage1.medium": 42.4, "stage1.few": 14.2,
                                 "stage2.all": 53.9, "stage2.many": 62.5, "stage2.medium": 50.4, "stage2.few": 41.5},
    "imagenet-lt-resnext50-los": {"stage2.all": 54.4, "stage2.many": 63.2, "stage2.medium": 50.7,
                                  "stage2.few": 42.3},
    "imagenet-lt-resnext50-ewb": {"stage2.all": 53.2},
    "inat2018-resnet50-wb": {"stage1.all": 65.4, "stage1.many": 74.5, "stage1.medium": 66.5, "stage1.few": 61.5,
                             "stage2.all": 70.2, "stage2.many": 71.2, "stage2.medium": 70.4, "stage2.few": 69.7},
    "inat2018-resnet50-los": {"stage2.all": 70.8, "stage2.many": 69.2, "stage2.medium": 70.7, "stage2.few": 71.3},
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


def _stage2_loss(name: str) -> ClassLoss:
    """The stage-2 loss a preset's config builds, on the counts its loader takes."""
    config = PRESETS[name].config
    return make_loss(config.stage2.loss, _train_counts(config), config.stage2.cb_beta, config.stage2.over_smoothing)


def _batch(classes: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, classes, generator=generator) * 3, torch.randint(0, classes, (16,), generator=generator)


@pytest.mark.parametrize("name", ["wb-cifar100-if100", "wb-cifar100-if50", "wb-cifar100-if10"])
def test_wb_presets_build_the_wb_codes_bce_on_softmax_cb_loss(name: str) -> None:
    """ALGORITHMS.md's formula, written out: Cui et al.'s weights (beta 0.9999, summing to K) on the preset's
    counts, BCE on the softmax probabilities, mean over B*K entries."""
    counts = torch.tensor(_train_counts(PRESETS[name].config), dtype=torch.float64)
    raw = (1 - 0.9999) / (1 - 0.9999 ** counts)
    weights = raw / raw.sum() * 100
    logits, labels = _batch()
    probs, one_hot = logits.double().softmax(-1), F.one_hot(labels, 100).double()
    bce = -(one_hot * probs.log() + (1 - one_hot) * (1 - probs).log())
    expected = (weights[labels][:, None] * bce).mean()
    assert _stage2_loss(name)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-4)


def test_wb_preset_projects_rows_to_the_relative_radius_of_its_stage1_norms() -> None:
    """t = 0.1: delta = min r_k + 0.1 (max r_k - min r_k) of the stage-1 classifier's row norms."""
    stage1_weight = torch.diag(torch.tensor([1.0, 2.0, 11.0]))
    radius = maxnorm_radius(PRESETS["wb-cifar100-if100"].config.stage2, stage1_weight)
    assert radius == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["los-cifar100-if100", "los-cifar100-if50", "los-cifar100-if10"])
def test_los_presets_build_the_los_codes_label_smoothing_loss(name: str) -> None:
    """LOS code: cross_entropy(..., label_smoothing=0.98), the README's delta."""
    logits, labels = _batch()
    expected = F.cross_entropy(logits, labels, label_smoothing=0.98)
    assert _stage2_loss(name)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ewb_preset_trains_a_fixed_etf_with_feature_regularisation() -> None:
    config = with_fields(PRESETS["ewb-cifar100-if100"].config, {"model.arch": "small-cnn", "data.image_size": 8})
    data = SimpleNamespace(num_classes=100, channels=3, image_size=8, name="cifar100-lt")
    model = build_backbone_model(config, data, resolve_runtime(RunOptions(device="cpu")))
    weight = model.classifier.weight
    cosines = weight @ weight.T
    assert not weight.requires_grad and torch.allclose(weight.norm(dim=1), torch.ones(100), atol=1e-5)
    assert torch.allclose(cosines[~torch.eye(100, dtype=torch.bool)], torch.full((9900,), -1 / 99), atol=1e-5)
    logits, labels = _batch()
    features = torch.randn(16, 512)
    expected = F.cross_entropy(logits, labels) + 1e-2 * features.pow(2).sum(-1).mean() / 2  # lambda_fr 1e-2
    assert stage1_loss(config)(logits, features, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_runs_are_fp32_unless_amp_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The authors trained in fp32 and no GPU benchmark shows bf16 matches it, so even on CUDA the default
    runtime has no autocast."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_runtime(RunOptions()).autocast_dtype is None
    assert resolve_runtime(RunOptions(amp="auto")).autocast_dtype == torch.bfloat16
    assert resolve_runtime(RunOptions(device="cpu", amp="bf16")).autocast_dtype == torch.bfloat16


def test_tf32_is_off_unless_asked_for_and_results_state_it() -> None:
    """PyTorch leaves cuDNN's TF32 on by default; tailtune's fp32 means fp32 in convolutions too."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = True
        default = resolve_runtime(RunOptions(device="cpu"))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        assert provenance(default).tf32 is False
        asked = resolve_runtime(RunOptions(device="cpu", tf32=True))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        assert provenance(asked).tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


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


def test_a_folder_data_set_gets_the_stage1_chosen_on_the_panel_and_digits_lt_keeps_its_own() -> None:
    for method in ("wb", "tau-norm", "los"):
        folder = method_defaults(method, "folder:/data/birds").stage1
        assert (folder.lr, folder.epochs) == (FOLDER_STAGE1["lr"], FOLDER_STAGE1["epochs"]) != (0.01, 100)
        assert method_defaults(method, "digits-lt").stage1 == method_defaults(method).stage1
    assert method_defaults("ewb", "folder:/data/birds") == method_defaults("ewb")
