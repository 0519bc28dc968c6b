"""The panel of long-tailed folder data sets that tailtune's defaults for new data are checked on.

    python benchmarks/panel.py OUT_DIR        # writes OUT_DIR/<set>/{train,val,test}/<class>/NNN.png

Three sets of different kinds, built offline from what this machine has, each with 10 classes, train counts
round(n_max * IF^(-k/9)) for class k (IF 20: n_max .. n_max/20), balanced val and test folders, 16 x 16 px:

- digits16 (handwriting, gray): scikit-learn's bundled digits (UCI ML hand-written digits, CC BY 4.0), 8 x 8
  upscaled.
- glyphs (rendered type, gray): letters in the 22 DejaVu fonts `fc-list` shows (Bitstream Vera / DejaVu font
  licence, free to use and redistribute), randomly rotated, scaled, shifted, blurred, with noise.
- textures (photo patches, RGB): scikit-learn's sample images china.jpg and flower.jpg (CC BY 2.0, by
  danielbuechele and vultilion on Flickr), each cut into 5 horizontal bands, one class per band; train, val and
  test patches come from disjoint column ranges of the band.

MNIST, Fashion-MNIST and clip-art collections are kept out: they are set aside to check the defaults on data no
one tuned for. Every set is deterministic in its seed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIDE = 16
CLASSES = 10
IMBALANCE = 20
VAL_PER_CLASS, TEST_PER_CLASS = 20, 40
LETTERS = "ABCDEGHKRS"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def train_counts(n_max: int) -> list[int]:
    return [round(n_max * IMBALANCE ** (-k / (CLASSES - 1))) for k in range(CLASSES)]


def _save(root: Path, split: str, label: int, index: int, image: Image.Image) -> None:
    folder = root / split / f"c{label}"
    folder.mkdir(parents=True, exist_ok=True)
    image.resize((SIDE, SIDE), Image.BILINEAR).save(folder / f"{index:03d}.png")


def _split_sizes(n_max: int) -> list[tuple[str, list[int]]]:
    return [("train", train_counts(n_max)), ("val", [VAL_PER_CLASS] * CLASSES),
            ("test", [TEST_PER_CLASS] * CLASSES)]


# ---------------------------------------------------------------------------------------------- digits16
def write_digits(root: Path, seed: int = 0, n_max: int = 80) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(CLASSES):
        members = rng.permutation(digits.images[digits.target == label])
        start = 0
        for split, counts in _split_sizes(n_max):
            for index, pixels in enumerate(members[start:start + counts[label]]):
                _save(root, split, label, index, Image.fromarray(np.rint(pixels * 255 / 16).astype(np.uint8)))
            start += counts[label]
    return root


# ---------------------------------------------------------------------------------------------- glyphs
def _glyph(letter: str, rng: np.random.Generator, fonts: list[Path]) -> Image.Image:
    canvas = Image.new("L", (32, 32), 0)
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(rng.integers(16, 26)))
    ImageDraw.Draw(canvas).text((16 + rng.normal(0, 2), 16 + rng.normal(0, 2)), letter, fill=255, font=font,
                                anchor="mm")
    canvas = canvas.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR)
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    noisy = np.asarray(canvas, dtype=np.float64) + rng.normal(0, 25, (32, 32))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_glyphs(root: Path, seed: int = 0, n_max: int = 80) -> Path:
    fonts = sorted(FONT_DIR.glob("DejaVu*.ttf"))
    if not fonts:
        raise SystemExit(f"no DejaVu fonts under {FONT_DIR}; install fonts-dejavu-core")
    rng = np.random.default_rng(seed)
    for split, counts in _split_sizes(n_max):
        for label, count in enumerate(counts):
            for index in range(count):
                _save(root, split, label, index, _glyph(LETTERS[label], rng, fonts))
    return root


# ---------------------------------------------------------------------------------------------- textures
# Disjoint column ranges of each band (fractions of the image width) per split, so no test patch overlaps a
# train patch.
_COLUMNS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}
_PATCH = 32  # pixels cut from the 427 x 640 photo, then resized to SIDE


def write_textures(root: Path, seed: int = 0, n_max: int = 80) -> Path:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    bands = CLASSES // len(photos)
    rng = np.random.default_rng(seed)
    for split, counts in _split_sizes(n_max):
        for label, count in enumerate(counts):
            photo = photos[label // bands]
            height, width = photo.shape[:2]
            top, bottom = (label % bands) * height // bands, (label % bands + 1) * height // bands
            left, right = (int(f * width) for f in _COLUMNS[split])
            for index in range(count):
                y = int(rng.integers(top, bottom - _PATCH))
                x = int(rng.integers(left, right - _PATCH))
                _save(root, split, label, index, Image.fromarray(photo[y:y + _PATCH, x:x + _PATCH]))
    return root


PANEL: dict[str, Callable[..., Path]] = {"digits16": write_digits, "glyphs": write_glyphs,
                                            "textures": write_textures}


def write_panel(out_dir: Path) -> dict[str, Path]:
    return {name: write(out_dir / name) for name, write in PANEL.items()}


if __name__ == "__main__":
    for name, path in write_panel(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
