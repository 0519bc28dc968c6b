"""Default search spaces per method, each parameter with its unit and why its range is what it is.

Parameter names are dotted config fields (`stage2.weight_decay`), so a user overrides or fixes them by the
same name the trainer uses, and optuna-dashboard shows what each axis means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

from studies.db import params_written_together
from trainers.config import Method

ParamValue = float | int | str | bool


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _valid_bounds(self) -> FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        return self


class Choices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["categorical"] = "categorical"
    choices: list[ParamValue] = Field(min_length=1)

    @model_validator(mode="after")
    def _finite_choices(self) -> Choices:
        if any(isinstance(c, float) and not math.isfinite(c) for c in self.choices):
            raise ValueError("choices must be finite numbers or strings")
        return self


ParamSpec = Annotated[FloatRange | Choices, Field(discriminator="type")]

# Stage 1 is the expensive part of every two-stage trial; searching lambda_1 over a few log-spaced values
# lets many stage-2 trials share one cached backbone (WB tuned 5e-3 on CIFAR100-LT; 0 is the naive baseline).
STAGE1_WEIGHT_DECAY = Choices(choices=[5e-4, 2e-3, 5e-3, 1e-2])

WB_SPACE: dict[str, FloatRange | Choices] = {
    "stage1.weight_decay": STAGE1_WEIGHT_DECAY,
    # lambda_2 on the re-trained classifier: WB uses 0.1 on CIFAR100-LT; papers sweep decades -> log.
    "stage2.weight_decay": FloatRange(low=1e-4, high=1.0, log=True),
    # relative MaxNorm radius t in [0, 1] between the smallest and largest stage-1 row norm (linear).
    "stage2.maxnorm_thresh": FloatRange(low=0.0, high=1.0),
    "stage2.loss": Choices(choices=["ce", "cb"]),
}

TAU_NORM_SPACE: dict[str, FloatRange | Choices] = {
    "stage1.weight_decay": STAGE1_WEIGHT_DECAY,
    # tau of W_k / ||W_k||^tau: 0 is identity, 1 is L2-norm, WB found 1.9 on CIFAR100-LT (linear).
    "stage2.tau": FloatRange(low=0.0, high=3.0),
}

LOS_SPACE: dict[str, FloatRange | Choices] = {
    "stage1.weight_decay": STAGE1_WEIGHT_DECAY,
    # LOS delta in [0.5, 1) is searched as its gap to one, 1 - delta, on a log range: the interesting values
    # crowd near 1 (0.98 in the LOS README), which a log axis on the gap samples densely.
    "stage2.over_smoothing_gap": FloatRange(low=0.005, high=0.5, log=True),
    # re-training weight decay: the LOS code uses 0; a log range down to 1e-6 covers "almost none".
    "stage2.weight_decay": FloatRange(low=1e-6, high=1e-1, log=True),
    # re-training lr around the LOS code's 5e-4: how far the classifier moves depends on the steps per epoch (log).
    "stage2.lr": FloatRange(low=1e-4, high=1e-1, log=True),
}

EWB_SPACE: dict[str, FloatRange | Choices] = {
    # lambda_wd and lambda_fr are both in the loss (EWB eq. 4); 5e-3 and 1e-2 on CIFAR100-LT; decades -> log.
    "stage1.weight_decay": FloatRange(low=1e-4, high=5e-2, log=True),
    "stage1.feature_reg": FloatRange(low=1e-4, high=1e-1, log=True),
    # multiplicative LA strength: 0.65 (CIFAR100-LT) and 1.6 (CIFAR10-LT) in the paper (linear).
    "stage2.tau": FloatRange(low=0.0, high=2.5),
}

_SPACES: dict[str, dict[str, FloatRange | Choices]] = {
    "wb": WB_SPACE, "tau-norm": TAU_NORM_SPACE, "los": LOS_SPACE, "ewb": EWB_SPACE,
}


# Searched parameters that set a config field through a transform: name -> (config field, transform).
DERIVED_PARAMS: dict[str, tuple[str, Callable[[float], float]]] = {
    "stage2.over_smoothing_gap": ("stage2.over_smoothing", lambda gap: 1.0 - gap),
}


def config_values(params: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """Maps sampled parameters to config fields, applying the transforms of derived parameters."""
    values: dict[str, ParamValue] = {}
    for name, value in params.items():
        field, transform = DERIVED_PARAMS.get(name, (name, None))
        values[field] = transform(value) if transform else value
    return values


def default_space(method: Method) -> dict[str, FloatRange | Choices]:
    return dict(_SPACES[method])


def sample_params(trial: optuna.Trial, space: dict[str, FloatRange | Choices]) -> dict[str, ParamValue]:
    """Asks the trial for every searched parameter (its sampler proposes the values), stored in one write."""
    params: dict[str, ParamValue] = {}
    with params_written_together(trial):
        for name, param in space.items():
            if isinstance(param, FloatRange):
                params[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
            elif isinstance(param, Choices):
                params[name] = trial.suggest_categorical(name, param.choices)
    return params
