"""How much larger the gradient of the `cb` stage-2 loss is than the WB code's `cb-bce`, at the same weights.

    python benchmarks/loss_gradient_ratio.py [--classes 100] [--batch 64] [--dim 512] [--seeds 5]

`cb` is the weighted softmax CE (mean over B); `cb-bce` is BCE on the softmax probabilities (mean over B*K
entries), so its gradient is about K times smaller. The ratio sets how lambda_2 values translate between the
two forms (studies/definition/space.py's WB range): the optimum of L/r + lambda ||W||^2/2 is that of
L + r lambda ||W||^2/2.
Measured on the classifier weight W (K x d) for random non-negative features, CIFAR-100-LT IF 100 class counts
(WB's floor() profile) and CB weights with beta 0.9999, at logit scales from a near-uniform softmax (an untrained
head) to a peaked one (a trained head). Ends with `grad_ratio_cb_over_cb_bce: X` (the median over all scales
and seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import torch

from benchmarks._common import parse_args, table
from trainers.data import lt_counts
from trainers.losses import cb_bce_softmax, cb_cross_entropy, class_balanced_weights

LOGIT_SCALES = (0.01, 1.0, 5.0, 20.0)


def gradient_ratio(counts: list[int], batch: int, dim: int, logit_scale: float, seed: int) -> float:
    """|dL_cb/dW| / |dL_cb-bce/dW| on one random batch drawn with these class counts."""
    classes = len(counts)
    weights = class_balanced_weights(counts, 0.9999).float()
    generator = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(torch.tensor(counts, dtype=torch.float), batch, replacement=True,
                               generator=generator)
    features = torch.randn(batch, dim, generator=generator).relu()
    weight = (logit_scale * torch.randn(classes, dim, generator=generator) / dim ** 0.5).requires_grad_(True)
    norms = [torch.autograd.grad(loss(features @ weight.T, labels, weights), weight)[0].norm().item()
             for loss in (cb_cross_entropy, cb_bce_softmax)]
    return norms[0] / norms[1]


# --tiny: a run of seconds, made by the test suite
TINY = {"classes": 10, "batch": 8, "dim": 8, "seeds": 2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=5)
    args = parse_args(parser, argv, tiny=TINY)
    rows, every = [], []
    for scale in LOGIT_SCALES:
        counts = lt_counts(500, 100, args.classes, "floor")
        ratios = [gradient_ratio(counts, args.batch, args.dim, scale, seed) for seed in range(args.seeds)]
        every += ratios
        rows.append([f"{scale:g}", f"{min(ratios):.1f}", f"{statistics.median(ratios):.1f}", f"{max(ratios):.1f}"])
    print(table(["logit scale", "min ratio", "median", "max"], rows))
    print(f"grad_ratio_cb_over_cb_bce: {statistics.median(every):.1f}")


if __name__ == "__main__":
    main()
