"""One configuration, start to finish: train the backbone (stage 1), then stage 2, then report per split.

    tailtune train --dataset digits-lt --method wb

`train_backbone` and `run_stage2` are separate so a study can train a backbone once, cache it, and run many
stage-2 trials on it (studies/artifacts/cache.py).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.backbone import build_backbone_model, stage1_loss
from trainers.classifier import EvaluatedClassifier, evaluated_classifier
from trainers.config import ExperimentConfig, LogitAdjustConfig, RetrainConfig, TauNormConfig
from trainers.data import load_dataset
from trainers.data.types import LTDataset
from trainers.device import Runtime
from trainers.distributed import agreed_state, train_stage1_ranks
from trainers.features import FeatureBank, extract_feature_bank
from trainers.heads import Head, train_heads
from trainers.loop import EpochCallback, SGDSettings, fit
from trainers.losses import make_loss
from trainers.maxnorm import project_rows_, relative_radius, row_norms
from trainers.metrics import logits_magnitude_and_rsd, per_class_accuracy, split_accuracy
from trainers.models import LTModel
from trainers.posthoc import tau_normalize
from trainers.provenance import provenance
from trainers.results import DataSummary, Diagnostics, ExperimentResult, SplitRule, StageResult


@dataclass
class Backbone:
    """A trained stage-1 model with everything stage 2 needs: its data, split rule and cached features."""

    model: LTModel
    data: LTDataset
    rule: SplitRule
    features: FeatureBank
    stage1: StageResult

    @property
    def head(self) -> Head:
        return Head(self.model.classifier.weight.detach(), self.model.classifier.bias.detach())


@dataclass(frozen=True)
class Stage2Output:
    """A stage-2 result and the classifier it was measured with (stored per trial, exported as its model)."""

    result: StageResult
    classifier: EvaluatedClassifier


def run_experiment(config: ExperimentConfig, runtime: Runtime, on_epoch: EpochCallback | None = None,
                   checkpoint_dir: Path | None = None) -> ExperimentResult:
    backbone = train_backbone(config, runtime, on_epoch)
    stage2 = run_stage2(backbone, config, runtime, on_epoch)
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        torch.save(backbone.model.state_dict(), checkpoint_dir / "stage1.pt")
        (checkpoint_dir / "config.json").write_text(config.model_dump_json(indent=2))
    data = backbone.data
    return ExperimentResult(config=config, data=data_summary(data, config), class_counts=data.class_counts,
                            class_names=data.class_names, split_rule=backbone.rule,
                            val_coverage=backbone.data.val_coverage(),
                            stage1=backbone.stage1, stage2=stage2, provenance=provenance(runtime))


def data_summary(data: LTDataset, config: ExperimentConfig) -> DataSummary:
    estimate = data.estimated_decoded_bytes
    return DataSummary(image_size=data.image_size, channels=data.channels, pipeline=data.pipeline,
                       estimated_decoded_gb=round(estimate / 1e9, 3) if estimate is not None else None,
                       eval_resize=data.view.resize if data.view else None, flip=data.augment.horizontal_flip,
                       crop_padding=data.augment.crop_padding, random_resized_crop=data.augment.random_resized_crop,
                       train_images=len(data.train), val_images=len(data.val), test_images=len(data.test),
                       feature_precision=config.eval.feature_precision if data.pipeline == "streaming" else "float32")


def feature_views(config: ExperimentConfig) -> int:
    """Augmented train views in the backbone's feature bank: a re-trained head's own setting. τ-norm reads none
    but takes the default, so it shares WB's and LOS's backbone (one cache entry) at the cost of a few forward
    passes; EWB's stage 1 is its own anyway."""
    if isinstance(config.stage2, RetrainConfig):
        return config.stage2.feature_views
    return RetrainConfig.model_fields["feature_views"].default if isinstance(config.stage2, TauNormConfig) else 1


