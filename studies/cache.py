"""The stage-1 cache: one trained backbone (and its feature bank) per key, shared by all trials and workers.

A key covers everything that determines stage 1 and the cached features: data set, model, stage-1 settings,
seed, feature views (augmented train views; flipped val/test for flip TTA) and the trainer's code version.
An entry is written to a temporary directory and renamed into place, so a crashed training leaves nothing
half-written; a database lock (advisory lock on PostgreSQL, file lock on SQLite) makes two workers that miss
the same key at once train it once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.config import ExperimentConfig
from trainers.data import load_dataset
from trainers.device import Runtime
from trainers.experiment import Backbone, build_backbone_model, feature_views, train_backbone
from trainers.features import FeatureBank
from trainers.loop import EpochCallback
from trainers.metrics import split_rule
from trainers.provenance import trainer_code_version
from trainers.results import StageResult

LockFactory = Callable[[str], AbstractContextManager]


def stage1_key(config: ExperimentConfig) -> str:
    determined_by = {
        "data": config.data.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
        "stage1": config.stage1.model_dump(mode="json"), "seed": config.seed,
        "feature_views": feature_views(config), "flip_features": config.eval.flip_tta,
        "code": trainer_code_version(),
    }
    return hashlib.sha256(json.dumps(determined_by, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CachedBackbone:
    backbone: Backbone
    key: str
    trained_here: bool  # False when it came from the cache


class Stage1Cache:
    def __init__(self, artifact_dir: Path, lock: LockFactory, runtime: Runtime, memory_entries: int = 2) -> None:
        self.root = artifact_dir / "stage1"
        self._lock = lock
        self.runtime = runtime
        self._memory: OrderedDict[str, Backbone] = OrderedDict()
        self._memory_entries = memory_entries

    def backbone_for(self, config: ExperimentConfig, on_epoch: EpochCallback | None = None) -> CachedBackbone:
        key = stage1_key(config)
        if key in self._memory:
            self._memory.move_to_end(key)
            return CachedBackbone(self._memory[key], key, trained_here=False)
        trained_here = False
        if not self._entry(key).exists():
            # Whoever holds the lock trains; the others wait here, then find the finished entry.
            with self._lock(f"stage1:{key}"):
                if not self._entry(key).exists():
                    self._store(key, train_backbone(config, self.runtime, on_epoch))
                    trained_here = True
        backbone = self._load(key, config)
        self._remember(key, backbone)
        return CachedBackbone(backbone, key, trained_here)

    def has(self, config: ExperimentConfig) -> bool:
        """True when the config's backbone is trained already (here or by another worker)."""
        key = stage1_key(config)
        return key in self._memory or self._entry(key).exists()

    def entries(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".")) if self.root.exists() else []

    def _entry(self, key: str) -> Path:
        return self.root / key

    def _store(self, key: str, backbone: Backbone) -> None:
        staging = self.root / f".staging-{key}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            torch.save(backbone.model.state_dict(), staging / "model.pt")
            backbone.features.save(staging / "features.pt")
            (staging / "stage1.json").write_text(backbone.stage1.model_dump_json())
            staging.rename(self._entry(key))  # atomic on one filesystem: readers see all files or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _load(self, key: str, config: ExperimentConfig) -> Backbone:
        entry, device = self._entry(key), self.runtime.device
        data = load_dataset(config.data)
        model = build_backbone_model(config, data, self.runtime)
        model.load_state_dict(torch.load(entry / "model.pt", map_location=device, weights_only=True))
        model.eval()
        return Backbone(model=model, data=data, rule=split_rule(data.class_counts),
                        features=FeatureBank.load(entry / "features.pt", device),
                        stage1=StageResult.model_validate_json((entry / "stage1.json").read_text()))

    def _remember(self, key: str, backbone: Backbone) -> None:
        self._memory[key] = backbone
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)
