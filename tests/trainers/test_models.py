"""Every backbone exposes features(x) and a linear classifier, in either memory format."""

from __future__ import annotations

import pytest
import torch

from trainers.dataset_facts import resolve_arch
from trainers.errors import UserInputError
from trainers.models import build_model

ARCH_SHAPES = [("resnet34-cifar", 3, 32, 512), ("resnet32-cifar", 3, 32, 64), ("resnet50", 3, 32, 2048),
               ("resnext50", 3, 32, 2048), ("small-cnn", 1, 8, 128)]


@pytest.mark.parametrize(("arch", "channels", "size", "dim"), ARCH_SHAPES)
def test_features_logits_and_channels_last(arch: str, channels: int, size: int, dim: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, in_channels=channels, image_size=size).eval()
    images = torch.randn(2, channels, size, size)
    with torch.no_grad():
        features = model.features(images)
        logits = model(images)
        model = model.to(memory_format=torch.channels_last)
        logits_channels_last = model(images.contiguous(memory_format=torch.channels_last))
    assert features.shape == (2, dim) and model.feature_dim == dim
    assert logits.shape == (2, 7)
    assert isinstance(model.classifier, torch.nn.Linear) and model.classifier.bias is not None
    assert torch.allclose(logits, model.classifier(features))
    torch.testing.assert_close(logits_channels_last, logits, rtol=1e-4, atol=1e-5)
    last_block = set(map(id, model.last_block_parameters()))
    assert last_block and last_block <= set(map(id, model.body.parameters()))


def test_resnet34_cifar_keeps_the_resolution_of_a_cifar_image_until_the_4x4_pool() -> None:
    model = build_model("resnet34-cifar", num_classes=10, in_channels=3, image_size=32)
    stem = model.body[0]
    assert (stem.kernel_size, stem.stride, stem.padding, stem.bias) == ((3, 3), (1, 1), (1, 1), None)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert model.body(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    assert [len(model.body[i]) for i in range(3, 7)] == [3, 4, 6, 3]


def test_resnet32_has_the_ldam_size() -> None:
    # He et al. 2016 (Table 6): ResNet-32 for CIFAR-10 has 0.46M parameters with option-A shortcuts.
    model = build_model("resnet32-cifar", num_classes=10, in_channels=3, image_size=32)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.46e6, rel=0.01)


def test_auto_arch_follows_the_data_set_and_unknown_arch_is_a_user_error() -> None:
    assert resolve_arch("auto", "cifar100-lt", 32) == "resnet34-cifar"
    assert resolve_arch("auto", "cifar10-lt", 16) == "small-cnn"
    assert resolve_arch("auto", "imagenet-lt", 64) == "resnext50"
    assert resolve_arch("auto", "inat2018", 224) == "resnet50"
    assert resolve_arch("auto", "digits-lt", 32) == "small-cnn"
    # A folder's model grows with its images (issue 24: every folder got the 3-block CNN, whatever its size).
    assert [resolve_arch("auto", "folder:/data/birds", side) for side in (16, 28, 32, 64, 65, 224)] == [
        "small-cnn", "small-cnn", "resnet32-cifar", "resnet32-cifar", "resnet50", "resnet50"]
    assert resolve_arch("resnet32-cifar", "cifar100-lt", 32) == "resnet32-cifar"
    with pytest.raises(UserInputError, match="unknown model"):
        build_model("vgg", 3, 3, 32)
