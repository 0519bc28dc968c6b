"""What stage 2 produced for every finished trial, kept so its model can be exported without training.

Layout (owned here): ARTIFACT_DIR/stage2/<stage-1 key>/<sha256 of the file>.pt, beside the stage-1 cache's
ARTIFACT_DIR/stage1/<key>/ that holds the backbone. The trial's user attribute `stage2_file` names the file
relative to ARTIFACT_DIR (and `stage2_bytes` its size). The name is the content's hash, so two workers or a
retried trial writing the same result write the same file, and different results never clash.

Cost per trial: the evaluated head, K x (d + 3) float32 (W, b, logit scale and offset) plus class names and
~1.5 KB of torch's zip framing: ~6 KB for small-cnn on 10 classes, ~210 KB for a 100-class head on 512-d
features. A trial whose stage 2 changed the backbone (BN in train mode, last-two layers) also stores that
backbone: a ResNet-34-CIFAR is ~85 MB.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from studies.artifacts.cache import CachedBackbone
from studies.definition.errors import ModelFilesMissingError
from trainers.config import ExperimentConfig
from trainers.dataset_facts import resolve_arch
from trainers.device import Runtime
from trainers.experiment import Stage2Output
from trainers.exported import ModelInput, TrialModelParts, serialized, write_atomically

STAGE2_FILE_ATTR = "stage2_file"
STAGE2_BYTES_ATTR = "stage2_bytes"
_FORMAT = "tailtune-stage2"
_FORMAT_VERSION = 1


def store_trial_model(artifact_dir: Path, cached: CachedBackbone, config: ExperimentConfig, output: Stage2Output,
                      runtime: Runtime) -> dict[str, str | int]:
    """Writes the trial's stage-2 output; returns the user attributes that lead the export to it."""
    data = cached.backbone.data
    parts = TrialModelParts(classifier=output.classifier,
                            arch=resolve_arch(config.model.arch, data.name, data.image_size),
                            input=ModelInput.of(data, channels_last=runtime.channels_last,
                                                precision=config.eval.feature_precision),
                            class_names=list(data.class_names), split_rule=cached.backbone.rule.model_dump())
    content = serialized({"format": _FORMAT, "format_version": _FORMAT_VERSION, **parts.to_payload()})
    relative = f"stage2/{cached.key}/{hashlib.sha256(content).hexdigest()[:32]}.pt"
    if not (artifact_dir / relative).exists():
        write_atomically(content, artifact_dir / relative)
    return {STAGE2_FILE_ATTR: relative, STAGE2_BYTES_ATTR: len(content)}


def load_trial_model(artifact_dir: Path, relative: str) -> TrialModelParts:
    """The stored stage-2 output; FileNotFoundError when it is absent, ModelFilesMissingError naming the file
    when it cannot be read or has another format. Messages name the file under the artifact directory, never
    the directory itself: the API sends them to clients."""
    path = artifact_dir / relative
    if not path.is_file():
        raise FileNotFoundError(f"no stored stage-2 result '{relative}' in the artifact directory")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        raise ModelFilesMissingError(f"stored stage-2 result '{relative}' is not readable ({type(error).__name__}); "
                                     "run the trial's params again in a new trial") from None
    if not isinstance(payload, dict) or (payload.get("format"), payload.get("format_version")) != (
            _FORMAT, _FORMAT_VERSION):
        found = payload.get("format_version") if isinstance(payload, dict) else None
        raise ModelFilesMissingError(f"stored stage-2 result '{relative}' has format {found}, this tailtune reads "
                                     f"{_FORMAT_VERSION}; export it with the tailtune that ran the trial, or run "
                                     "its params again")
    return TrialModelParts.from_payload(payload)
