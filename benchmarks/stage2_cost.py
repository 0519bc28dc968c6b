"""One WB stage-2 trial on cached features vs the stage-1 run it re-uses, on the same data.

    python benchmarks/stage2_cost.py [--dataset digits-lt] [--stage1-epochs 30] [--arch resnet32-cifar --image-size 32]

Stage 2 is the authors' 10 epochs of CB + WD + MaxNorm with the backbone frozen (BN in eval mode) on a feature
bank extracted once per backbone (4 augmented train views). Ends with `stage2_over_stage1: X`.
"""

from __future__ import annotations

import argparse
import time

import torch

from trainers.config import RunOptions, with_fields
from trainers.data import load_dataset
from trainers.device import resolve_runtime
from trainers.experiment import run_stage2, train_backbone
from trainers.features import extract_feature_bank
from trainers.presets import method_defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits-lt")
    parser.add_argument("--stage1-epochs", type=int, default=30)
    parser.add_argument("--arch", default="auto", help="e.g. resnet32-cifar with --image-size 32")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--trials", type=int, default=5, help="stage-2 trials timed (median)")
    args = parser.parse_args()
    runtime = resolve_runtime(RunOptions(device="auto"))
    config = with_fields(method_defaults("wb"), {"data.name": args.dataset, "stage1.epochs": args.stage1_epochs,
                                                 "stage2.loss": "cb", "stage2.maxnorm": "relative",
                                                 "model.arch": args.arch, "data.image_size": args.image_size})
    started = time.perf_counter()
    backbone = train_backbone(config, runtime)
    stage1_s = time.perf_counter() - started  # includes this run's own feature extraction

    data = load_dataset(config.data)
    started = time.perf_counter()
    extract_feature_bank(backbone.model, data, runtime, views=config.stage2.feature_views, seed=1)
    extraction_s = time.perf_counter() - started

    stage2_times = []
    for trial in range(args.trials):
        trial_config = with_fields(config, {"stage2.weight_decay": 10 ** (-3 + trial / 2)})
        started = time.perf_counter()
        run_stage2(backbone, trial_config, runtime)
        stage2_times.append(time.perf_counter() - started)
    stage2_s = sorted(stage2_times)[len(stage2_times) // 2]

    train_images = len(backbone.data.train)
    print(f"{args.dataset} ({args.arch}, {data.image_size}px): {train_images} train images, {args.stage1_epochs} "
          f"stage-1 epochs, device {runtime.device}, torch {torch.__version__}")
    print(f"{'step':<34} {'seconds':>9} {'/ stage 1':>10}")
    for name, seconds in (("stage 1 (train + feature bank)", stage1_s), ("feature bank alone (once)", extraction_s),
                          ("stage-2 trial, 10 epochs (median)", stage2_s)):
        print(f"{name:<34} {seconds:>9.3f} {seconds / stage1_s:>9.2%}")
    print(f"stage2_over_stage1: {stage2_s / stage1_s:.5f}")


if __name__ == "__main__":
    main()
