"""Training throughput of a papers-style loop vs tailtune's loop, same model, same steps, one run.

    python benchmarks/trainer_throughput.py [--steps 15] [--batch-sizes 64 128] [--repeats 2]

ResNet-32 (CIFAR) at 32x32. Reference: torchvision Dataset over uint8 HWC arrays, PIL RandomCrop(32, padding=4)
+ flip + ToTensor + Normalize, DataLoader, fp32 NCHW, as the authors' code. tailtune: `trainers.loop.fit` with the
data as one uint8 tensor on the device, crop/flip as batched tensor ops, channels_last (bf16 and torch.compile
only on CUDA). Also achieved GFLOP/s (FLOPs of one step counted by torch's FlopCounterMode) against a 2048^2
fp32 matmul measured in the same run. Ends with `speedup_vs_reference: X` (median over batch sizes).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import interleaved, timed
from trainers.config import RunOptions
from trainers.data.types import AugmentSpec, ImageSplit, LTDataset
from trainers.device import resolve_runtime
from trainers.loop import SGDSettings, fit
from trainers.models import build_model

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class _PilCifar(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def reference_epoch(images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
    torch.manual_seed(0)
    model = build_model("resnet32-cifar", 100, 3, 32).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-3)
    for batch, target in DataLoader(_PilCifar(images, labels), batch_size=batch_size, shuffle=True):
        loss = F.cross_entropy(model(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def tailtune_epoch(data: LTDataset, batch_size: int) -> None:
    runtime = resolve_runtime(RunOptions(device="auto"))
    torch.manual_seed(0)
    model = build_model("resnet32-cifar", 100, 3, 32).to(runtime.device, memory_format=torch.channels_last)
    fit(model, list(model.parameters()), data, lambda logits, _f, labels: F.cross_entropy(logits, labels),
        SGDSettings(epochs=1, lr=0.01, momentum=0.9, weight_decay=5e-3, batch_size=batch_size), runtime,
        seed=0, stage="benchmark")


def step_flops(batch_size: int) -> int:
    model = build_model("resnet32-cifar", 100, 3, 32).train()
    images, labels = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 100, (batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), labels).backward()
    return counter.get_total_flops()


def gemm_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = statistics.median(timed(lambda: a @ b) for _ in range(5))
    return 2 * 2048 ** 3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"ResNet-32 (CIFAR), {args.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {resolve_runtime(RunOptions()).device}")
    print(f"{'batch':>5} {'reference img/s':>16} {'tailtune img/s':>15} {'speedup':>8} {'tailtune GFLOP/s':>17} "
          f"{'% of GEMM':>10}")
    speedups = []
    for batch_size in args.batch_sizes:
        count = batch_size * args.steps
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 100, count)
        tensor_images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        split = ImageSplit(tensor_images, torch.from_numpy(labels))
        data = LTDataset("synthetic", split, split, split, [str(k) for k in range(100)], MEAN, STD,
                         AugmentSpec(crop_padding=4, horizontal_flip=True))
        times = interleaved({"reference": lambda: reference_epoch(images, labels, batch_size),  # noqa: B023
                             "tailtune": lambda: tailtune_epoch(data, batch_size)},  # noqa: B023
                            repeats=args.repeats)
        gemm = gemm_gflops()
        achieved = step_flops(batch_size) * args.steps / times["tailtune"] / 1e9
        speedups.append(times["reference"] / times["tailtune"])
        print(f"{batch_size:>5} {count / times['reference']:>16.1f} {count / times['tailtune']:>15.1f} "
              f"{speedups[-1]:>7.2f}x {achieved:>17.1f} {achieved / gemm:>9.0%}   (GEMM {gemm:.0f} GFLOP/s)")
    print(f"speedup_vs_reference: {statistics.median(speedups):.2f}")


if __name__ == "__main__":
    main()
