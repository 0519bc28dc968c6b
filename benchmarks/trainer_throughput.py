"""Training throughput of a papers-style loop vs tailtune's loop: same model, same steps, measured in one run.

    python benchmarks/trainer_throughput.py [--steps 8] [--batch-sizes 64 128] [--repeats 2] [--num-workers 0]
                                            [--epochs 8] [--seeds 3] [--threads N] [--amp auto] [--compile auto]

ResNet-32 (CIFAR) at 32x32.
- reference: the authors' habit: a torchvision Dataset over uint8 HWC arrays with PIL RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize, a DataLoader (`--num-workers`), fp32, NCHW.
- tailtune: `trainers.loop.fit`: the data set is one uint8 tensor on the device, crop/flip are batched tensor
  ops (trainers/augment.py), channels_last; bf16 autocast and torch.compile where `--amp/--compile` (auto: on
  CUDA only) turn them on.
The variants alternate round by round (one warm-up round first). Achieved GFLOP/s counts one training step's
FLOPs with torch's FlopCounterMode; a 2048^2 fp32 matmul (`--gemm-size`) is timed in the same rounds. Then both
loops train `--epochs` epochs on scikit-learn's digits (all 1797, `--digits`, upscaled to 32 px, 3 channels, 80/20
split, crop only) from the same initial weights for each of `--seeds` seeds, and report balanced test accuracy side
by side.
Ends with `speedup_vs_reference: X` (tailtune img/s over reference img/s, median over the batch sizes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import add_threads_flag, apply_threads, interleaved, parse_args, table, timed
from trainers.augment import AugmentSpec
from trainers.config import RunOptions
from trainers.data.images import resize_images
from trainers.data.types import ImageSplit, LTDataset
from trainers.device import Runtime, resolve_runtime
from trainers.loop import SGDSettings, evaluate_all, fit
from trainers.metrics import per_class_accuracy
from trainers.models import LTModel, build_model

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CLASSES = 100
# ---------------------------------------------------------------------------------------------- reference loop
class PilDataset(Dataset):
    """The papers' data path: one uint8 HWC array per image, PIL transforms per image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
                 *, train: bool, flip: bool) -> None:
        self.images, self.labels = images, labels
        augment = [T.RandomCrop(32, padding=4), *([T.RandomHorizontalFlip()] if flip else [])] if train else []
        self.transform = T.Compose([*augment, T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class ReferenceTrainer:
    """SGD + momentum + weight decay, cosine LR stepped per epoch, fp32 NCHW, batches from a DataLoader."""

    def __init__(self, dataset: PilDataset, num_classes: int, batch_size: int, epochs: int, num_workers: int,
                 device: torch.device, seed: int = 0) -> None:
        torch.manual_seed(seed)  # the initial weights, then the loader's shuffles and the crops
        self.device = device
        self.model = build_model("resnet32-cifar", num_classes, 3, 32).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs)
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                 persistent_workers=num_workers > 0, pin_memory=device.type == "cuda")

    def epoch(self) -> None:
        self.model.train()
        for images, labels in self.loader:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            loss = F.cross_entropy(self.model(images), labels)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.schedule.step()
        synchronize(self.device)

    @torch.no_grad()
    def balanced_accuracy(self, dataset: PilDataset, num_classes: int) -> float:
        self.model.eval()
        logits = torch.cat([self.model(images.to(self.device)) for images, _ in DataLoader(dataset, batch_size=256)])
        return per_class_accuracy(logits, torch.from_numpy(dataset.labels), num_classes).nanmean().item()


