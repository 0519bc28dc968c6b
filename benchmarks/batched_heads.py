"""K stage-2 configurations trained in one batched pass vs K separate runs, on one feature bank.

    python benchmarks/batched_heads.py [--configs 16] [--samples 10000] [--classes 100] [--epochs 10]

Ends with `batched_speedup: X` (separate time / batched time) after checking both give the same weights.
"""

from __future__ import annotations

import argparse
import random

import torch

from benchmarks._common import interleaved, synthetic_bank
from trainers.config import RetrainConfig
from trainers.heads import train_heads


def configs(count: int, epochs: int) -> list[RetrainConfig]:
    """A spread like a study's: CB/CE/BCE/LOS losses, lambda_2 and MaxNorm radius across decades."""
    rng = random.Random(0)
    losses = ["cb", "ce", "cb-bce", "los"]
    return [RetrainConfig(loss=losses[i % 4], weight_decay=10 ** rng.uniform(-4, 0),
                          maxnorm="relative" if i % 3 else "none", maxnorm_thresh=rng.random(),
                          over_smoothing=rng.uniform(0.5, 0.99), epochs=epochs) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bank, head, counts = synthetic_bank(args.samples, 512, args.classes, views=4)
    grid = configs(args.configs, args.epochs)

    batched = train_heads(bank, head, grid, counts, seed=0)
    separate = [train_heads(bank, head, [config], counts, seed=0)[0] for config in grid]
    worst = max((b.weight - s.weight).abs().max().item() for b, s in zip(batched, separate, strict=True))
    assert worst < 1e-4, f"batched and separate heads differ by {worst}"

    times = interleaved({
        "separate": lambda: [train_heads(bank, head, [config], counts, seed=0) for config in grid],
        "batched": lambda: train_heads(bank, head, grid, counts, seed=0),
    }, repeats=args.repeats)
    print(f"{args.configs} configs x {args.epochs} epochs on {len(bank.train_labels)} x 512 features, "
          f"{args.classes} classes, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'variant':<10} {'total s':>9} {'s/config':>9}")
    for name, seconds in times.items():
        print(f"{name:<10} {seconds:>9.3f} {seconds / args.configs:>9.4f}")
    print(f"max |batched - separate| weight difference: {worst:.2e}")
    print(f"batched_speedup: {times['separate'] / times['batched']:.2f}")


if __name__ == "__main__":
    main()
