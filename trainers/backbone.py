"""The untrained stage-1 model and its loss, shared by the one-process loop (trainers/experiment.py) and each
data-parallel rank (trainers/distributed.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainers.config import ExperimentConfig
from trainers.data.types import LTDataset
from trainers.dataset_facts import resolve_arch
from trainers.device import Runtime
from trainers.loop import LossFn
from trainers.losses import feature_regularization
from trainers.models import LTModel, build_model
from trainers.posthoc import etf_classifier_weight


def stage1_loss(config: ExperimentConfig) -> LossFn:
    """Cross-entropy, plus EWB's feature regularisation when `stage1.feature_reg` is set."""
    feature_reg = config.stage1.feature_reg

    def loss(logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if feature_reg == 0:
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(logits, labels) + feature_reg * feature_regularization(features)
    return loss


def build_backbone_model(config: ExperimentConfig, data: LTDataset, runtime: Runtime) -> LTModel:
    """The untrained stage-1 model for a config (with its fixed ETF classifier for EWB), on the device."""
    arch = resolve_arch(config.model.arch, data.name, data.image_size)
    model = build_model(arch, data.num_classes, data.channels, data.image_size)
    if config.stage1.classifier == "etf":
        # EWB: a fixed simplex-ETF classifier; only its bias trains, initialised U(-1/d, 1/d).
        dim = model.feature_dim
        with torch.no_grad():
            model.classifier.weight.copy_(etf_classifier_weight(data.num_classes, dim, config.seed))
            model.classifier.bias.uniform_(-1 / dim, 1 / dim)
        model.classifier.weight.requires_grad_(False)
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    return model.to(runtime.device, memory_format=memory_format)
