"""Decode + augment throughput at 224 px: tailtune's streaming path against the papers' style, in one run.

    python benchmarks/image_pipeline.py [--images 240] [--workers 2] [--batch 64] [--rounds 3] [--data-root DIR]

Both read the same JPEGs (an ImageNet-LT-layout tree of 256-500 px photos generated into a temporary folder, or
the train/ folder of --data-root) with the same number of DataLoader worker processes and batch size, and deliver
normalised float batches of 3 x 224 x 224 in the main process:
- tailtune: torchvision.io decoding and RandomResizedCrop on uint8 tensors in the workers; flip and normalisation
  on the whole batch (trainers/batches.py's streaming path, with the CPU standing in for the device);
- reference: `torchvision.datasets.ImageFolder` + PIL `RandomResizedCrop(224)`, `RandomHorizontalFlip()`,
  `ToTensor()`, `Normalize()` in the workers, as the papers' ImageNet code.
Rounds interleave the two; medians. GPU decoding is not measured here (benchmarks/gpu_check.sh).
Ends with `decode_speedup_vs_reference: X` (reference seconds / tailtune seconds; > 1 means tailtune is faster).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks._common import interleaved, parse_args, table
from tests.trainers.fake_data import write_imagenet_lt_photos
from trainers.augment import normalize, random_crop_flip
from trainers.data.filelists import EVAL_RESIZE_RATIO, IMAGENET_MEAN, IMAGENET_STD
from trainers.data.images import is_image_file
from trainers.data.streaming import file_batches
from trainers.data.types import FileSplit, ImageView

SIZE = 224


def tailtune_pass(files: FileSplit, workers: int, batch: int, seed: int) -> int:
    view = ImageView(size=SIZE, resize=round(SIZE * EVAL_RESIZE_RATIO), channels=3)
    generator = torch.Generator().manual_seed(seed)
    seen = 0
    for images, _ in file_batches(files, view, batch_size=batch, order=None, random_resized_crop=True,
                                  workers=workers, timeout_s=300, seed=seed):
        flipped = random_crop_flip(images, 0, True, generator)
        seen += len(normalize(flipped, IMAGENET_MEAN, IMAGENET_STD, channels_last=False))
    return seen


def reference_pass(folder: Path, workers: int, batch: int, seed: int) -> int:
    transform = transforms.Compose([transforms.RandomResizedCrop(SIZE), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = DataLoader(datasets.ImageFolder(str(folder), transform=transform), batch_size=batch,
                        num_workers=workers, generator=torch.Generator().manual_seed(seed))
    return sum(len(images) for images, _ in loader)


def train_files(train_folder: Path) -> FileSplit:
    """The files ImageFolder reads, in its order: sorted class folders, sorted files."""
    class_folders = sorted(child for child in train_folder.iterdir() if child.is_dir())
    paths, labels = [], []
    for label, class_folder in enumerate(class_folders):
        files = sorted(file for file in class_folder.iterdir() if is_image_file(file))
        paths += files
        labels += [label] * len(files)
    return FileSplit(paths, torch.tensor(labels))


# --tiny: a run of seconds, made by the test suite
TINY = {"images": 24, "workers": 0, "batch": 8, "rounds": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=240, help="generated train images (8 classes, long-tailed)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes, both sides")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", type=Path, default=None, help="an ImageNet-LT root; its train/ is read")
    args = parse_args(parser, argv, tiny=TINY)
    torch.set_num_threads(1)  # the workers do the work; the main process only collates, as in training
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data_root
        if root is None:
            counts = [round(args.images * share) for share in (0.3, 0.2, 0.15, 0.11, 0.09, 0.07, 0.05, 0.03)]
            root = write_imagenet_lt_photos(Path(scratch), counts, val_per_class=0, test_per_class=0)
        files = train_files(root / "train")
        print(f"{len(files)} JPEGs under {root / 'train'}, {args.workers} workers, batch {args.batch}, "
              f"torch {torch.__version__}, {args.rounds} rounds (CPU shared with other jobs: figures are noisy)")
        seconds = interleaved({
            "tailtune streaming": lambda: tailtune_pass(files, args.workers, args.batch, seed=0),
            "ImageFolder + PIL": lambda: reference_pass(root / "train", args.workers, args.batch, seed=0)},
            repeats=args.rounds, warmup=1)
    print(table(["pipeline", "seconds per pass", "images/s"],
                [[name, value, f"{len(files) / value:.1f}"] for name, value in seconds.items()]))
    print(f"decode_speedup_vs_reference: {seconds['ImageFolder + PIL'] / seconds['tailtune streaming']:.2f}")


if __name__ == "__main__":
    main()
