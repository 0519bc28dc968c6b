"""K stage-2 configurations trained in one batched pass vs K separate runs on one feature bank, in one run.

    python benchmarks/batched_heads.py [--configs 16] [--samples 4000] [--classes 100] [--dim 512] [--epochs 10]
                                       [--repeats 3] [--threads N]

The configurations spread like a study's (CE / CB / CB-BCE / LOS, lambda_2 across decades, MaxNorm on and off).
Two banks: the one the flags describe (default CIFAR-100-LT-like: 512-d features, 100 classes, IF 100, 4 views)
and a digits-lt-like one (128-d, 10 classes, ~350 samples). Before timing, the script checks that every batched
head equals its separate run. The variants alternate round by round (one warm-up round first).
Ends with `batched_speedup: X` (separate time / batched time on the flags' bank).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import torch

from benchmarks._common import add_threads_flag, apply_threads, interleaved, parse_args, table
from trainers.config import RetrainConfig
from trainers.features import FeatureBank
from trainers.heads import Head, train_heads


def synthetic_bank(samples: int, dim: int, classes: int, views: int,
                   seed: int = 0) -> tuple[FeatureBank, Head, list[int]]:
    """Features shaped like a CIFAR-100-LT backbone's (N x d, K classes, exponential counts, IF 100)."""
    generator = torch.Generator().manual_seed(seed)
    counts = [max(1, round(samples * 0.1 * (0.01 ** (k / (classes - 1))))) for k in range(classes)]
    labels = torch.repeat_interleave(torch.arange(classes), torch.tensor(counts))
    centres = torch.randn(classes, dim, generator=generator)
    train = centres[labels] + torch.randn(views, len(labels), dim, generator=generator)
    held_out_labels = torch.arange(classes).repeat(10)
    held_out = centres[held_out_labels] + torch.randn(len(held_out_labels), dim, generator=generator)
    bank = FeatureBank(train_views=train, train_plain=train[0], train_labels=labels, val=held_out,
                       val_flipped=held_out, val_labels=held_out_labels, test=held_out, test_flipped=held_out,
                       test_labels=held_out_labels, fdr_train=0.0, fdr_test=0.0)
    head = Head(0.05 * torch.randn(classes, dim, generator=generator), torch.zeros(classes))
    return bank, head, counts


def study_like_configs(count: int, epochs: int) -> list[RetrainConfig]:
    rng = random.Random(0)
    losses = ["cb", "ce", "cb-bce", "los"]
    return [RetrainConfig(loss=losses[i % 4], weight_decay=10 ** rng.uniform(-4, 0),
                          maxnorm="relative" if i % 3 else "none", maxnorm_thresh=rng.random(),
                          over_smoothing=rng.uniform(0.5, 0.99), epochs=epochs) for i in range(count)]


def largest_difference(bank: FeatureBank, head: Head, configs: list[RetrainConfig], counts: list[int]) -> float:
    batched = train_heads(bank, head, configs, counts, seed=0)
    separate = [train_heads(bank, head, [config], counts, seed=0)[0] for config in configs]
    return max(max((b.weight - s.weight).abs().max().item(), (b.bias - s.bias).abs().max().item())
               for b, s in zip(batched, separate, strict=True))


def compare(label: str, bank: FeatureBank, head: Head, counts: list[int], configs: list[RetrainConfig],
            repeats: int) -> tuple[list[object], float]:
    worst = largest_difference(bank, head, configs, counts)
    assert worst < 1e-5, f"{label}: batched and separate heads differ by {worst}"
    times = interleaved({
        "separate": lambda: [train_heads(bank, head, [config], counts, seed=0) for config in configs],
        "batched": lambda: train_heads(bank, head, configs, counts, seed=0),
    }, repeats=repeats, warmup=1)
    speedup = times["separate"] / times["batched"]
    shape = f"{len(bank.train_labels)} x {bank.train_views.shape[-1]}, {head.weight.shape[0]} classes"
    row = [label, shape, times["separate"], times["batched"], f"{1000 * times['separate'] / len(configs):.1f}",
           f"{1000 * times['batched'] / len(configs):.1f}", f"{speedup:.2f}x", f"{worst:.1e}"]
    return row, speedup


# --tiny: a run of seconds, made by the test suite
TINY = {"configs": 3, "samples": 300, "classes": 5, "dim": 8, "epochs": 2, "repeats": 1, "threads": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4_000, help="sets the head class's count (IF 100)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny=TINY)
    threads = apply_threads(args.threads)
    configs = study_like_configs(args.configs, args.epochs)
    print(f"{args.configs} stage-2 configs x {args.epochs} epochs, batch 64, 4 cached views, torch "
          f"{torch.__version__}, {threads} threads")
    digits_like = synthetic_bank(1_400, 128, 10, views=4)
    flagged = synthetic_bank(args.samples, args.dim, args.classes, views=4)
    rows = []
    for label, (bank, head, counts) in (("digits-lt-like", digits_like), ("flags (CIFAR-100-LT-like)", flagged)):
        row, speedup = compare(label, bank, head, counts, configs, args.repeats)
        rows.append(row)
    print(table(["bank", "train features", "separate s", "batched s", "ms/config separate", "ms/config batched",
                 "speedup", "max |diff|"], rows))
    print(f"batched_speedup: {speedup:.2f}")


if __name__ == "__main__":
    main()