# ---------------------------------------------------------------------------------------------- stage 1
def train_backbone(config: ExperimentConfig, runtime: Runtime,
                   on_epoch: EpochCallback | None = None) -> Backbone:
    started = time.perf_counter()
    data = load_dataset(config.data, runtime.data_roots)
    torch.manual_seed(config.seed)
    model = build_backbone_model(config, data, runtime)
    stage1 = config.stage1
    if runtime.stage1_processes > 1:
        # Trained by DDP processes (trainers/distributed.py); this process goes on from their common weights.
        # The ranks report no epochs, so `on_epoch` (progress, pruning, stop requests) is not called.
        model.load_state_dict(agreed_state(train_stage1_ranks(config, data, runtime)))
    else:
        trained = [p for p in model.parameters() if p.requires_grad]
        fit(model, trained, data, stage1_loss(config), SGDSettings(stage1.epochs, stage1.lr, stage1.momentum,
                                                                   stage1.weight_decay, stage1.batch_size),
            runtime, seed=config.seed, stage="stage 1", on_epoch=on_epoch)
    bank = extract_feature_bank(model, data, runtime, views=feature_views(config), flips=config.eval.flip_tta,
                                seed=config.seed, precision=config.eval.feature_precision)
    rule = data.split_rule()
    head = Head(model.classifier.weight.detach(), model.classifier.bias.detach())
    result = evaluate_head(bank, head, rule, config, elapsed=time.perf_counter() - started)
    return Backbone(model=model, data=data, rule=rule, features=bank, stage1=result)


# ---------------------------------------------------------------------------------------------- stage 2
def run_stage2(backbone: Backbone, config: ExperimentConfig, runtime: Runtime,
               on_epoch: EpochCallback | None = None) -> StageResult:
    return stage2_output(backbone, config, runtime, on_epoch).result


def stage2_output(backbone: Backbone, config: ExperimentConfig, runtime: Runtime,
                  on_epoch: EpochCallback | None = None) -> Stage2Output:
    started = time.perf_counter()
    stage2 = config.stage2
    if isinstance(stage2, TauNormConfig):
        head = backbone.head
        return _evaluated(backbone.features, Head(tau_normalize(head.weight, stage2.tau), head.bias),
                          backbone.rule, config, started)
    if isinstance(stage2, LogitAdjustConfig):
        return _evaluated(backbone.features, backbone.head, backbone.rule, config, started, adjust=stage2)
    if stage2.uses_cached_features:
        [head] = train_heads(backbone.features, backbone.head, [stage2], backbone.data.class_counts,
                             seed=config.seed)
        return _evaluated(backbone.features, head, backbone.rule, config, started)
    return _retrain_end_to_end(backbone, stage2, config, runtime, on_epoch, started)


def runs_on_cached_features(config: ExperimentConfig) -> bool:
    """Whether stage 2 only reads the backbone's cached features (then it costs milliseconds per config)."""
    stage2 = config.stage2
    return isinstance(stage2, TauNormConfig | LogitAdjustConfig) or stage2.uses_cached_features


def stage2_outputs(backbone: Backbone, configs: list[ExperimentConfig], runtime: Runtime) -> list[Stage2Output]:
    """Stage 2 of several configs on one backbone; heads re-trained on cached features train in one batched
    pass (trainers/heads.py), with the results each would get alone. Order is kept."""
    if len({config.seed for config in configs}) > 1:
        raise ValueError("configs sharing a backbone share its seed")
    started = time.perf_counter()
    batched = [i for i, c in enumerate(configs) if isinstance(c.stage2, RetrainConfig) and runs_on_cached_features(c)]
    outputs: dict[int, Stage2Output] = {}
    if batched:
        heads = train_heads(backbone.features, backbone.head, [configs[i].stage2 for i in batched],
                            backbone.data.class_counts, seed=configs[batched[0]].seed)
        share = (time.perf_counter() - started) / len(batched)  # the pass's time, split evenly
        for i, head in zip(batched, heads, strict=True):
            head_started = time.perf_counter()
            output = _evaluated(backbone.features, head, backbone.rule, configs[i], head_started)
            result = output.result.model_copy(update={"wall_time_s": share + output.result.wall_time_s})
            outputs[i] = Stage2Output(result, output.classifier)
    for i, config in enumerate(configs):
        if i not in outputs:
            outputs[i] = stage2_output(backbone, config, runtime)
    return [outputs[i] for i in range(len(configs))]


