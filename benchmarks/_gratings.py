"""A generated folder data set for benchmarks: 10 classes of coloured sinusoidal gratings (a class is an
orientation and a frequency; phase, contrast, colour and noise vary per image), 16 px PNGs, long-tailed train
counts 100 .. 5 (IF 20), 20 val and 50 test images per class. A mirror turns some orientations into others, so
flips stay off (the folder default)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from trainers.dataset_facts import lt_counts

GRATINGS_SIZE = 16
GRATINGS_CLASSES = 10


def write_gratings_folder(root: Path, seed: int = 0) -> Path:
    """train/ (IF 20, 100 .. 5 per class), val/ (20 per class) and test/ (50 per class) of class-specific
    gratings; returns root."""
    rng = np.random.default_rng(seed)
    train_counts = lt_counts(100, 20, GRATINGS_CLASSES, "round")
    for split, counts in (("train", train_counts), ("val", [20] * GRATINGS_CLASSES), ("test", [50] * GRATINGS_CLASSES)):
        for label, count in enumerate(counts):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                Image.fromarray(_grating(label, rng)).save(folder / f"{number}.png")
    return root


def _grating(label: int, rng: np.random.Generator) -> np.ndarray:
    """Orientation from the class (36 degrees apart over two frequencies), random phase, colour and noise."""
    angle = math.pi * (label % 5) / 5 + rng.normal(0, 0.08)
    frequency = (0.35 if label < 5 else 0.7) * rng.uniform(0.9, 1.1)
    y, x = np.mgrid[0:GRATINGS_SIZE, 0:GRATINGS_SIZE]
    wave = np.sin(frequency * (x * math.cos(angle) + y * math.sin(angle)) + rng.uniform(0, 2 * math.pi))
    colour = rng.uniform(0.3, 1.0, size=3)
    noise = rng.normal(0, 0.15, (GRATINGS_SIZE, GRATINGS_SIZE, 3))
    image = 0.5 + 0.5 * rng.uniform(0.4, 1.0) * wave[..., None] * colour + noise
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)
