"""The backbones the papers train, each with `features(x)` and a linear `classifier` so stage 2 can retrain
the head alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from trainers.errors import UserInputError

ARCHS = ("resnet34-cifar", "resnet32-cifar", "resnet50", "resnext50", "small-cnn")


class LTModel(nn.Module):
    """A feature extractor followed by one nn.Linear (with bias)."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, last_block: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.classifier = nn.Linear(feature_dim, num_classes)
        self._last_block = [last_block]  # a view into body, kept out of the module tree

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def last_block_parameters(self) -> Iterator[nn.Parameter]:
        """The last residual stage: with the classifier, WB's "last two layers" re-training option."""
        return self._last_block[0].parameters()


def resolve_arch(arch: str, dataset_name: str, image_size: int) -> str:
    if arch != "auto":
        return arch
    if dataset_name.startswith("cifar"):
        return "resnet34-cifar"
    if dataset_name == "imagenet-lt":
        return "resnext50"
    if dataset_name == "inat2018":
        return "resnet50"
    return "small-cnn"


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int) -> LTModel:
    builders = {"resnet34-cifar": _resnet34_cifar, "resnet32-cifar": _resnet32_cifar, "small-cnn": _small_cnn,
                "resnet50": lambda c: _torchvision(torchvision.models.resnet50, c),
                "resnext50": lambda c: _torchvision(torchvision.models.resnext50_32x4d, c)}
    if arch not in builders:
        raise UserInputError(f"unknown model {arch!r}; choose one of auto, {', '.join(ARCHS)}")
    body, dim, last = builders[arch](in_channels)
    return LTModel(body, dim, num_classes, last)


def _pooled(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _resnet34_cifar(in_channels: int) -> tuple[nn.Module, int, nn.Module]:
    """torchvision's ResNet-34 with the WB/EWB code's CIFAR stem: 3x3 stride-1 conv, no max-pool."""
    net = torchvision.models.resnet34(weights=None)
    stem = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    body = _pooled(stem, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, 512, net.layer4


def _torchvision(factory: Callable[..., torchvision.models.ResNet],
                 in_channels: int) -> tuple[nn.Module, int, nn.Module]:
    net = factory(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    body = _pooled(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, net.fc.in_features, net.layer4


class _BasicBlock(nn.Module):
    """The LDAM/CIFAR ResNet block; the shortcut is a 1x1 conv + BN when shape changes (option B)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [_BasicBlock(in_planes, planes, stride)]
    layers += [_BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _resnet32_cifar(in_channels: int) -> tuple[nn.Module, int, nn.Module]:
    """ResNet-32 of the WB paper's text (LDAM's network): 16/32/64 channels, 5 blocks per stage, 64-d feature."""
    last = _stage(32, 64, 5, 2)
    stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    return _pooled(stem, _stage(16, 16, 5, 1), _stage(16, 32, 5, 2), last), 64, last


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def _small_cnn(in_channels: int) -> tuple[nn.Module, int, nn.Module]:
    """For digits-lt (8x8) and small folder images: three conv-BN-ReLU blocks, one 2x downsampling."""
    last = _conv_bn_relu(64, 128)
    body = _pooled(_conv_bn_relu(in_channels, 32), _conv_bn_relu(32, 64), nn.MaxPool2d(2), last)
    return body, 128, last