def _retrain_end_to_end(backbone: Backbone, stage2: RetrainConfig, config: ExperimentConfig, runtime: Runtime,
                        on_epoch: EpochCallback | None, started: float) -> Stage2Output:
    """The authors' way: BN statistics keep updating and/or the last block trains, so no cached features."""
    model = copy.deepcopy(backbone.model)
    model.requires_grad_(False)
    trained = [model.classifier.weight, model.classifier.bias]
    if stage2.layers == "last-two":
        trained += list(model.last_block_parameters())
    for param in trained:
        param.requires_grad_(True)
    weight = model.classifier.weight
    radius = maxnorm_radius(stage2, backbone.head.weight)
    project = (lambda: project_rows_(weight.data, radius)) if radius is not None else None
    class_loss = make_loss(stage2.loss, backbone.data.class_counts, stage2.cb_beta, stage2.over_smoothing)
    fit(model, trained, backbone.data, lambda logits, _features, labels: class_loss(logits, labels),
        SGDSettings(stage2.epochs, stage2.lr, stage2.momentum, stage2.weight_decay, stage2.batch_size), runtime,
        seed=config.seed + 1, stage="stage 2", bn_train=stage2.bn_mode == "train",
        after_step=project if stage2.maxnorm_every == "step" else None,
        after_epoch=project if stage2.maxnorm_every == "epoch" else None, on_epoch=on_epoch)
    bank = extract_feature_bank(model, backbone.data, runtime, views=0, flips=config.eval.flip_tta,
                                seed=config.seed, precision=config.eval.feature_precision)
    head = Head(model.classifier.weight.detach(), model.classifier.bias.detach())
    backbone_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return _evaluated(bank, head, backbone.rule, config, started, backbone_state=backbone_state)


def maxnorm_radius(stage2: RetrainConfig, stage1_weight: torch.Tensor) -> float | None:
    if stage2.maxnorm == "relative":
        return float(relative_radius(row_norms(stage1_weight), stage2.maxnorm_thresh))
    return stage2.maxnorm_radius if stage2.maxnorm == "absolute" else None


# ---------------------------------------------------------------------------------------------- evaluation
def _evaluated(bank: FeatureBank, head: Head, rule: SplitRule, config: ExperimentConfig, started: float, *,
               adjust: LogitAdjustConfig | None = None,
               backbone_state: dict[str, torch.Tensor] | None = None) -> Stage2Output:
    classifier = _classifier(bank, head, config, adjust, backbone_state)
    return Stage2Output(evaluate_classifier(bank, classifier, rule, elapsed=time.perf_counter() - started),
                        classifier)


def _classifier(bank: FeatureBank, head: Head, config: ExperimentConfig, adjust: LogitAdjustConfig | None,
                backbone_state: dict[str, torch.Tensor] | None = None) -> EvaluatedClassifier:
    # The class prior pi_k = n_k / sum_j n_j of the train split, for logit adjustment.
    prior = torch.bincount(bank.train_labels, minlength=head.weight.shape[0]).float()
    return evaluated_classifier(head, prior / prior.sum(), flip_tta=config.eval.flip_tta, adjust=adjust,
                                backbone_state=backbone_state)


def evaluate_head(bank: FeatureBank, head: Head, rule: SplitRule, config: ExperimentConfig, *, elapsed: float,
                  adjust: LogitAdjustConfig | None = None) -> StageResult:
    return evaluate_classifier(bank, _classifier(bank, head, config, adjust), rule, elapsed=elapsed)


def evaluate_classifier(bank: FeatureBank, classifier: EvaluatedClassifier, rule: SplitRule, *,
                        elapsed: float) -> StageResult:
    head = classifier.head
    num_classes = head.weight.shape[0]
    val_logits = classifier.logits(bank.val, bank.val_flipped)
    test_logits = classifier.logits(bank.test, bank.test_flipped)
    per_class_val = per_class_accuracy(val_logits, bank.val_labels, num_classes)
    per_class_test = per_class_accuracy(test_logits, bank.test_labels, num_classes)
    magnitude, rsd = logits_magnitude_and_rsd(test_logits, bank.test_labels, num_classes)
    diagnostics = Diagnostics(weight_norms=row_norms(head.weight).tolist(), fdr_train=bank.fdr_train,
                              fdr_test=bank.fdr_test, logits_magnitude=_finite_or_none(magnitude),
                              regularized_std=_finite_or_none(rsd))
    return StageResult(val=split_accuracy(per_class_val, rule), test=split_accuracy(per_class_test, rule),
                       per_class_val=_finite_or_none(per_class_val), per_class_test=_finite_or_none(per_class_test),
                       diagnostics=diagnostics, wall_time_s=elapsed)


def _finite_or_none(values: torch.Tensor) -> list[float | None]:
    """NaN marks "no sample of this class"; JSON has no NaN, so it travels as null."""
    return [value if math.isfinite(value) else None for value in values.tolist()]
