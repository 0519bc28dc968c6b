"""Small on-disk data sets in the real layouts, for tests of anything that loads data.

- `write_fake_cifar`: torchvision's CIFAR python version (pickled batches with bytes keys, as the real files).
- `write_fake_image_folder`: a folder:PATH tree of PNG and JPEG files of mixed sizes and modes.
- `write_fake_imagenet_lt` / `write_fake_inat2018`: images plus the standard list files.
- `write_imagenet_lt_photos`: the ImageNet-LT layout at the papers' scale of image (JPEGs of 256-500 px, val
  images in the train class folders, test images in one flat folder), long-tailed; also used by
  benchmarks/image_pipeline.py and the issue's acceptance run.
Every image file is filled with its class's gray level `class_level(label)` plus a little noise, so a test can
tell an image's class from its mean pixel value even after resizing and JPEG compression.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_SIDE = 32
_LEVEL_STEP = 45  # gray levels 20, 65, 110, 155, 200, 245: six classes stay apart after JPEG
_NOISE = 6


@dataclass(frozen=True)
class FakeCifar:
    """What `write_fake_cifar` wrote: images N x 3 x 32 x 32 uint8 and labels, in file order."""

    folder: Path
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def write_fake_cifar(root: Path, num_classes: int = 100, per_class_train: int = 30, per_class_test: int = 2,
                     seed: int = 0) -> FakeCifar:
    """Write random CIFAR-10 (num_classes=10) or CIFAR-100 files under root, every label present.

    Labels come in a shuffled order, so "the first n_k images of class k in file order" is a real choice.
    CIFAR-10 training images are spread over data_batch_1..5 like the real files.
    """
    rng = np.random.default_rng(seed)
    train_images, train_labels = _random_cifar_images(rng, num_classes, per_class_train)
    test_images, test_labels = _random_cifar_images(rng, num_classes, per_class_test)
    class_names = [f"class_{index}" for index in range(num_classes)]
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for number, (images, labels) in enumerate(zip(np.array_split(train_images, 5),
                                                      np.array_split(train_labels, 5), strict=True), start=1):
            _pickle(folder / f"data_batch_{number}", _cifar_batch(images, labels, b"labels"))
        _pickle(folder / "test_batch", _cifar_batch(test_images, test_labels, b"labels"))
        _pickle(folder / "batches.meta", {b"label_names": [name.encode() for name in class_names],
                                          b"num_cases_per_batch": len(train_labels) // 5, b"num_vis": 3072})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        _pickle(folder / "train", _cifar_batch(train_images, train_labels, b"fine_labels"))
        _pickle(folder / "test", _cifar_batch(test_images, test_labels, b"fine_labels"))
        _pickle(folder / "meta", {b"fine_label_names": [name.encode() for name in class_names],
                                  b"coarse_label_names": [b"superclass"]})
    return FakeCifar(folder, train_images, train_labels, test_images, test_labels, class_names)


def class_level(label: int) -> int:
    """The gray level every fake image of class `label` is filled with (labels 0..5)."""
    return 20 + _LEVEL_STEP * label


def write_image(path: Path, label: int, size: tuple[int, int], mode: str, rng: np.random.Generator) -> Path:
    """One PNG or JPEG (by suffix) of width x height `size`, mode "L" or "RGB", at the class's gray level."""
    channels = 3 if mode == "RGB" else 1
    noise = rng.integers(-_NOISE, _NOISE + 1, size=(size[1], size[0], channels))
    pixels = np.clip(class_level(label) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(path)
    return path


def write_fake_image_folder(root: Path, train_counts: dict[str, int], test_counts: dict[str, int],
                            val_counts: dict[str, int] | None = None, modes: tuple[str, ...] = ("RGB", "L"),
                            seed: int = 0) -> Path:
    """A folder:PATH tree root/{train,test[,val]}/<class>/NNN.(png|jpg|jpeg).

    Class c's images use gray level `class_level(index)` with index the position of c in sorted(train_counts).
    Files cycle through suffixes, sizes (wider and taller than square) and `modes`.
    """
    rng = np.random.default_rng(seed)
    label_of = {name: index for index, name in enumerate(sorted(train_counts))}
    splits = {"train": train_counts, "test": test_counts, **({"val": val_counts} if val_counts else {})}
    suffixes, sizes = (".png", ".jpg", ".jpeg"), ((20, 14), (9, 12), (16, 16))
    for split, counts in splits.items():
        for name, count in counts.items():
            for number in range(count):
                path = root / split / name / f"{number:03d}{suffixes[number % 3]}"
                write_image(path, label_of.get(name, 0), sizes[number % 3], modes[number % len(modes)], rng)
    return root


def write_fake_imagenet_lt(root: Path, train_counts: list[int], val_per_class: int, test_per_class: int,
                           seed: int = 0) -> Path:
    """ImageNet_LT_{train,val,test}.txt under root, naming JPEGs under root/<split>/nXXXX/."""
    rng = np.random.default_rng(seed)
    num_classes = len(train_counts)
    _write_list(root, "ImageNet_LT_train.txt", "train", train_counts, rng)
    _write_list(root, "ImageNet_LT_val.txt", "val", [val_per_class] * num_classes, rng)
    _write_list(root, "ImageNet_LT_test.txt", "test", [test_per_class] * num_classes, rng)
    return root


def write_fake_inat2018(root: Path, train_counts: list[int], val_per_class: int, seed: int = 0) -> Path:
    """iNaturalist18_{train,val}.txt under root, naming JPEGs under root/train_val2018/<split>/<label>/."""
    rng = np.random.default_rng(seed)
    _write_list(root, "iNaturalist18_train.txt", "train_val2018/train", train_counts, rng)
    _write_list(root, "iNaturalist18_val.txt", "train_val2018/val", [val_per_class] * len(train_counts), rng)
    return root


def _write_list(root: Path, list_name: str, image_dir: str, counts: list[int],
                rng: np.random.Generator) -> None:
    lines = []
    for label, count in enumerate(counts):
        for number in range(count):
            relative = f"{image_dir}/n{label:04d}/{label}_{number}.jpg"
            write_image(root / relative, label, ((24, 18), (17, 30))[number % 2], "RGB", rng)
            lines.append(f"{relative} {label}")
    (root / list_name).write_text("\n".join(lines) + "\n")


def _random_cifar_images(rng: np.random.Generator, num_classes: int,
                         per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class))
    images = rng.integers(0, 256, size=(len(labels), 3, CIFAR_SIDE, CIFAR_SIDE), dtype=np.uint8)
    return images, labels


