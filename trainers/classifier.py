"""The classifier a stage-2 result was measured with, as data: what an export needs to be the trial's model.

logits = mean over views of (f W^T + b), then * logit_scale - logit_offset per class, where the views are the
image and, with flip TTA, its mirror. τ-norm is folded into W (W_k / ||W_k||^τ); logit adjustment stays a
per-class scale (multiplicative: π_k^-τ) or offset (additive: τ log π_k) after the linear layer, because folding
it into W and b would round differently and could move an argmax away from what the trial measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers.config import LogitAdjustConfig
from trainers.heads import Head
from trainers.posthoc import logit_adjustment


@dataclass(frozen=True)
class EvaluatedClassifier:
    head: Head  # K x d weight (τ-norm folded in) and K bias
    logit_scale: torch.Tensor  # K; ones unless multiplicative logit adjustment
    logit_offset: torch.Tensor  # K; zeros unless additive logit adjustment
    flip_tta: bool
    # Set when stage 2 changed the backbone itself (BN statistics in train mode, or the last block re-trained);
    # None: the stage-1 backbone as the cache keeps it.
    backbone_state: dict[str, torch.Tensor] | None = None

    def logits(self, features: torch.Tensor, flipped: torch.Tensor | None) -> torch.Tensor:
        logits = self.head.logits(features)
        if self.flip_tta:
            if flipped is None:
                raise ValueError("flip TTA needs a feature bank extracted with flips=True")
            logits = (logits + self.head.logits(flipped)) / 2
        return logits * self.logit_scale - self.logit_offset


def evaluated_classifier(head: Head, class_prior: torch.Tensor, *, flip_tta: bool,
                         adjust: LogitAdjustConfig | None = None,
                         backbone_state: dict[str, torch.Tensor] | None = None) -> EvaluatedClassifier:
    """`head` with the post-hoc logit adjustment of `adjust` (EWB), if any, as per-class scale and offset."""
    prior = class_prior.to(head.weight.device, head.weight.dtype)
    if adjust is None:  # x * 1 and x - 0 are exact: the plain head's logits, bit for bit
        scale, offset = torch.ones_like(prior), torch.zeros_like(prior)
    else:
        scale, offset = logit_adjustment(prior, adjust.tau, adjust.form)
    return EvaluatedClassifier(head=head, logit_scale=scale, logit_offset=offset, flip_tta=flip_tta,
                               backbone_state=backbone_state)
