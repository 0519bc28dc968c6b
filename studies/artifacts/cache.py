"""The stage-1 cache: one trained backbone (and its feature bank) per key, shared by all trials and workers.

A key covers everything that determines stage 1 and the cached features: data set, model, stage-1 settings,
seed, feature views (augmented train views; flipped val/test for flip TTA) and the trainer's code version.
An entry is written to a temporary directory, its manifest (each file's size and SHA-256) last, and renamed
into place, so a crashed training leaves nothing half-written; a database lock (advisory lock on PostgreSQL,
file lock on SQLite) makes two workers that miss the same key at once train it once.

Neither guarantee is absolute, so neither is relied on alone:
- the lock lapses when its PostgreSQL session ends (a server restart), and a second holder trains too; its
  rename then meets the finished entry, keeps it when it is sound, and its trial goes on with that entry;
- a file can be damaged after the rename (a full disk, a copy cut short, a hand edit); every read checks the
  manifest first, and a damaged entry is moved aside to `stage1/.quarantine/` (named in the log) and rebuilt
  by the trial that found it, under the lock.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.backbone import build_backbone_model
from trainers.config import ExperimentConfig
from trainers.data import load_dataset
from trainers.device import Runtime
from trainers.experiment import Backbone, feature_views, train_backbone
from trainers.features import FeatureBank
from trainers.loop import EpochCallback
from trainers.provenance import trainer_code_version
from trainers.results import StageResult

log = logging.getLogger(__name__)

# Database.named_lock: a lock by name, and what to do while another holder has it (see there).
LockFactory = Callable[[str, Callable[[], bool] | None], AbstractContextManager]
ENTRY_FILES = ("model.pt", "features.pt", "stage1.json")
MANIFEST = "manifest.json"  # {file name: {"size": bytes, "sha256": hex digest}} of ENTRY_FILES
QUARANTINE = ".quarantine"  # damaged entries, kept for a look; a leading dot sets them apart from the keys
# Backbones (model and feature bank) a worker keeps in memory: a study that searches stage 1 alternates between a
# few of them, and each may hold a large feature bank.
MEMORY_ENTRIES = 2


def stage1_key(config: ExperimentConfig) -> str:
    determined_by = {
        "data": config.data.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
        "stage1": config.stage1.model_dump(mode="json"), "seed": config.seed,
        "feature_views": feature_views(config), "flip_features": config.eval.flip_tta,
        "feature_precision": config.eval.feature_precision,
        "code": trainer_code_version(),
    }
    return hashlib.sha256(json.dumps(determined_by, sort_keys=True).encode()).hexdigest()[:24]


def stage1_weights_path(artifact_dir: Path, key: str) -> Path:
    """The stage-1 state dict of an entry, for readers outside the cache (the model export)."""
    return artifact_dir / "stage1" / key / "model.pt"


@dataclass(frozen=True)
class CachedBackbone:
    backbone: Backbone
    key: str
    trained_here: bool  # False when it came from the cache


class Stage1Cache:
    def __init__(self, artifact_dir: Path, lock: LockFactory, runtime: Runtime,
                 meanwhile: Callable[[], bool] | None = None) -> None:
        """`meanwhile`: called while another worker trains a backbone this one waits for (a worker runs another
        trial then); it returns whether it did anything."""
        self.artifact_dir = artifact_dir
        self.root = artifact_dir / "stage1"
        self._lock = lock
        self._meanwhile = meanwhile
        self.runtime = runtime
        self._memory: OrderedDict[str, Backbone] = OrderedDict()

    def backbone_for(self, config: ExperimentConfig, on_epoch: EpochCallback | None = None) -> CachedBackbone:
        key = stage1_key(config)
        if key in self._memory:
            self._memory.move_to_end(key)
            return CachedBackbone(self._memory[key], key, trained_here=False)
        backbone = self._load_sound(key, config, quarantine=False)
        trained_here = backbone is None
        if backbone is None:
            backbone, trained_here = self._build(key, config, on_epoch)
        self._remember(key, backbone)
        return CachedBackbone(backbone, key, trained_here)

    def has(self, config: ExperimentConfig) -> bool:
        """True when the config's backbone is trained already (here or by another worker)."""
        key = stage1_key(config)
        return key in self._memory or (self._entry(key) / MANIFEST).exists()

    def _entry(self, key: str) -> Path:
        return self.root / key

    def _build(self, key: str, config: ExperimentConfig, on_epoch: EpochCallback | None) -> tuple[Backbone, bool]:
        # Whoever holds the lock trains; the others wait here (doing what `meanwhile` does), then find the
        # finished entry. A damaged entry is judged again under the lock: another worker may have rebuilt it
        # meanwhile, and a sound one stays.
        with self._lock(f"stage1:{key}", self._meanwhile):
            backbone = self._load_sound(key, config, quarantine=True)
            if backbone is not None:
                return backbone, False
            self._store(key, train_backbone(config, self.runtime, on_epoch))
        return self._load(self._entry(key), config), True

    def _load_sound(self, key: str, config: ExperimentConfig, *, quarantine: bool) -> Backbone | None:
        """The entry's backbone, or None when there is no entry or it is damaged (then moved aside if asked)."""
        entry = self._entry(key)
        if not entry.exists():
            return None
        problem = damage(entry)
        if problem is None:
            return self._load(entry, config)
        if quarantine:
            self._quarantine(entry, problem)
        return None

    def _store(self, key: str, backbone: Backbone) -> None:
        staging = self.root / f".staging-{key}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            torch.save(backbone.model.state_dict(), staging / "model.pt")
            backbone.features.save(staging / "features.pt")
            (staging / "stage1.json").write_text(backbone.stage1.model_dump_json())
            write_manifest(staging)  # last: a folder without a matching manifest is never read
            self._move_into_place(staging, self._entry(key))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _move_into_place(self, staging: Path, entry: Path) -> None:
        while True:
            try:
                staging.rename(entry)  # atomic on one filesystem: readers see all files or none
                return
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # Another writer finished first (our lock lapsed with its PostgreSQL session): keep its entry when it
            # is sound, since trials may be reading it; replace it only when it is damaged.
            problem = damage(entry)
            if problem is None:
                log.info("stage-1 cache entry %s was written by another worker meanwhile; kept it", entry)
                return
            self._quarantine(entry, problem)

    def _quarantine(self, entry: Path, problem: str) -> None:
        aside = self.root / QUARANTINE / f"{entry.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            entry.rename(aside)
        except FileNotFoundError:
            return  # another worker moved it aside first
        log.warning("stage-1 cache entry %s is damaged (%s); moved it to %s and rebuilding it", entry, problem,
                    aside)

    def _load(self, entry: Path, config: ExperimentConfig) -> Backbone:
        device = self.runtime.device
        data = load_dataset(config.data, self.runtime.data_roots)
        model = build_backbone_model(config, data, self.runtime)
        model.load_state_dict(torch.load(entry / "model.pt", map_location=device, weights_only=True))
        model.eval()
        return Backbone(model=model, data=data, rule=data.split_rule(),
                        features=FeatureBank.load(entry / "features.pt", device),
                        stage1=StageResult.model_validate_json((entry / "stage1.json").read_text()))

    def _remember(self, key: str, backbone: Backbone) -> None:
        self._memory[key] = backbone
        while len(self._memory) > MEMORY_ENTRIES:
            self._memory.popitem(last=False)


def write_manifest(folder: Path) -> None:
    manifest = {name: _fingerprint(folder / name) for name in ENTRY_FILES}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def damage(entry: Path) -> str | None:
    """What is wrong with an entry's files against its manifest, or None when every file matches it."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        for name in ENTRY_FILES:
            expected, path = manifest[name], entry / name
            size = path.stat().st_size
            if size != expected["size"]:
                return f"{path.name} has {size} bytes, its manifest says {expected['size']}"
            if _fingerprint(path)["sha256"] != expected["sha256"]:
                return f"{path.name} does not match its manifest's SHA-256"
    except FileNotFoundError as error:
        return f"{Path(error.filename or '?').name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable manifest ({type(error).__name__}: {error})"
    return None


def _fingerprint(path: Path) -> dict[str, int | str]:
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}
