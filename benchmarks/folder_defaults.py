"""Which defaults a folder data set gets (stage-1 lr and epochs, augmentation, model), chosen on the panel.

    python benchmarks/folder_defaults.py [--seeds 2] [--stage1-epochs 100] [--sets digits16,glyphs,textures]
                                         [--candidates generic,lr-0.1,...] [--tiny] [--threads N]

Per panel set (benchmarks/panel.py: digits16, glyphs, textures; 16 px, IF 20) and seed, WB's default run (the
recipe a study enqueues as trial 0) is trained once per candidate: `generic`, tailtune's defaults for any data
set without a preset (what a folder got before this measurement), and variants of it with one or two fields
changed (CANDIDATES). The choice is made on val All, mean over sets and seeds (never test); test All is printed
beside it. trainers/presets.py's FOLDER_STAGE1 is the choice. Ends with
`best_folder_default_by_val_all: <candidate>`. `--tiny` (the suite's smoke run) trains two candidates for one
epoch on digits16 at 20 .. 1 train images per class.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

from benchmarks._common import seeded_benchmark_args, table
from benchmarks.panel import PANEL, SIDE
from trainers.config import RunOptions, with_fields
from trainers.device import resolve_runtime
from trainers.experiment import run_experiment
from trainers.presets import method_defaults

# The generic defaults, then one question each: a larger stage-1 lr (the panel studies' best trials sat at
# the top of the lr grid), a longer stage 1, both, no random crop, flips, and the next larger model for small
# images.
CANDIDATES: dict[str, dict[str, object]] = {
    "generic": {},
    "lr-0.03": {"stage1.lr": 0.03},
    "lr-0.1": {"stage1.lr": 0.1},
    "epochs-x2": {"stage1.epochs": "x2"},
    "lr-0.1-epochs-x2": {"stage1.lr": 0.1, "stage1.epochs": "x2"},
    "no-crop": {"data.crop_padding": 0},
    "flip": {"data.flip": True},
    "resnet32": {"model.arch": "resnet32-cifar"},
}
TINY = {"sets": "digits16", "candidates": "generic,lr-0.1", "n_max": 20}


def candidate_fields(candidate: dict[str, object], stage1_epochs: int) -> dict[str, object]:
    return {field: 2 * stage1_epochs if value == "x2" else value for field, value in candidate.items()}


def main(argv: list[str] | None = None) -> None:
    def more_flags(parser: object) -> None:
        parser.add_argument("--sets", default=",".join(PANEL))
        parser.add_argument("--candidates", default=",".join(CANDIDATES))
        parser.add_argument("--n-max", type=int, default=None, help="train images of the largest class (panel's)")
        if "--tiny" in (sys.argv[1:] if argv is None else argv):
            parser.set_defaults(**TINY)

    args = seeded_benchmark_args(__doc__, seeds=2, argv=argv, more_flags=more_flags)
    runtime = resolve_runtime(RunOptions(device="cpu"))
    candidates = args.candidates.split(",")
    val: dict[str, list[float]] = {name: [] for name in candidates}
    test: dict[str, list[float]] = {name: [] for name in candidates}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for set_name in args.sets.split(","):
            sizes = {"n_max": args.n_max} if args.n_max else {}
            folder = PANEL[set_name](Path(scratch) / set_name, **sizes)
            base = with_fields(method_defaults("wb"), {"data.name": f"folder:{folder}", "data.image_size": SIDE,
                                                      "stage1.epochs": args.stage1_epochs})
            for name in candidates:
                fields = candidate_fields(CANDIDATES[name], args.stage1_epochs)
                results = [run_experiment(with_fields(base, {**fields, "seed": seed}), runtime).stage2
                           for seed in range(args.seeds)]
                set_val = statistics.fmean(result.val.all for result in results)
                set_test = statistics.fmean(result.test.all for result in results)
                val[name].append(set_val)
                test[name].append(set_test)
                rows.append([set_name, name, set_val, set_test])
                print(f"{set_name} {name}: val All {set_val:.2f}, test All {set_test:.2f}", flush=True)
    print(f"\nWB default run per candidate, mean of seeds 0..{args.seeds - 1}, {args.stage1_epochs} stage-1 epochs "
          f"(x2: {2 * args.stage1_epochs}), {SIDE} px; All %")
    print(table(["set", "candidate", "val All", "test All"], rows))
    means = [[name, statistics.fmean(val[name]), statistics.fmean(test[name])] for name in candidates]
    print("\nmean over sets")
    print(table(["candidate", "val All", "test All"], means))
    best = max(candidates, key=lambda name: statistics.fmean(val[name]))
    print(f"best_folder_default_by_val_all: {best}")


if __name__ == "__main__":
    main()
