"""Does a streamed data set's float16 feature bank change the accuracy stage 2 reaches, against float32 features
of the same backbone, and what does each take?

    python benchmarks/feature_precision.py [--seeds 3] [--stage1-epochs 100] [--threads N]

A generated folder data set (benchmarks/_gratings.py, 16 px PNGs) is streamed (data.pipeline=streaming, the path
ImageNet-LT and iNaturalist take); per seed one stage-1 backbone is trained with tailtune's WB defaults, then its
feature bank is extracted twice, float16 and float32, and on each the stage-1 classifier and a WB stage-2 head
(tailtune defaults, on the bank's cached views) are evaluated on val and test per split. Memory is the bank's
bytes (train views, plain train, val, test). Ends with `max_abs_fp16_minus_fp32_points: X`, the largest
difference in any split, stage and seed, in accuracy points.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

from benchmarks._common import seeded_benchmark_args, table
from benchmarks._gratings import GRATINGS_SIZE, write_gratings_folder
from trainers.config import RunOptions, with_fields
from trainers.device import resolve_runtime
from trainers.experiment import evaluate_head, run_stage2, train_backbone
from trainers.features import FeatureBank, extract_feature_bank
from trainers.presets import method_defaults

PRECISIONS = ("float16", "float32")
SPLITS = ("all", "many", "medium", "few")


def bank_bytes(bank: FeatureBank) -> int:
    tensors = (bank.train_views, bank.train_plain, bank.val, bank.test, bank.val_flipped, bank.test_flipped)
    return sum(t.element_size() * t.numel() for t in tensors if t is not None)


def measure(folder: Path, seed: int, epochs: int) -> dict[str, dict[str, float | None]]:
    """Per precision: bank bytes and {stage}_{part}_{split} accuracies, one backbone."""
    runtime = resolve_runtime(RunOptions(device="cpu", loader_workers=0))
    base = with_fields(method_defaults("wb"), {"data.name": f"folder:{folder}", "data.image_size": GRATINGS_SIZE,
                                               "data.pipeline": "streaming", "stage1.epochs": epochs, "seed": seed})
    backbone = train_backbone(base, runtime)
    rows: dict[str, dict[str, float | None]] = {}
    for precision in PRECISIONS:
        config = with_fields(base, {"eval.feature_precision": precision})
        bank = extract_feature_bank(backbone.model, backbone.data, runtime, views=config.stage2.feature_views,
                                    flips=False, seed=seed, precision=precision)
        on_bank = dataclasses.replace(backbone, features=bank)
        stage1 = evaluate_head(bank, backbone.head, backbone.rule, config, elapsed=0.0)
        stage2 = run_stage2(on_bank, config, runtime)
        row: dict[str, float | None] = {"bytes": bank_bytes(bank)}
        for stage, result in (("stage1", stage1), ("stage2", stage2)):
            for part in ("val", "test"):
                row |= {f"{stage}_{part}_{split}": getattr(getattr(result, part), split) for split in SPLITS}
        rows[precision] = row
    return rows


def main(argv: list[str] | None = None) -> None:
    args = seeded_benchmark_args(__doc__, seeds=3, argv=argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_gratings_folder(Path(scratch) / "gratings")
        runs = [measure(folder, seed, args.stage1_epochs) for seed in range(args.seeds)]
    keys = [key for key in runs[0]["float16"] if key != "bytes"]
    rows, differences = [], []
    for key in keys:
        means = [statistics.fmean(run[p][key] for run in runs) if runs[0][p][key] is not None else None
                 for p in PRECISIONS]
        seed_differences = [abs(run["float16"][key] - run["float32"][key]) for run in runs
                            if run["float16"][key] is not None]
        differences += seed_differences
        rows.append([key.replace("_", " "), *(f"{m:.2f}" if m is not None else "–" for m in means),
                     f"{max(seed_differences):.2f}" if seed_differences else "–"])
    print(f"mean of seeds 0..{args.seeds - 1}, streamed gratings folder, {args.stage1_epochs} stage-1 epochs")
    print(table(["stage part split", "float16 %", "float32 %", "max |diff| over seeds"], rows))
    sizes = [runs[0][p]["bytes"] for p in PRECISIONS]
    print(f"bank bytes: float16 {sizes[0]:,}, float32 {sizes[1]:,} (ratio {sizes[1] / sizes[0]:.2f})")
    print(f"max_abs_fp16_minus_fp32_points: {max(differences):.2f}")


if __name__ == "__main__":
    main()
