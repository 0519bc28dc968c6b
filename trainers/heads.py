"""Classifier re-training (WB stage 2, LOS) on cached features, for many configurations in one pass.

M configurations that share epochs and batch size see the same batches; their weights are stacked (M x K x d)
and trained by one batched matmul and one backward. Each configuration's loss depends only on its own
weights, so the summed loss gives every configuration exactly the gradient it would get alone. The update is
torch.optim.SGD's (momentum, coupled weight decay, no dampening) written for per-configuration hyperparameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby

import torch
import torch.nn.functional as F

from trainers.config import RetrainConfig
from trainers.device import seeded_generator
from trainers.features import FeatureBank
from trainers.losses import class_balanced_weights
from trainers.maxnorm import relative_radius, row_norms

_LOGITS_CHUNK = 65_536  # rows of an on-disk bank converted to float32 at a time


@dataclass(frozen=True)
class Head:
    weight: torch.Tensor  # K x d
    bias: torch.Tensor  # K

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of features on the head's device, or of an on-disk float16 bank read chunk by chunk."""
        if features.device == self.weight.device and features.dtype == self.weight.dtype:
            return features @ self.weight.T + self.bias
        return torch.cat([chunk.to(self.weight.device, self.weight.dtype) @ self.weight.T + self.bias
                          for chunk in features.split(_LOGITS_CHUNK)])


def train_heads(bank: FeatureBank, init: Head, configs: list[RetrainConfig], class_counts: list[int],
                *, seed: int) -> list[Head]:
    """Trains one head per config, batching configs that share (epochs, batch_size); order is kept."""
    heads: dict[int, Head] = {}
    schedule = sorted(range(len(configs)), key=lambda i: (configs[i].epochs, configs[i].batch_size))
    for _, group in groupby(schedule, key=lambda i: (configs[i].epochs, configs[i].batch_size)):
        indices = list(group)
        trained = _train_group(bank, init, [configs[i] for i in indices], class_counts, seed)
        heads.update(zip(indices, trained, strict=True))
    return [heads[i] for i in range(len(configs))]


@dataclass(frozen=True)
class _Hyper:
    """Per-configuration hyperparameters as tensors with a leading M axis."""

    lr: torch.Tensor
    momentum: torch.Tensor
    weight_decay: torch.Tensor
    radius: torch.Tensor  # inf where MaxNorm is off
    project_every_step: torch.Tensor
    smoothing: torch.Tensor  # LOS delta, 0 for the hard-label losses
    class_weights: torch.Tensor  # M x K
    bce: torch.Tensor  # the WB code's BCE-on-softmax form
    any_bce: bool  # False: the BCE graph is skipped (about a third of a step's work on small heads)


def _hyperparameters(configs: list[RetrainConfig], init: Head, class_counts: list[int]) -> _Hyper:
    device = init.weight.device
    stage1_norms = row_norms(init.weight)

    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    def radius(c: RetrainConfig) -> float:
        if c.maxnorm == "relative":
            return float(relative_radius(stage1_norms, c.maxnorm_thresh))
        return c.maxnorm_radius if c.maxnorm == "absolute" else math.inf

    def class_weights(c: RetrainConfig) -> torch.Tensor:
        if c.loss in ("cb", "cb-bce"):
            return class_balanced_weights(class_counts, c.cb_beta).to(device=device, dtype=torch.float32)
        return torch.ones(len(class_counts), device=device)

    return _Hyper(
        lr=column([c.lr for c in configs]), momentum=column([c.momentum for c in configs]),
        weight_decay=column([c.weight_decay for c in configs]), radius=column([radius(c) for c in configs]),
        project_every_step=torch.tensor([c.maxnorm_every == "step" for c in configs], device=device),
        smoothing=column([c.over_smoothing if c.loss == "los" else 0.0 for c in configs]),
        class_weights=torch.stack([class_weights(c) for c in configs]),
        bce=torch.tensor([c.loss == "cb-bce" for c in configs], device=device),
        any_bce=any(c.loss == "cb-bce" for c in configs))