def _cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes) -> dict[bytes, object]:
    # The real rows are 3072 bytes: the red plane, then green, then blue, each row-major 32 x 32.
    filenames = [f"{index}.png".encode() for index in range(len(images))]
    return {b"batch_label": b"fake batch", b"data": images.reshape(len(images), -1),
            label_key: labels.tolist(), b"filenames": filenames}


def _pickle(path: Path, content: dict[bytes, object]) -> None:
    with path.open("wb") as file:
        pickle.dump(content, file, protocol=2)


def write_imagenet_lt_photos(root: Path, train_counts: list[int], val_per_class: int, test_per_class: int,
                             seed: int = 0) -> Path:
    """ImageNet_LT_{train,val,test}.txt under root as OLTR's lists lay them out: train and val JPEGs under
    train/nXXXX/, test JPEGs in the flat folder val/. Each image has its own side lengths in [256, 500] and
    smooth random content tinted by its class's colour, so a small network can learn the classes."""
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, count in enumerate(train_counts):
        tint = rng.integers(40, 216, size=3)
        for split, number in [("train", n) for n in range(count)] + \
                [("val", n) for n in range(val_per_class)] + [("test", n) for n in range(test_per_class)]:
            folder = f"val/ILSVRC2012_val_{label:04d}" if split == "test" else f"train/n{label:04d}/n{label:04d}"
            relative = f"{folder}_{split}{number}.JPEG"
            _write_photo(root / relative, tint, rng)
            lists[split].append(f"{relative} {label}")
    for split, lines in lists.items():
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def _write_photo(path: Path, tint: np.ndarray, rng: np.random.Generator) -> None:
    width, height = (int(side) for side in rng.integers(256, 501, size=2))
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    pixels = np.clip(0.5 * texture + 0.5 * tint, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
