"""Stage-1 training images/s of one backbone, image size, precision and decoding choice (run by gpu_check.sh).

    python benchmarks/stage1_speed.py --arch resnext50 --size 224 --amp bf16 --decode device [--images 512]
                                      [--batch 64] [--epochs 2] [--workers 8] [--device auto]

At 32 px the images are random uint8 tensors in memory (the CIFAR path); above 32 px they are JPEGs of 256-500 px
generated into a temporary ImageNet-LT tree and streamed (RandomResizedCrop + flip), decoded by `--workers` loader
processes (`--decode workers`) or batched on the device (`--decode device`, nvJPEG on CUDA). The first epoch warms
up (cuDNN autotuning, worker start); the others are timed, with the device synchronised.
Ends with `stage1_images_per_s: X`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import torch
import torch.nn.functional as F

from benchmarks._common import parse_args
from tests.trainers.fake_data import write_imagenet_lt_photos
from trainers.augment import AugmentSpec
from trainers.config import DataConfig, RunOptions
from trainers.data import load_dataset
from trainers.data.types import ImageSplit, LTDataset
from trainers.device import Runtime, resolve_runtime
from trainers.loop import SGDSettings, fit
from trainers.models import build_model

CLASSES = 8


def in_memory_data(images: int, size: int) -> LTDataset:
    generator = torch.Generator().manual_seed(0)
    split = ImageSplit(torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8, generator=generator),
                       torch.arange(images) % CLASSES)
    return LTDataset("benchmark", split, split, split, [str(k) for k in range(CLASSES)], (0.5,) * 3, (0.25,) * 3,
                     AugmentSpec(crop_padding=size // 8, horizontal_flip=True))


def streamed_data(images: int, size: int, scratch: Path) -> LTDataset:
    counts = [max(1, round(images * share)) for share in (0.3, 0.2, 0.15, 0.11, 0.09, 0.07, 0.05, 0.03)]
    write_imagenet_lt_photos(scratch, counts, val_per_class=1, test_per_class=1)
    return load_dataset(DataConfig(name="imagenet-lt", root=scratch, image_size=size, pipeline="streaming"))


def images_per_s(data: LTDataset, arch: str, batch: int, epochs: int, runtime: Runtime) -> float:
    torch.manual_seed(0)
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = build_model(arch, data.num_classes, 3, data.image_size).to(runtime.device, memory_format=memory_format)

    def train(epoch_count: int) -> None:
        fit(model, list(model.parameters()), data, lambda logits, _f, labels: F.cross_entropy(logits, labels),
            SGDSettings(epoch_count, 0.01, 0.9, 5e-4, batch), runtime, seed=0, stage="benchmark")
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)

    train(1)
    started = time.perf_counter()
    train(epochs)
    return len(data.train) * epochs / (time.perf_counter() - started)


# --tiny: a run of seconds, made by the test suite
TINY = {"arch": "small-cnn", "size": 8, "images": 32, "batch": 16, "epochs": 1, "workers": 0, "device": "cpu"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet34-cifar")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--amp", choices=["off", "bf16"], default="off")
    parser.add_argument("--decode", choices=["workers", "device"], default="workers")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help=RunOptions.model_fields["loader_workers"].description)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parse_args(parser, argv, tiny=TINY)
    runtime = resolve_runtime(RunOptions(device=args.device, amp=args.amp, decode=args.decode, compile="off",
                                         loader_workers=args.workers))
    with tempfile.TemporaryDirectory() as scratch:
        data = in_memory_data(args.images, args.size) if args.size <= 32 else \
            streamed_data(args.images, args.size, Path(scratch))
        rate = images_per_s(data, args.arch, args.batch, args.epochs, runtime)
    print(f"{args.arch} {args.size} px, {data.pipeline}, amp {args.amp}, decode {args.decode}, "
          f"{runtime.device}, {len(data.train)} images x {args.epochs} epochs")
    print(f"stage1_images_per_s: {rate:.1f}")


if __name__ == "__main__":
    main()
