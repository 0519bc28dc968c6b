"""Every backbone exposes features(x) and a linear classifier, in either memory format."""

from __future__ import annotations

import pytest
import torch

from trainers.errors import UserInputError
from trainers.models import build_model, resolve_arch


@pytest.mark.parametrize(("arch", "channels", "size", "dim"), [
    ("resnet34-cifar", 3, 32, 512), ("resnet32-cifar", 3, 32, 64), ("resnet50", 3, 32, 2048),
    ("resnext50", 3, 32, 2048), ("small-cnn", 1, 8, 128),
])
def test_features_and_logits_shapes(arch: str, channels: int, size: int, dim: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, in_channels=channels, image_size=size).eval()
    images = torch.randn(2, channels, size, size)
    with torch.no_grad():
        features = model.features(images)
        logits = model(images)
    assert features.shape == (2, dim) and model.feature_dim == dim
    assert logits.shape == (2, 7)
    assert torch.allclose(logits, model.classifier(features))
    assert set(map(id, model.last_block_parameters())) <= set(map(id, model.parameters()))


@pytest.mark.parametrize("arch", ["resnet32-cifar", "small-cnn"])
def test_channels_last_gives_the_same_logits(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, in_channels=3, image_size=16).eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = model(images)
        actual = model.to(memory_format=torch.channels_last)(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_auto_arch_follows_the_data_set_and_unknown_arch_is_a_user_error() -> None:
    assert resolve_arch("auto", "cifar100-lt", 32) == "resnet34-cifar"
    assert resolve_arch("auto", "imagenet-lt", 64) == "resnext50"
    assert resolve_arch("auto", "inat2018", 64) == "resnet50"
    assert resolve_arch("auto", "digits-lt", 8) == "small-cnn"
    with pytest.raises(UserInputError, match="unknown model"):
        build_model("vgg", 3, 3, 32)
