"""End-to-end runs of every method on digits-lt, on the CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.trainers.fake_data import write_fake_inat2018
from trainers.augment import hflip
from trainers.backbone import build_backbone_model
from trainers.config import RunOptions, with_fields
from trainers.data.types import ImageSplit, LTDataset
from trainers.device import resolve_runtime
from trainers.errors import TrainingDivergedError
from trainers.experiment import run_experiment, run_stage2, stage2_output, train_backbone
from trainers.features import extract_feature_bank
from trainers.loop import predict
from trainers.metrics import per_class_accuracy
from trainers.models import LTModel
from trainers.posthoc import etf_classifier_weight, tau_normalize
from trainers.presets import method_defaults

CPU = resolve_runtime(RunOptions(device="cpu"))


def test_wb_stage2_improves_few_split_over_stage1() -> None:
    """The papers' central claim, at the default configuration with a fixed seed."""
    result = run_experiment(method_defaults("wb"), CPU)
    assert result.stage1.test.few is not None and result.stage2.test.few is not None
    assert result.stage2.test.few > result.stage1.test.few
    assert result.stage1.test.all > 50, "stage 1 must learn digits"
    assert result.split_rule.few_classes and result.split_rule.many_classes


@pytest.mark.parametrize("method", ["tau-norm", "los", "ewb"])
def test_every_method_trains_and_reports_all_splits(method: str) -> None:
    config = with_fields(method_defaults(method), {"stage1.epochs": 8})
    result = run_experiment(config, CPU)
    rule = result.split_rule
    for stage in (result.stage1, result.stage2):
        for split, per_class in ((stage.val, stage.per_class_val), (stage.test, stage.per_class_test)):
            # each split's accuracy is the mean of its classes' accuracies
            for value, classes in ((split.all, range(10)), (split.many, rule.many_classes),
                                   (split.medium, rule.medium_classes), (split.few, rule.few_classes)):
                assert classes and value == pytest.approx(sum(per_class[k] for k in classes) / len(classes))
    assert result.stage1.test.all > 30, "8 epochs learn digits well above chance (10 %)"
    assert result.stage2.diagnostics.fdr_test is not None


def test_tau_zero_is_stage1_and_stage2_on_cached_features_is_reproducible() -> None:
    backbone = train_backbone(with_fields(method_defaults("tau-norm"), {"stage1.epochs": 4}), CPU)
    identity = with_fields(method_defaults("tau-norm"), {"stage1.epochs": 4, "stage2.tau": 0.0})
    assert run_stage2(backbone, identity, CPU).per_class_test == backbone.stage1.per_class_test
    wb = with_fields(method_defaults("wb"), {"stage1.epochs": 4})
    assert run_stage2(backbone, wb, CPU).per_class_test == run_stage2(backbone, wb, CPU).per_class_test


def test_flipped_features_are_extracted_only_for_flip_tta_and_are_the_flipped_images() -> None:
    plain = with_fields(method_defaults("wb"), {"stage1.epochs": 2})
    backbone = train_backbone(plain, CPU)
    assert backbone.features.val_flipped is None and backbone.features.test_flipped is None
    with pytest.raises(ValueError, match="flips=True"):
        run_stage2(backbone, with_fields(plain, {"eval.flip_tta": True}), CPU)
    data = backbone.data
    bank = extract_feature_bank(backbone.model, data, CPU, views=0, flips=True, seed=0, precision="float16")
    assert bank.train_views.shape[0] == 0
    flipped_test = ImageSplit(hflip(data.test.images), data.test.labels)
    torch.testing.assert_close(bank.test_flipped, predict(backbone.model, flipped_test, data, CPU)[0])
    torch.testing.assert_close(bank.test, backbone.features.test)


def test_end_to_end_retraining_path_runs_with_bn_in_train_mode() -> None:
    config = with_fields(method_defaults("wb"), {"stage1.epochs": 3, "stage2.bn_mode": "train",
                                                 "stage2.maxnorm_every": "epoch", "stage2.epochs": 2})
    backbone = train_backbone(config, CPU)
    result = run_stage2(backbone, config, CPU)
    radius = min(backbone.stage1.diagnostics.weight_norms) + 0.1 * (
        max(backbone.stage1.diagnostics.weight_norms) - min(backbone.stage1.diagnostics.weight_norms))
    assert max(result.diagnostics.weight_norms) <= radius + 1e-4



