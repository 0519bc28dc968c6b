"""Default search spaces per method, each parameter with its unit and why its range is what it is.

Parameter names are dotted config fields (`stage2.weight_decay`), so a user overrides or fixes them by the
same name the trainer uses, and optuna-dashboard shows what each axis means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from trainers.config import FOLDER_PREFIX, ExperimentConfig, Method
from trainers.dataset_facts import CIFAR_SIZE_MAX, crop_padding_for

# Bounds on any value a request may give a parameter: wide enough for every config field (each field's own
# bound is checked when the config is built), narrow enough that float() and the database hold them.
PARAM_MAGNITUDE = 1e15
PARAM_TEXT_CHARS = 200
ParamValue = (StrictBool | Annotated[int, Field(ge=-PARAM_MAGNITUDE, le=PARAM_MAGNITUDE)]
              | Annotated[float, Field(ge=-PARAM_MAGNITUDE, le=PARAM_MAGNITUDE, allow_inf_nan=False)]
              | Annotated[str, Field(max_length=PARAM_TEXT_CHARS)])
MAX_CHOICES = 100  # a categorical parameter's choices: a grid over more is no longer a search a study finishes


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float"] = "float"
    # strict: JSON's true is no bound (pydantic's lax mode reads it as 1.0)
    low: float = Field(ge=-PARAM_MAGNITUDE, le=PARAM_MAGNITUDE, strict=True)
    high: float = Field(ge=-PARAM_MAGNITUDE, le=PARAM_MAGNITUDE, strict=True)
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
    choices: list[ParamValue] = Field(min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _finite_choices(self) -> Choices:
        if any(isinstance(c, float) and not math.isfinite(c) for c in self.choices):
            raise ValueError("choices must be finite numbers or strings")
        return self


ParamSpec = Annotated[FloatRange | Choices, Field(discriminator="type")]

# Stage 1 is the expensive part of every two-stage trial; searching lambda_1 over a few log-spaced values
# lets many stage-2 trials share one cached backbone (WB tuned 5e-3 on CIFAR100-LT; 0 is the naive baseline).
STAGE1_WEIGHT_DECAY = Choices(choices=[5e-4, 2e-3, 5e-3, 1e-2])

# The stage-2 loss form is searched, and lambda_2's range spans every form's useful values. The WB code's cb-bce
# (BCE on the softmax, mean over B*K entries) has a gradient ~K times smaller than cb (weighted softmax CE); measured
# on the classifier weight at K = 100 (WB CIFAR-100-LT IF100 counts, batch 64, d 512, 5 seeds): |grad cb| /
# |grad cb-bce| = 99.0 at near-uniform softmax, 80-94 at logit scale 5, 62-69 at scale 20, median 96.3
# (benchmarks/loss_gradient_ratio.py, 2026-12-02).
# The regularised optimum of L/r + lambda ||W||^2/2 is that of L + r lambda ||W||^2/2, so WB's lambda_2 = 0.1 with
# cb-bce sits where lambda_2 = 6-10 does with cb. One log range 1e-4..20 holds both (0.1 for cb-bce, 6-10 for cb,
# the tailtune default 0.1 for cb) with a factor 2 of margin; searching the loss too lets the study reach the WB
# preset's own setting (cb-bce, 0.1) instead of only its cb equivalent, whose 10-epoch dynamics differ.
WB_SPACE: dict[str, FloatRange | Choices] = {
    "stage1.weight_decay": STAGE1_WEIGHT_DECAY,
    # lambda_2 on the re-trained classifier (see above); papers sweep decades -> log.
    "stage2.weight_decay": FloatRange(low=1e-4, high=20.0, log=True),
    # relative MaxNorm radius t in [0, 1] between the smallest and largest stage-1 row norm (linear); WB: 0.1.
    "stage2.maxnorm_thresh": FloatRange(low=0.0, high=1.0),
    "stage2.loss": Choices(choices=["ce", "cb", "cb-bce"]),
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
    # re-training weight decay: the LOS code uses exactly 0, which no log range holds, so decades as choices
    # with 0 among them.
    "stage2.weight_decay": Choices(choices=[0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),
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

# Data without a preset: no one has tuned stage 1 for them, and stage 1 decides most of the accuracy there (the
# issue's 837-image photo set: stage 1 at 100 epochs 58.4 % test All, at 200 epochs with a lower WD 71.5 %). So
# stage 1's lr, weight decay and length are searched too. Each is a log grid, not a continuous range, so trials
# whose stage-1 values coincide share one cached backbone, and the successive-halving pruner (samplers.py) stops
# poor stage-1 settings early instead of training them to the end.
NEW_DATA_STAGE1: dict[str, FloatRange | Choices] = {
    # SGD lr with momentum 0.9, batch 64: the authors' 0.01 with a half-decade (x3) step each side and 0.1, the
    # largest a BN network takes at this batch; lr matters on a log axis.
    "stage1.lr": Choices(choices=[3e-3, 1e-2, 3e-2, 1e-1]),
    # lambda_1 from 1e-4 (almost none; small data sets overfit less with strong WD, but not always) to 2e-2
    # (4x WB's 5e-3): factors 2-5 apart, the resolution at which the WB paper's sweep (Fig. 3) changes accuracy.
    "stage1.weight_decay": Choices(choices=[1e-4, 5e-4, 2e-3, 5e-3, 1e-2, 2e-2]),
    # epochs: a small set converges in 100 (digits-lt) or needs 200 (the photo set); 50 is the budget
    # rung a pruner reaches first. Doubling steps (log grid).
    "stage1.epochs": Choices(choices=[50, 100, 200]),
}




def folder_space(dataset: str, image_size: int | None, preset: str | None) -> dict[str, Choices]:
    """What a folder data set without a preset (new data) searches besides NEW_DATA_STAGE1: its augmentation and,
    for small images, the model's size; nothing for other data sets (their augmentation and model are the
    papers'). A few choices each, so trials that pick the same share a backbone. Measured on the panel of folder
    sets (benchmarks/folder_defaults.py, WB's default run, generic lr 0.01 for 100 epochs, 2 seeds, val All):"""
    if preset is not None or not dataset.startswith(FOLDER_PREFIX) or image_size is None:
        return {}
    padding = crop_padding_for(image_size)
    space = {
        # A mirror keeps a photo's class and changes a character's: flips lost 4 and 15 points on digits16 and
        # glyphs and won 0.5 on textures, so the data decide (off in the recipe).
        "data.flip": Choices(choices=[False, True]),
        # Random-crop padding: none, the default 1/8 of the side (CIFAR's 4 px at 32), or twice it; without it
        # glyphs lost 7 points, digits16 gained 4.
        "data.crop_padding": Choices(choices=sorted({0, padding, 2 * padding})),
    }
    if image_size <= CIFAR_SIZE_MAX:
        # The model's size for small images: the 3-block CNN or the CIFAR ResNet-32 (0.46M parameters), which
        # beat it by 4.3 points on average at several times the compute.
        space["model.arch"] = Choices(choices=["small-cnn", "resnet32-cifar"])
    return space


@dataclass(frozen=True)
class DerivedParam:
    """A searched parameter that sets a config field through a transform, and the transform's inverse."""

    field: str
    to_field: Callable[[float], float]
    from_field: Callable[[float], float]


DERIVED_PARAMS: dict[str, DerivedParam] = {
    "stage2.over_smoothing_gap": DerivedParam("stage2.over_smoothing", to_field=lambda gap: 1.0 - gap,
                                              from_field=lambda delta: 1.0 - delta),
}


def config_values(params: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """Maps sampled parameters to config fields, applying the transforms of derived parameters."""
    values: dict[str, ParamValue] = {}
    for name, value in params.items():
        derived = DERIVED_PARAMS.get(name)
        values[derived.field if derived else name] = derived.to_field(value) if derived else value
    return values


def param_value(config: ExperimentConfig, name: str) -> ParamValue:
    """The value a configuration has for a searched parameter (a derived one through its inverse)."""
    derived = DERIVED_PARAMS.get(name)
    node: Any = config
    for part in (derived.field if derived else name).split("."):
        node = getattr(node, part)
    return derived.from_field(node) if derived else node


def contains(param: FloatRange | Choices, value: ParamValue) -> bool:
    if isinstance(param, Choices):
        return value in param.choices
    return isinstance(value, int | float) and not isinstance(value, bool) and param.low <= value <= param.high


def default_space(method: Method, preset: str | None = None) -> dict[str, FloatRange | Choices]:
    """The method's space; without a preset (new data) stage 1 is searched too (NEW_DATA_STAGE1), except where
    the method's own space searches a stage-1 field already (EWB's continuous weight decay)."""
    if preset is not None:
        return dict(_SPACES[method])
    space = {**NEW_DATA_STAGE1, **_SPACES[method]}
    if space["stage1.weight_decay"] is STAGE1_WEIGHT_DECAY:  # the papers' narrow grid gives way to the wide one
        space["stage1.weight_decay"] = NEW_DATA_STAGE1["stage1.weight_decay"]
    return space


def sample_params(trial: optuna.Trial, space: dict[str, FloatRange | Choices]) -> dict[str, ParamValue]:
    """Asks the trial for every searched parameter (its sampler proposes the values) through Optuna's public
    `suggest_*`; how they are written is the storage's business (the objective batches them)."""
    params: dict[str, ParamValue] = {}
    for name, param in space.items():
        if isinstance(param, FloatRange):
            params[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
        elif isinstance(param, Choices):
            params[name] = trial.suggest_categorical(name, param.choices)
    return params