# ---------------------------------------------------------------------------------------------- tailtune loop
class TailtuneTrainer:
    """`trainers.loop.fit` on the model built the way `trainers.experiment` builds it."""

    def __init__(self, data: LTDataset, batch_size: int, epochs: int, runtime: Runtime, seed: int = 0) -> None:
        torch.manual_seed(seed)  # the same initial weights as the reference's with this seed
        self.data, self.runtime, self.seed = data, runtime, seed
        memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
        self.model: LTModel = build_model("resnet32-cifar", data.num_classes, 3, 32).to(
            runtime.device, memory_format=memory_format)
        self.sgd = SGDSettings(epochs=epochs, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=batch_size)
        self.rounds = 0

    def train(self) -> None:
        self.rounds += 1
        fit(self.model, list(self.model.parameters()), self.data,
            lambda logits, _features, labels: F.cross_entropy(logits, labels), self.sgd, self.runtime,
            seed=self.seed + self.rounds, stage="benchmark")
        synchronize(self.runtime.device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def as_dataset(images_hwc: np.ndarray, labels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
               flip: bool) -> LTDataset:
    split = ImageSplit(torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))
    return LTDataset("benchmark", split, split, split, [str(k) for k in range(int(labels.max()) + 1)], mean, std,
                     AugmentSpec(crop_padding=4, horizontal_flip=flip))


# ---------------------------------------------------------------------------------------------- throughput
def step_flops(batch_size: int) -> int:
    """FLOPs of one training step (forward + backward), counted by torch on the CPU."""
    model = build_model("resnet32-cifar", CLASSES, 3, 32).train()
    images, labels = torch.randn(batch_size, 3, 32, 32), torch.randint(0, CLASSES, (batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), labels).backward()
    return counter.get_total_flops()


def gemm_round(size: int, device: torch.device) -> tuple[Callable[[], None], float]:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    repeats = 3 if device.type == "cpu" else 50

    def run() -> None:
        for _ in range(repeats):
            a @ b
        synchronize(device)

    return run, repeats * 2 * size ** 3


def throughput_row(batch_size: int, args: argparse.Namespace, runtime: Runtime) -> tuple[list[object], float]:
    count = batch_size * args.steps
    rng = np.random.default_rng(batch_size)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, count)
    reference = ReferenceTrainer(PilDataset(images, labels, CIFAR_MEAN, CIFAR_STD, train=True, flip=True), CLASSES,
                                 batch_size, epochs=1_000, num_workers=args.num_workers, device=runtime.device)
    tailtune = TailtuneTrainer(as_dataset(images, labels, CIFAR_MEAN, CIFAR_STD, flip=True), batch_size, 1, runtime)
    gemm, gemm_flops = gemm_round(args.gemm_size, runtime.device)
    times = interleaved({"reference": reference.epoch, "tailtune": tailtune.train, "gemm": gemm},
                        repeats=args.repeats, warmup=1)
    flops = step_flops(batch_size) * args.steps
    gemm_rate = gemm_flops / times["gemm"] / 1e9
    achieved = {name: flops / times[name] / 1e9 for name in ("reference", "tailtune")}
    speedup = times["reference"] / times["tailtune"]
    row = [batch_size, f"{count / times['reference']:.1f}", f"{count / times['tailtune']:.1f}", f"{speedup:.2f}x",
           f"{achieved['reference']:.1f}", f"{achieved['tailtune']:.1f}", f"{gemm_rate:.1f}",
           f"{achieved['tailtune'] / gemm_rate:.0%}", f"{flops / count / 1e9:.3f}"]
    return row, speedup