def _train_group(bank: FeatureBank, init: Head, configs: list[RetrainConfig], class_counts: list[int],
                 seed: int) -> list[Head]:
    hyper = _hyperparameters(configs, init, class_counts)
    count, epochs, batch_size = len(configs), configs[0].epochs, configs[0].batch_size
    weight = init.weight.detach().float().repeat(count, 1, 1).requires_grad_(True)
    bias = init.bias.detach().float().repeat(count, 1).requires_grad_(True)
    momentum_buffers: list[torch.Tensor | None] = [None, None]
    generator = seeded_generator(seed, bank.train_labels.device)
    for epoch in range(epochs):
        # Closed form of CosineAnnealingLR(T_max=epochs, eta_min=0), stepped once per epoch.
        lr = hyper.lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        features = bank.train_views[epoch % bank.train_views.shape[0]]
        order = torch.randperm(features.shape[0], device=generator.device, generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            # an on-disk bank's rows are read here, batch by batch (a no-op move for a bank on the device)
            batch = features[index.to(features.device)].to(weight.device, weight.dtype)
            loss = _batched_loss(batch, bank.train_labels[index], weight, bias, hyper)
            weight.grad, bias.grad = torch.autograd.grad(loss, (weight, bias))
            _sgd_update([weight, bias], momentum_buffers, lr, hyper)
            _project(weight, hyper.radius, hyper.project_every_step)
        _project(weight, hyper.radius, ~hyper.project_every_step)
    return [Head(weight[m].detach(), bias[m].detach()) for m in range(count)]


def _batched_loss(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  hyper: _Hyper) -> torch.Tensor:
    """Sum over configurations of each one's mean loss on this batch."""
    logits = torch.matmul(features, weight.mT) + bias[:, None, :]  # M x B x K; einsum's dispatch costs more
    num_classes = logits.shape[-1]
    one_hot = F.one_hot(labels, num_classes).float()
    sample_weight = hyper.class_weights[:, labels]  # M x B: w_{y_b} per configuration
    # Soft-target CE covers CE (delta 0), CB (class weights) and LOS (delta > 0): target 1-delta+delta/K.
    delta = hyper.smoothing[:, None, None]
    targets = one_hot * (1 - delta) + delta / num_classes
    log_probs = F.log_softmax(logits, dim=-1)
    soft_ce = (sample_weight * -(targets * log_probs).sum(-1)).mean(-1)
    if not hyper.any_bce:
        return soft_ce.sum()
    # WB code's CB loss: BCE on softmax probabilities, weighted by w_y, mean over B*K entries; as in
    # losses.cb_bce_softmax, only 1 - p is clamped (float32 softmax saturates to 1).
    log_not_probs = torch.log1p(-log_probs.exp().clamp(max=1 - 1e-7))
    entries = -(one_hot * log_probs + (1 - one_hot) * log_not_probs)
    bce = (sample_weight[..., None] * entries).mean(dim=(-2, -1))
    return torch.where(hyper.bce, bce, soft_ce).sum()


@torch.no_grad()
def _sgd_update(params: list[torch.Tensor], buffers: list[torch.Tensor | None], lr: torch.Tensor,
                hyper: _Hyper) -> None:
    for i, param in enumerate(params):
        shape = (-1,) + (1,) * (param.ndim - 1)
        grad = param.grad + hyper.weight_decay.view(shape) * param
        if buffers[i] is None:
            buffers[i] = grad.clone()
        else:
            buffers[i].mul_(hyper.momentum.view(shape)).add_(grad)
        param.sub_(lr.view(shape) * buffers[i])
        param.grad = None


@torch.no_grad()
def _project(weight: torch.Tensor, radius: torch.Tensor, active: torch.Tensor) -> None:
    """MaxNorm by projection: rows outside their configuration's ball are scaled onto it; bias never."""
    norms = weight.norm(dim=-1)
    scale = torch.clamp(radius[:, None] / norms.clamp_min(1e-12), max=1.0)
    weight.mul_(torch.where(active[:, None], scale, torch.ones_like(scale))[..., None])
