"""Which stage-2 loss the tailtune WB default (no preset) should use: CB or the WB code's CB-BCE, at the papers'
lambda_2 and at its CB equivalent, measured on digits-lt and on a generated folder data set, a few seeds.

    python benchmarks/wb_default_loss.py [--seeds 3] [--stage1-epochs 100] [--data-sets both|digits-lt|folder]
                                         [--threads N]

Per data set and seed one stage-1 backbone is trained with tailtune's WB defaults; the variants then re-train the
classifier on its cached features (everything else tailtune's default: relative MaxNorm t 0.1 after every step,
10 epochs, lr 0.01, BN frozen):
- `cb 0.1`: the weighted softmax CE with lambda_2 0.1 (the default before this measurement);
- `cb-bce 0.1`: the WB code's BCE-on-softmax CB loss with its lambda_2 0.1 (the papers' setting);
- `cb r*0.1`: the CB loss with lambda_2 scaled by r, the median ratio of the two losses' classifier gradients on
  this data set's counts (benchmarks/loss_gradient_ratio.py's measure): the CB equivalent of the papers' setting.
The folder data set is generated (benchmarks/_gratings.py: 10 classes of coloured gratings, 16 px, train counts
100 .. 5, 20 val and 50 test per class). The choice is made on val All (never test), mean over seeds and both data sets.
Ends with `best_default_by_val_all: <variant>`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory


from benchmarks._common import seeded_benchmark_args, table
from benchmarks._gratings import GRATINGS_SIZE, write_gratings_folder
from benchmarks.loss_gradient_ratio import LOGIT_SCALES, gradient_ratio
from trainers.config import ExperimentConfig, RunOptions, with_fields
from trainers.device import resolve_runtime
from trainers.experiment import stage2_outputs, train_backbone
from trainers.presets import method_defaults

PAPERS_LAMBDA2 = 0.1  # WB's lambda_2 with cb-bce on CIFAR100-LT


def median_gradient_ratio(class_counts: list[int], seeds: int = 5) -> float:
    """Median |dL_cb/dW| / |dL_cb-bce/dW| over random batches and logit scales, at these class counts."""
    return statistics.median(gradient_ratio(class_counts, 64, 128, scale, seed)
                             for scale in LOGIT_SCALES for seed in range(seeds))


def variants(base: ExperimentConfig, ratio: float) -> dict[str, ExperimentConfig]:
    return {"cb 0.1": with_fields(base, {"stage2.loss": "cb", "stage2.weight_decay": PAPERS_LAMBDA2}),
            "cb-bce 0.1": with_fields(base, {"stage2.loss": "cb-bce", "stage2.weight_decay": PAPERS_LAMBDA2}),
            "cb r*0.1": with_fields(base, {"stage2.loss": "cb", "stage2.weight_decay": ratio * PAPERS_LAMBDA2})}


def measure(base: ExperimentConfig, seeds: int) -> tuple[float, dict[str, list[dict[str, float | None]]]]:
    """The gradient ratio on the data's counts, and per variant one {val_all, val_few, test_all, test_few} per
    seed."""
    results: dict[str, list[dict[str, float | None]]] = {}
    runtime = resolve_runtime(RunOptions(device="cpu"))
    ratio = None
    for seed in range(seeds):
        backbone = train_backbone(with_fields(base, {"seed": seed}), runtime)
        ratio = ratio or median_gradient_ratio(backbone.data.class_counts)
        named = variants(with_fields(base, {"seed": seed}), ratio)
        outputs = stage2_outputs(backbone, list(named.values()), runtime)
        for name, result in zip(named, (output.result for output in outputs), strict=True):
            results.setdefault(name, []).append({"val_all": result.val.all, "val_few": result.val.few,
                                                 "test_all": result.test.all, "test_few": result.test.few})
    return ratio or 0.0, results


def _mean(rows: list[dict[str, float | None]], key: str) -> float:
    return statistics.fmean(row[key] for row in rows if row[key] is not None)


def main(argv: list[str] | None = None) -> None:
    args = seeded_benchmark_args(__doc__, seeds=3, argv=argv, more_flags=lambda parser: parser.add_argument(
        "--data-sets", choices=("both", "digits-lt", "folder"), default="both",
        help="measure on both data sets (and choose), or on one"))
    val_all: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_gratings_folder(Path(scratch) / "gratings")
        data_sets = {"digits-lt": {}, "folder (gratings, 16 px)": {"data.name": f"folder:{folder}",
                                                                   "data.image_size": GRATINGS_SIZE}}
        for label, fields in data_sets.items():
            if args.data_sets not in ("both", label.split()[0]):
                continue
            base = with_fields(method_defaults("wb"), {**fields, "stage1.epochs": args.stage1_epochs})
            ratio, results = measure(base, args.seeds)
            rows = [[name, *(f"{_mean(runs, key):.2f}" for key in ("val_all", "val_few", "test_all", "test_few"))]
                    for name, runs in results.items()]
            print(f"\n{label}: mean of seeds 0..{args.seeds - 1}, r = {ratio:.1f} (cb r*0.1: lambda_2 "
                  f"{ratio * PAPERS_LAMBDA2:.2f})")
            print(table(["variant", "val All", "val Few", "test All", "test Few"], rows))
            for name, runs in results.items():
                val_all.setdefault(name, []).append(_mean(runs, "val_all"))
    best = max(val_all, key=lambda name: statistics.fmean(val_all[name]))
    print(f"\nval All, mean over {args.data_sets}: " + ", ".join(
        f"{name} {statistics.fmean(values):.2f}" for name, values in val_all.items()))
    print(f"best_default_by_val_all: {best}")


if __name__ == "__main__":
    main()
