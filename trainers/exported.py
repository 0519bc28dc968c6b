"""A trial's model as one file: the backbone, the classifier its result was measured with, how images are
prepared, the class names and its model card.

    tailtune export wb-digits --storage sqlite:///t.db --out model.pt
    tailtune predict --model model.pt photos/

The file is a `torch.save`d dict of tensors, numbers, strings and lists, so `torch.load(FILE,
weights_only=True)` reads it with torch alone; `load_model_file` rebuilds the network and checks the format.
Keys: format, format_version, tailtune_version, arch, state_dict (LTModel's, with the evaluated classifier's W
and b), logit_scale, logit_offset, flip_tta, input (image_size, resize, channels, mean, std, channels_last),
class_names, card.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from trainers.augment import hflip, normalize
from trainers.classifier import EvaluatedClassifier
from trainers.config import FeaturePrecision
from trainers.data.streaming import read_views
from trainers.data.types import ImageView, LTDataset
from trainers.errors import UserInputError
from trainers.heads import Head
from trainers.models import LTModel, build_model
from trainers.provenance import tailtune_version

MODEL_FORMAT = "tailtune-model"
# Raised whenever a key's meaning changes; a file of another version is refused with a message, never misread.
MODEL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelInput:
    """How an image file becomes the network's input: decoded to `channels` (1 gray, 3 RGB), shorter side
    resized to `resize` (bilinear), centre crop `image_size`, then (x / 255 - mean) / std per channel."""

    image_size: int
    resize: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool  # the memory format the trial was evaluated in (bit-identical features)
    # A streamed data set's feature bank holds float16 (trainers/features.py): the trial's logits came from
    # features rounded so, and the export rounds them the same way.
    features_float16: bool = False

    @classmethod
    def of(cls, data: LTDataset, *, channels_last: bool, precision: FeaturePrecision) -> ModelInput:
        resize = data.view.resize if data.view is not None else data.image_size
        return cls(image_size=data.image_size, resize=resize, channels=data.channels,
                   mean=tuple(data.mean), std=tuple(data.std), channels_last=channels_last,
                   features_float16=data.pipeline == "streaming" and precision == "float16")

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> ModelInput:
        return cls(**{**stored, "mean": tuple(stored["mean"]), "std": tuple(stored["std"])})

    def read(self, paths: list[Path]) -> torch.Tensor:
        """The files as a uint8 N x C x size x size batch, decoded exactly as the data sets of image files are."""
        return read_views(paths, ImageView(size=self.image_size, resize=self.resize, channels=self.channels))


@dataclass(frozen=True)
class TrialModelParts:
    """What a worker stores for each finished trial beside the cached stage-1 weights: the evaluated classifier
    and what the data set fixed (architecture, input, class names)."""

    classifier: EvaluatedClassifier
    arch: str
    input: ModelInput
    class_names: list[str]
    split_rule: dict[str, Any]  # trainers.results.SplitRule as JSON, for the model card

    def to_payload(self) -> dict[str, Any]:
        classifier = self.classifier
        return {"weight": classifier.head.weight.cpu(), "bias": classifier.head.bias.cpu(),
                "logit_scale": classifier.logit_scale.cpu(), "logit_offset": classifier.logit_offset.cpu(),
                "flip_tta": classifier.flip_tta,
                "backbone_state": {k: v.cpu() for k, v in (classifier.backbone_state or {}).items()} or None,
                "arch": self.arch, "input": asdict(self.input), "class_names": list(self.class_names),
                "split_rule": self.split_rule}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TrialModelParts:
        classifier = EvaluatedClassifier(head=Head(payload["weight"], payload["bias"]),
                                         logit_scale=payload["logit_scale"], logit_offset=payload["logit_offset"],
                                         flip_tta=payload["flip_tta"], backbone_state=payload["backbone_state"])
        return cls(classifier=classifier, arch=payload["arch"], input=ModelInput.from_dict(payload["input"]),
                   class_names=list(payload["class_names"]), split_rule=payload["split_rule"])


def model_file_payload(parts: TrialModelParts, stage1_state: dict[str, torch.Tensor],
                       card: dict[str, Any]) -> dict[str, Any]:
    """The export: stage-1 weights (or the backbone stage 2 changed) with the evaluated classifier in place."""
    classifier = parts.classifier
    state = dict(classifier.backbone_state or stage1_state)
    state["classifier.weight"], state["classifier.bias"] = classifier.head.weight.cpu(), classifier.head.bias.cpu()
    return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "tailtune_version": tailtune_version(),
            "arch": parts.arch, "state_dict": {k: v.cpu() for k, v in state.items()},
            "logit_scale": classifier.logit_scale.cpu(), "logit_offset": classifier.logit_offset.cpu(),
            "flip_tta": classifier.flip_tta, "input": asdict(parts.input), "class_names": list(parts.class_names),
            "card": card}


def serialized(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def write_atomically(data: bytes, path: Path) -> None:
    """Writes a temporary file and renames it into place, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        staging.write_bytes(data)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


@dataclass
class ExportedModel:
    """A model file loaded for prediction: `logits(images)` is the trial's evaluation of uint8 images."""

    model: LTModel
    classifier: EvaluatedClassifier
    input: ModelInput
    class_names: list[str]
    card: dict[str, Any]

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W images -> N x K logits, computed as trainers.loop.predict and the classifier
        did for the trial (same normalisation, memory format, flip views and order of operations)."""
        self.model.eval()
        device = self.model.classifier.weight.device
        images = images.to(device)
        features = self._features(images)
        flipped = self._features(hflip(images)) if self.classifier.flip_tta else None
        return self.classifier.logits(features, flipped)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        spec = self.input
        features = self.model.features(normalize(images, spec.mean, spec.std, spec.channels_last)).float()
        return features.half().float() if spec.features_float16 else features


def load_model_file(path: Path, device: torch.device) -> ExportedModel:
    """Reads a `tailtune export` file; a missing, unreadable, foreign or other-version file names itself."""
    payload = _read_payload(path)
    model_input = ModelInput.from_dict(payload["input"])
    class_names = list(payload["class_names"])
    model = build_model(payload["arch"], len(class_names), model_input.channels, model_input.image_size)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise UserInputError(f"model file '{path}' does not fit this tailtune's {payload['arch']} network "
                             f"({str(error).splitlines()[0]}); export it again with this tailtune version") from None
    memory_format = torch.channels_last if model_input.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).eval()
    head = Head(model.classifier.weight.detach(), model.classifier.bias.detach())
    classifier = EvaluatedClassifier(head=head, logit_scale=payload["logit_scale"].to(device),
                                     logit_offset=payload["logit_offset"].to(device), flip_tta=payload["flip_tta"])
    return ExportedModel(model=model, classifier=classifier, input=model_input, class_names=class_names,
                         card=payload["card"])


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"model file '{path}' does not exist; write one with `tailtune export`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError... for a bad file
        raise UserInputError(f"model file '{path}' is not readable as a torch file ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else 'no detail'}); export it again "
                             "with `tailtune export`") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserInputError(f"'{path}' is a torch file but not a tailtune model (no '{MODEL_FORMAT}' header); "
                             "write one with `tailtune export`")
    version = payload.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise UserInputError(f"model file '{path}' has model format {version} (written by tailtune "
                             f"{payload.get('tailtune_version', 'unknown')}); this tailtune "
                             f"({tailtune_version()}) reads format {MODEL_FORMAT_VERSION}: export the trial again "
                             "with this version, or predict with the version that wrote it")
    return payload
