"""One WB stage-2 trial on cached features vs the stage-1 run it re-uses, on the same data, in one run.

    python benchmarks/stage2_cost.py [--dataset digits-lt] [--stage1-epochs 100] [--trials 5] [--rounds 3]
                                     [--arch resnet32-cifar --image-size 32] [--threads N]

Stage 2 is the authors' 10 epochs of CB + WD + MaxNorm with the backbone frozen (BN in eval mode), on the feature
bank extracted once per backbone (4 augmented train views, val/test, and their flips only for flip TTA). Each round
trains stage 1, extracts the bank once more on its own, runs `--trials` stage-2 trials (different lambda_2), 8 such
trials in one batch as a worker runs them (`stage2_outputs`: their heads train in one batched pass), and one
stage-2 run the authors' way (BN in train mode, images through the backbone every epoch); medians over rounds. Stage
1 is `train_backbone`'s time less its feature extraction. A projected row scales the measured stage-1 epoch cost to
the WB preset's 320 epochs (an estimate, marked as such).
Ends with `stage2_over_stage1: X` (median stage-2 trial / median stage-1 training).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import torch

from benchmarks._common import add_stage1_epochs_flag, add_threads_flag, apply_threads, parse_args, table, timed
from trainers.config import ExperimentConfig, RunOptions, with_fields
from trainers.data import load_dataset
from trainers.device import Runtime, resolve_runtime
from trainers.experiment import Backbone, run_stage2, stage2_outputs, train_backbone
from trainers.features import extract_feature_bank
from trainers.presets import PRESETS, method_defaults

WB_PRESET = "wb-cifar100-if100"
BATCH = 8  # a worker's default --batch-trials


def one_round(config: ExperimentConfig, trials: int, runtime: Runtime) -> dict[str, float]:
    started = time.perf_counter()
    backbone = train_backbone(config, runtime)
    with_bank = time.perf_counter() - started
    bank_s = timed(lambda: extract_feature_bank(backbone.model, backbone.data, runtime,
                                                views=config.stage2.feature_views,
                                                flips=config.eval.flip_tta, seed=config.seed,
                                                precision=config.eval.feature_precision))
    stage2_s = statistics.median(timed(lambda trial=trial: stage2_trial(backbone, config, trial, runtime))
                                 for trial in range(trials))
    batch = [lambda_2_trial(config, trial) for trial in range(BATCH)]
    batched_s = timed(lambda: stage2_outputs(backbone, batch, runtime)) / BATCH
    authors_way = with_fields(config, {"stage2.bn_mode": "train", "stage2.maxnorm_every": "epoch"})
    end_to_end_s = timed(lambda: run_stage2(backbone, authors_way, runtime))
    return {"stage1": with_bank - bank_s, "bank": bank_s, "stage2": stage2_s, "batched": batched_s,
            "end_to_end": end_to_end_s}


def lambda_2_trial(config: ExperimentConfig, trial: int) -> ExperimentConfig:
    return with_fields(config, {"stage2.weight_decay": 10 ** (-3 + trial / 2)})


def stage2_trial(backbone: Backbone, config: ExperimentConfig, trial: int, runtime: Runtime) -> None:
    """A stage-2 trial as a study runs it: a new lambda_2 on the cached bank, evaluated on val and test."""
    run_stage2(backbone, lambda_2_trial(config, trial), runtime)


# --tiny: a run of seconds, made by the test suite
TINY = {"stage1_epochs": 1, "trials": 1, "rounds": 1, "threads": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits-lt")
    add_stage1_epochs_flag(parser)
    parser.add_argument("--arch", default="auto", help="e.g. resnet32-cifar with --image-size 32")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--trials", type=int, default=5, help="stage-2 trials per round (median)")
    parser.add_argument("--rounds", type=int, default=3, help="stage-1 runs (median)")
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny=TINY)
    threads = apply_threads(args.threads)
    runtime = resolve_runtime(RunOptions(device="auto"))
    config = with_fields(method_defaults("wb"), {
        "data.name": args.dataset, "data.image_size": args.image_size, "model.arch": args.arch,
        "stage1.epochs": args.stage1_epochs, "stage2.loss": "cb", "stage2.maxnorm": "relative", "stage2.epochs": 10})
    load_dataset(config.data)  # warm-up: the first load pays scikit-learn's import, which is no part of stage 1
    rounds = [one_round(config, args.trials, runtime) for _ in range(args.rounds)]
    median = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    stage1 = median["stage1"]
    preset_epochs = PRESETS[WB_PRESET].config.stage1.epochs
    projected = stage1 / args.stage1_epochs * preset_epochs

    print(f"WB on {args.dataset} (arch {args.arch}, image size {args.image_size or 'native'}), "
          f"{args.stage1_epochs} stage-1 epochs, {args.rounds} rounds x {args.trials} stage-2 trials, device "
          f"{runtime.device}, torch {torch.__version__}, {threads} threads")
    rows = [["stage 1 (training)", stage1, "100%"],
            ["feature bank (once per backbone)", median["bank"], f"{median['bank'] / stage1:.2%}"],
            ["stage-2 trial on cached features", median["stage2"], f"{median['stage2'] / stage1:.3%}"],
            [f"  the same, per trial in a batch of {BATCH}", median["batched"], f"{median['batched'] / stage1:.3%}"],
            ["stage 2 the authors' way (BN train)", median["end_to_end"], f"{median['end_to_end'] / stage1:.2%}"],
            [f"projected: stage 1 at {preset_epochs} epochs", projected, f"trial {median['stage2'] / projected:.3%}"]]
    print(table(["step (median)", "seconds", "/ stage 1"], rows))
    print(f"stage2_over_stage1: {median['stage2'] / stage1:.5f}")


if __name__ == "__main__":
    main()
