"""Batched stage-2 heads give the results of plain, separate runs."""

from __future__ import annotations

import pytest
import torch

from trainers.config import RetrainConfig
from trainers.device import seeded_generator
from trainers.features import FeatureBank
from trainers.heads import Head, train_heads
from trainers.losses import make_loss
from trainers.maxnorm import project_rows_, relative_radius, row_norms

NUM_CLASSES, DIM = 5, 12
CLASS_COUNTS = [40, 20, 10, 5, 3]


def _bank(views: int = 2) -> FeatureBank:
    generator = torch.Generator().manual_seed(0)
    labels = torch.repeat_interleave(torch.arange(NUM_CLASSES), torch.tensor(CLASS_COUNTS))
    centres = torch.randn(NUM_CLASSES, DIM, generator=generator)
    train = centres[labels] + 0.8 * torch.randn(views, len(labels), DIM, generator=generator)
    eval_labels = torch.arange(NUM_CLASSES).repeat(4)
    held_out = centres[eval_labels] + 0.8 * torch.randn(len(eval_labels), DIM, generator=generator)
    return FeatureBank(train_views=train, train_plain=train[0], train_labels=labels, val=held_out,
                       val_flipped=held_out, val_labels=eval_labels, test=held_out, test_flipped=held_out,
                       test_labels=eval_labels, fdr_train=0.0, fdr_test=0.0)


def _init_head() -> Head:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(NUM_CLASSES, DIM, generator=generator) * torch.linspace(2.0, 0.5, NUM_CLASSES)[:, None]
    return Head(weight, 0.1 * torch.randn(NUM_CLASSES, generator=generator))


def _reference(bank: FeatureBank, init: Head, config: RetrainConfig, seed: int) -> Head:
    """Stage 2 the plain way: nn.Linear, torch.optim.SGD, CosineAnnealingLR, the losses module, MaxNorm."""
    linear = torch.nn.Linear(DIM, NUM_CLASSES)
    with torch.no_grad():
        linear.weight.copy_(init.weight)
        linear.bias.copy_(init.bias)
    optimizer = torch.optim.SGD(linear.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    loss_fn = make_loss(config.loss, CLASS_COUNTS, config.cb_beta, config.over_smoothing)
    radius = {"relative": float(relative_radius(row_norms(init.weight), config.maxnorm_thresh)),
              "absolute": config.maxnorm_radius, "none": None}[config.maxnorm]
    generator = seeded_generator(seed, torch.device("cpu"))
    for epoch in range(config.epochs):
        features = bank.train_views[epoch % bank.train_views.shape[0]]
        order = torch.randperm(features.shape[0], generator=generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            loss = loss_fn(linear(features[index]), bank.train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if radius is not None and config.maxnorm_every == "step":
                project_rows_(linear.weight.data, radius)
        if radius is not None and config.maxnorm_every == "epoch":
            project_rows_(linear.weight.data, radius)
        schedule.step()
    return Head(linear.weight.detach(), linear.bias.detach())


CONFIGS = [
    RetrainConfig(loss="ce", weight_decay=0.01, maxnorm="none", epochs=4, batch_size=16),
    RetrainConfig(loss="cb", weight_decay=0.1, maxnorm="relative", maxnorm_thresh=0.2, epochs=4, batch_size=16),
    RetrainConfig(loss="cb-bce", weight_decay=0.05, maxnorm="absolute", maxnorm_radius=1.0, maxnorm_every="epoch",
                  epochs=4, batch_size=16, lr=0.05),
    RetrainConfig(loss="los", over_smoothing=0.9, weight_decay=0.0, maxnorm="none", lr=0.02, momentum=0.5,
                  epochs=4, batch_size=16),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.loss)
def test_single_head_matches_plain_sgd_loop(config: RetrainConfig) -> None:
    bank, init = _bank(), _init_head()
    [head] = train_heads(bank, init, [config], CLASS_COUNTS, seed=3)
    expected = _reference(bank, init, config, seed=3)
    assert not torch.equal(head.weight, init.weight), "training must move the weights"
    torch.testing.assert_close(head.weight, expected.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(head.bias, expected.bias, rtol=1e-4, atol=1e-5)


def test_batched_heads_equal_separate_runs() -> None:
    bank, init = _bank(), _init_head()
    odd_one = RetrainConfig(loss="cb", epochs=3, batch_size=8, maxnorm="none")  # a second (epochs, batch) group
    configs = [*CONFIGS, odd_one]
    batched = train_heads(bank, init, configs, CLASS_COUNTS, seed=5)
    for config, head in zip(configs, batched, strict=True):
        [alone] = train_heads(bank, init, [config], CLASS_COUNTS, seed=5)
        torch.testing.assert_close(head.weight, alone.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(head.bias, alone.bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batched", [False, True])
def test_maxnorm_caps_the_rows_and_never_touches_a_bias_above_the_radius(batched: bool) -> None:
    """The bias entries start at norm 3 against a radius of 0.05: projecting the bias (as a row, or entry by
    entry) would pull it inside the ball. With one epoch and the projection after it, the bias of the projected
    run must equal, bit for bit, that of the same run without MaxNorm; its rows must sit on the ball."""
    bank, init = _bank(), _init_head()
    init = Head(init.weight, 3.0 + 0.1 * torch.arange(NUM_CLASSES, dtype=torch.float32))
    radius = 0.05
    capped = RetrainConfig(loss="cb", maxnorm="absolute", maxnorm_radius=radius, maxnorm_every="epoch",
                           epochs=1, batch_size=16)
    free = capped.model_copy(update={"maxnorm": "none"})
    if batched:
        heads = train_heads(bank, init, [capped, free, capped.model_copy(update={"weight_decay": 0.3})],
                            CLASS_COUNTS, seed=0)
    else:
        heads = [train_heads(bank, init, [config], CLASS_COUNTS, seed=0)[0] for config in (capped, free)]
    assert torch.allclose(row_norms(heads[0].weight), torch.full((NUM_CLASSES,), radius))
    assert row_norms(heads[1].weight).min() > 10 * radius
    assert heads[0].bias.abs().min() > 2.5, "the bias must stay far outside the radius"
    assert torch.equal(heads[0].bias, heads[1].bias)