def test_retraining_with_bn_in_train_mode_updates_the_running_statistics_it_evaluates_with() -> None:
    """The authors' stage 2 leaves the model in train mode: the frozen backbone's BN statistics move, and the
    result is measured with them (forcing eval mode would leave them at stage 1's)."""
    config = with_fields(method_defaults("wb"), {"stage1.epochs": 2, "stage2.bn_mode": "train", "stage2.epochs": 1})
    backbone = train_backbone(config, CPU)
    stage1_state = {name: tensor.clone() for name, tensor in backbone.model.state_dict().items()}
    output = stage2_output(backbone, config, CPU)
    state = output.classifier.backbone_state
    assert state is not None
    statistics = [name for name in state if name.endswith(("running_mean", "running_var"))]
    assert statistics and all(not torch.equal(state[name], stage1_state[name]) for name in statistics)
    assert all(torch.equal(backbone.model.state_dict()[name], stage1_state[name]) for name in statistics), \
        "the cached stage-1 backbone must stay as it was"
    model = copy.deepcopy(backbone.model)
    model.load_state_dict(state)
    logits = output.classifier.logits(*_test_features(model, backbone.data))
    assert per_class_accuracy(logits, backbone.data.test.labels, 10).tolist() == pytest.approx(
        [value for value in output.result.per_class_test])


def _test_features(model: LTModel, data: LTDataset) -> tuple[torch.Tensor, torch.Tensor | None]:
    bank = extract_feature_bank(model, data, CPU, views=0, flips=False, seed=0, precision="float16")
    return bank.test, None


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror() -> None:
    config = with_fields(method_defaults("tau-norm"), {"stage1.epochs": 20, "eval.flip_tta": True})
    backbone = train_backbone(config, CPU)
    bank, head = backbone.features, backbone.head
    output = stage2_output(backbone, config, CPU)
    weight = tau_normalize(head.weight, config.stage2.tau)
    plain, mirrored = bank.test @ weight.T + head.bias, bank.test_flipped @ weight.T + head.bias
    averaged = per_class_accuracy((plain + mirrored) / 2, bank.test_labels, 10).tolist()
    assert averaged != per_class_accuracy(plain, bank.test_labels, 10).tolist(), "the views must disagree here"
    assert output.result.per_class_test == pytest.approx(averaged)


def test_nan_loss_stops_with_a_message_naming_the_fix() -> None:
    config = with_fields(method_defaults("wb"), {"stage1.epochs": 2, "stage1.lr": 1e12})
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        train_backbone(config, CPU)


def test_ewb_stage1_keeps_the_etf_weight_bit_identical_and_trains_its_bias() -> None:
    config = with_fields(method_defaults("ewb"), {"stage1.epochs": 1})
    backbone = train_backbone(config, CPU)
    torch.manual_seed(config.seed)  # as train_backbone does before building the model
    untrained = build_backbone_model(config, backbone.data, CPU)
    classifier = backbone.model.classifier
    etf = etf_classifier_weight(backbone.data.num_classes, backbone.model.feature_dim, config.seed)
    assert torch.equal(classifier.weight, etf) and torch.equal(untrained.classifier.weight, etf)
    assert not classifier.weight.requires_grad
    assert (classifier.bias - untrained.classifier.bias).abs().min() > 0, "every class's bias must train"
    assert any(not torch.equal(trained, initial) for trained, initial in
               zip(backbone.model.body.parameters(), untrained.body.parameters(), strict=True))


def test_inat2018_groups_classes_by_their_full_train_counts_and_states_what_each_kept(tmp_path: Path) -> None:
    """Carving min(20, n // 5) for val leaves 80, 90, 110 and 24 images; the papers' groups count 100, 110, 130
    and 30, so Many holds the classes of 110 and 130."""
    write_fake_inat2018(tmp_path, train_counts=[100, 110, 130, 30], val_per_class=2)
    config = with_fields(method_defaults("wb"), {"data.name": "inat2018", "data.root": str(tmp_path),
                                                 "data.image_size": 8, "model.arch": "small-cnn",
                                                 "stage1.epochs": 1, "stage2.epochs": 1})
    result = run_experiment(config, CPU)
    assert result.class_counts == [80, 90, 110, 24]
    assert result.split_rule.class_counts == [100, 110, 130, 30]
    rule = result.split_rule
    assert (rule.many_classes, rule.medium_classes, rule.few_classes) == ([1, 2], [0, 3], [])
    assert result.val_coverage.missing_classes == [] and result.val_coverage.many_classes == 2
