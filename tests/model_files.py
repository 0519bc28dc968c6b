"""Helpers for tests of exported models: a folder data set that a 2-epoch small CNN classifies only partly
(class colours buried in noise, so per-class accuracies differ and one changed prediction shows), a study run
by an in-process worker, and per-class accuracy of a model file on a folder's test split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database
from trainers.dataset_facts import crop_padding_for
from trainers.exported import load_model_file

TRAIN_COUNTS = {"ant": 40, "bee": 20, "cat": 10, "dog": 5}
TEST_PER_CLASS = 25
_COLOURS = {"ant": (40, 0, 0), "bee": (0, 40, 0), "cat": (0, 0, 40), "dog": (30, 30, 0)}
IMAGE_SIZE = 12
# Stage 1 pinned (schedule, augmentation, model) but for what a test fixes, so trials share a backbone.
QUICK = {"stage1.epochs": 3, "stage1.lr": 0.01, "data.flip": False, "data.crop_padding": crop_padding_for(IMAGE_SIZE),
         "model.arch": "small-cnn"}


def write_noisy_folder(root: Path, seed: int = 0) -> Path:
    """root/{train,test}/<class>/NNN.png, 14 x 12 RGB: a class colour, shifted per image (std 25, so classes
    overlap) and per pixel (std 40, so the image and its mirror give different features)."""
    rng = np.random.default_rng(seed)
    for split, counts in (("train", TRAIN_COUNTS), ("test", dict.fromkeys(TRAIN_COUNTS, TEST_PER_CLASS))):
        for name, count in counts.items():
            for number in range(count):
                noise = rng.normal(0, 25, (1, 1, 3)) + rng.normal(0, 40, (14, 12, 3))
                pixels = np.clip(110 + np.array(_COLOURS[name]) + noise, 0, 255).astype(np.uint8)
                path = root / split / name / f"{number:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels, mode="RGB").save(path)
    return root


def run_folder_study(db: Database, artifact_dir: Path, folder: Path, name: str, method: str,
                     fixed: dict[str, Any], n_trials: int = 3) -> int:
    """Creates and runs the study with one in-process worker (batching stage-2 trials); returns its id."""
    spec = parse_spec({"name": name, "method": method, "dataset": f"folder:{folder}", "image_size": IMAGE_SIZE,
                       "n_trials": n_trials, "sampler": "random", "fixed": QUICK | fixed, "confirm": None})
    record = registry.create_study(db, spec=spec)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    run_worker(db, study_names=[name], settings=settings, artifact_dir=artifact_dir)
    return record.id


def predicted_per_class_accuracy(model_file: Path, test_dir: Path) -> list[float]:
    """Percent of each class folder's images (class order of the model) that the model labels with its name."""
    model = load_model_file(model_file, torch.device("cpu"))
    files = sorted(path for path in test_dir.rglob("*.png"))
    labels = model.logits(model.input.read(files)).argmax(-1).tolist()
    hits = Counter(file.parent.name for file, label in zip(files, labels, strict=True)
                   if model.class_names[label] == file.parent.name)
    totals = Counter(file.parent.name for file in files)
    return [100 * hits[name] / totals[name] for name in model.class_names]