# ---------------------------------------------------------------------------------------------- accuracy
def digits_32px(count: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `count` of scikit-learn's 1797 digits (None: all), upscaled to 32 px RGB (uint8 HWC), a
    stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = torch.from_numpy(np.rint(digits.images[:count] * 255 / 16).astype(np.uint8)).unsqueeze(1)
    rgb = resize_images(gray, 32).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).contiguous().numpy()
    labels = digits.target[:count].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    test = np.zeros(len(labels), dtype=bool)
    for label in range(10):
        members = order[labels[order] == label]
        test[members[: len(members) // 5]] = True
    return rgb[~test], labels[~test], rgb[test], labels[test]


def accuracy_rows(epochs: int, seeds: int, num_workers: int, digits: int | None,
                  runtime: Runtime) -> list[list[object]]:
    """Balanced test accuracy of each loop after `epochs` epochs, per seed (a seed fixes the initial weights,
    which both loops share, and each loop's own shuffles and crops), with mean and standard deviation."""
    train_images, train_labels, test_images, test_labels = digits_32px(digits)
    print(f"\naccuracy after {epochs} epochs, digits at 32 px ({len(train_labels)} train / {len(test_labels)} "
          f"test, batch 64, lr 0.05 cosine, crop only), seeds 0..{seeds - 1}; loops alternate seed by seed")
    scaled = train_images.astype(np.float64) / 255
    mean, std = tuple(scaled.mean(axis=(0, 1, 2)).tolist()), tuple(scaled.std(axis=(0, 1, 2)).tolist())
    data = as_dataset(train_images, train_labels, mean, std, flip=False)
    test = ImageSplit(torch.from_numpy(test_images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(test_labels))
    accuracy: dict[str, list[float]] = {"reference": [], "tailtune": []}
    seconds: dict[str, list[float]] = {"reference": [], "tailtune": []}
    for seed in range(seeds):
        reference = ReferenceTrainer(PilDataset(train_images, train_labels, mean, std, train=True, flip=False), 10,
                                     64, epochs, num_workers, runtime.device, seed=seed)
        seconds["reference"].append(timed(lambda reference=reference: [reference.epoch() for _ in range(epochs)]))
        accuracy["reference"].append(reference.balanced_accuracy(
            PilDataset(test_images, test_labels, mean, std, train=False, flip=False), 10))
        tailtune = TailtuneTrainer(data, 64, epochs, runtime, seed=seed)
        seconds["tailtune"].append(timed(tailtune.train))
        accuracy["tailtune"].append(evaluate_all(tailtune.model, test, data, runtime))
    return [[name, " ".join(f"{a:.1f}" for a in accuracy[name]), f"{statistics.mean(accuracy[name]):.1f}",
             f"{statistics.stdev(accuracy[name]) if seeds > 1 else 0.0:.1f}", f"{statistics.mean(seconds[name]):.1f}"]
            for name in accuracy]


# --tiny: a run of seconds, made by the test suite
TINY = {"steps": 1, "batch_sizes": [8], "repeats": 1, "epochs": 1, "seeds": 1, "digits": 100, "gemm_size": 256,
        "threads": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed round")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds per variant (after one warm-up)")
    parser.add_argument("--num-workers", type=int, default=0, help="the reference DataLoader's worker processes")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the accuracy check (0 skips it)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per loop in the accuracy check")
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the fp32 matmul timed as the peak")
    parser.add_argument("--digits", type=int, default=None, help="digits in the accuracy check (default: all 1797)")
    parser.add_argument("--amp", choices=["auto", "off", "bf16"], default="auto")
    parser.add_argument("--compile", choices=["auto", "off", "on"], default="auto")
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny=TINY)
    threads = apply_threads(args.threads)
    runtime = resolve_runtime(RunOptions(amp=args.amp, compile=args.compile))
    print(f"ResNet-32 (CIFAR), 32x32, {args.steps} steps per round, {args.repeats} rounds, device "
          f"{runtime.device}, torch {torch.__version__}, {threads} threads; tailtune: channels_last="
          f"{runtime.channels_last}, autocast={runtime.autocast_dtype}, compile={runtime.compile}; reference: "
          f"fp32 NCHW, DataLoader num_workers={args.num_workers}")
    rows, speedups = [], []
    for batch_size in args.batch_sizes:
        row, speedup = throughput_row(batch_size, args, runtime)
        rows.append(row)
        speedups.append(speedup)
    print(table(["batch", "ref img/s", "tailtune img/s", "speedup", "ref GFLOP/s", "tailtune GFLOP/s",
                 "GEMM GFLOP/s", "tailtune/GEMM", "GFLOP/img"], rows))
    if args.epochs > 0:
        rows = accuracy_rows(args.epochs, args.seeds, args.num_workers, args.digits, runtime)
        print(table(["loop", "balanced test acc % per seed", "mean", "sd", "train s (mean)"], rows))
    print(f"speedup_vs_reference: {statistics.median(speedups):.2f}")


if __name__ == "__main__":
    main()
