"""A study's specification: what to tune, over which ranges, how many trials, with which sampler.

Validated once when the study is created (CLI or REST) and stored with it, so every worker resolves the
same search space and the same base configuration.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from studies.definition.confirmation import Confirmation
from studies.definition.space import (
    DERIVED_PARAMS,
    Choices,
    FloatRange,
    ParamSpec,
    ParamValue,
    config_values,
    contains,
    default_space,
    folder_space,
    param_value,
)
from trainers.config import MAX_SEED, ExperimentConfig, Method, leaf_values, with_fields
from trainers.dataset_facts import generated_counts, resolve_arch, resolved_augmentation
from trainers.errors import UserInputError
from trainers.presets import PRESETS, method_defaults
from trainers.results import SPLITS, SplitName
from trainers.splits import split_coverage, split_rule

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# Searched parameters a study may name. Each is a config field, which bounds them already (about 40); the cap
# keeps a sampler's per-trial work and a trial's one-statement parameter write small.
MAX_SEARCHED_PARAMS = 32
_NAMES_SHOWN = 5  # unknown names an error lists before "and N more"
# A study's budget, as created and as changed: strict, since JSON's true is no integer (pydantic's lax mode reads
# it as 1).
TrialBudget = Annotated[int, Field(gt=0, le=100_000, strict=True)]
# strict: JSON's true is no integer, though pydantic's lax mode takes a bool for one.
SamplerSeed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True, description="the samplers' seed")]
ImageSize = Annotated[int, Field(ge=4, le=1024, strict=True)]
ImbalanceFactor = Annotated[float, Field(ge=1, le=1e6, strict=True,
                                         description="None: the preset's, else the data set's default")]
PATH_CHARS = 4096  # PATH_MAX on Linux: a data set name or root longer than that names no folder


class StudySpec(BaseModel):
    """Everything that defines a study; the REST body and `tailtune study create` both build one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN,
                      description="unique study name: letters, digits, '.', '_' or '-'")
    method: Method = "wb"
    preset: str | None = Field(None, max_length=100, description="a paper preset from trainers.presets; None = "
                               "tailtune defaults. Every field of the preset holds in every trial unless `fixed` "
                               "or the search space sets it")
    dataset: str = Field("digits-lt", max_length=PATH_CHARS,
                         description="data set name; with a preset, defaults to the preset's")
    data_root: str | None = Field(None, max_length=PATH_CHARS)
    imbalance_factor: ImbalanceFactor | None = None
    image_size: ImageSize | None = None
    search_space: dict[str, ParamSpec] = Field(
        default_factory=dict, description=f"overrides of the method's default ranges, keyed by config field "
        f"(e.g. stage2.weight_decay); unknown names are refused; at most {MAX_SEARCHED_PARAMS} searched in all")
    fixed: dict[str, ParamValue] = Field(default_factory=dict,
                                         description="config fields fixed for every trial, e.g. stage1.epochs; "
                                                     "unknown names are refused")
    n_trials: TrialBudget
    sampler: Literal["tpe", "gp", "random", "grid"] = Field(
        "tpe", description="grid needs every searched parameter given as categorical choices")
    pruner: Literal["auto", "none", "median", "successive-halving", "hyperband"] = Field(
        "auto", description="auto: successive-halving when stage 1 is searched and there is one objective, "
        "else none (studies/definition/samplers.py)")
    objectives: list[SplitName] = Field(default_factory=lambda: ["all"], min_length=1, max_length=4,
                                        json_schema_extra={"uniqueItems": True},
                                        description="val balanced accuracy of these splits, all maximised")
    seed: SamplerSeed = 0
    confirm: Confirmation | None = Field(
        default_factory=Confirmation, description="when the budget is spent, train the top-k configurations and "
        "the recipe with further seeds; the study's answer is the best mean val over seeds. null: no confirmation")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refusing it here keeps a bad request a 422, not a database error.
        if "\\u0000" in json.dumps(data, default=str):
            raise ValueError("text fields must not contain NUL (\\x00) characters")
        return data

    @model_validator(mode="before")
    @classmethod
    def _preset_data_set(cls, data: Any) -> Any:
        """A spec naming a preset but no data set studies the preset's data set, as `tailtune train` does."""
        if not isinstance(data, dict) or data.get("dataset") is not None:
            return data
        data = {key: value for key, value in data.items() if key != "dataset"}  # null: the default
        if isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            data["dataset"] = PRESETS[data["preset"]].config.data.name
        return data

    @field_validator("fixed")
    @classmethod
    def _finite_fixed_values(cls, value: dict[str, ParamValue]) -> dict[str, ParamValue]:
        for name, fixed in value.items():
            if isinstance(fixed, float) and not math.isfinite(fixed):
                raise ValueError(f"fixed value of {name!r} must be finite")
        return value

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("objectives must be distinct")
        return value

    @model_validator(mode="after")
    def _resolvable(self) -> StudySpec:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.preset is not None and PRESETS[self.preset].config.method != self.method:
            raise ValueError(f"preset {self.preset!r} is for method {PRESETS[self.preset].config.method!r}")
        self._known_names()
        self._space_within_config_bounds()
        if self.sampler == "grid" and any(isinstance(p, FloatRange) for p in self.resolved_space().values()):
            raise ValueError("the grid sampler needs every searched parameter given as choices")
        self._objectives_filled(self.base_config())
        return self

    def _objectives_filled(self, base: ExperimentConfig) -> None:
        """An objective whose split holds no class with val images would score nothing; where the class counts
        follow from the config (digits-lt, CIFAR-LT), that is refused here rather than failing every trial."""
        counts = generated_counts(base.data)
        if counts is None:
            return
        rule = split_rule(counts[0], base.data.name)
        coverage = split_coverage(counts[1], rule)
        empty = [split for split in self.objectives if split != "all" and getattr(coverage, f"{split}_classes") == 0]
        if empty:
            filled = [split for split in SPLITS
                      if split == "all" or getattr(coverage, f"{split}_classes") > 0]
            raise ValueError(f"objective {', '.join(empty)}: that split holds no class with val images on "
                             f"{base.data.name} (train counts {max(counts[0])}..{min(counts[0])}; rule: {rule.rule}); "
                             f"choose objectives among {', '.join(filled)}")

    def _known_names(self) -> None:
        """Every search_space and fixed name is a field of this method's config (or a derived parameter)."""
        fields = set(leaf_values(self._preset_or_defaults().model_dump()))
        for kind, names in (("search_space", self.search_space), ("fixed", self.fixed)):
            unknown = [name for name in names if DERIVED_PARAMS.get(name, (name,))[0] not in fields]
            if unknown:
                shown = ", ".join(repr(name[:100]) for name in unknown[:_NAMES_SHOWN])
                more = f" and {len(unknown) - _NAMES_SHOWN} more" if len(unknown) > _NAMES_SHOWN else ""
                examples = ", ".join(sorted(default_space(self.method, self.preset))[:3])
                raise ValueError(f"unknown {kind} names {shown}{more}: name config fields of method "
                                 f"{self.method!r}, e.g. {examples}")
        if len(self.resolved_space()) > MAX_SEARCHED_PARAMS:
            raise ValueError(f"{len(self.resolved_space())} parameters searched; at most {MAX_SEARCHED_PARAMS}")

    def _space_within_config_bounds(self) -> None:
        """Both ends of every range and every choice make a valid config: a trial can never sample a value its
        trainer refuses (a negative weight decay, 10**9 epochs)."""
        base = self.base_config()
        for name, param in self.search_space.items():
            for value in param.choices if isinstance(param, Choices) else (param.low, param.high):
                try:
                    with_fields(base, config_values({name: value}))
                except ValueError as error:
                    raise ValueError(f"search_space {name!r}: {value!r} is not a valid value: {error}") from None

    def _preset_or_defaults(self) -> ExperimentConfig:
        return PRESETS[self.preset].config if self.preset else method_defaults(self.method, self.dataset)

    @property
    def resolved_pruner(self) -> Literal["none", "median", "successive-halving", "hyperband"]:
        """The pruner a study uses: `auto` prunes over stage-1 epochs when stage 1 is searched (multi-fidelity,
        so a wide stage-1 space costs less than its trials' full training); Optuna prunes one objective only."""
        if self.pruner != "auto":
            return self.pruner
        searches_stage1 = any(name.startswith("stage1.") for name in self.resolved_space())
        return "successive-halving" if searches_stage1 and len(self.objectives) == 1 else "none"

    @property
    def directions(self) -> list[str]:
        return ["maximize"] * len(self.objectives)

    def resolved_space(self) -> dict[str, FloatRange | Choices]:
        space = {**default_space(self.method, self.preset),
                 **folder_space(self.dataset, self.image_size, self.preset), **self.search_space}
        return {name: spec for name, spec in space.items() if name not in self.fixed}

    def base_config(self) -> ExperimentConfig:
        """The configuration every trial starts from: the preset (every field of it, its DataConfig included:
        CIFAR counts, split seed, ...) or the method's defaults; then the spec's data fields where given; then
        the fixed fields."""
        base = self._preset_or_defaults()
        data = {"data.name": self.dataset, "data.root": self.data_root, "data.imbalance_factor": self.imbalance_factor,
                "data.image_size": self.image_size}
        given = {name: value for name, value in data.items() if value is not None}
        return with_fields(base, {**given, "seed": self.seed, **config_values(self.fixed)})

    def config_for(self, params: dict[str, ParamValue]) -> ExperimentConfig:
        return with_fields(self.base_config(), config_values(params))

    def recipe_params(self) -> dict[str, ParamValue] | None:
        """The recipe (the base configuration: the preset's values, else tailtune's defaults) as values of the
        searched parameters, so it can run as trial 0; None when the search space leaves one of them out.
        Augmentation fields the base leaves to the data set (None) count as the data set's values."""
        base, space = self.base_config(), self.resolved_space()
        if any(name in _AUGMENTATION_FIELDS for name in space):
            resolved = asdict(resolved_augmentation(base.data))
            base = with_fields(base, {field: resolved[key] for field, key in _AUGMENTATION_FIELDS.items()
                                      if param_value(base, field) is None})
        if "model.arch" in space and base.model.arch == "auto":
            base = with_fields(base, {"model.arch": resolve_arch("auto", base.data.name, base.data.image_size)})
        params = {name: param_value(base, name) for name in space}
        return params if all(contains(space[name], value) for name, value in params.items()) else None


# The config's augmentation fields (None: the data set's default) and their resolved names.
_AUGMENTATION_FIELDS = {"data.flip": "flip", "data.crop_padding": "crop_padding",
                        "data.random_resized_crop": "random_resized_crop"}


def config_fields(method: Method) -> set[str]:
    """Dotted names of every config field of a method, e.g. `stage2.tau` for tau-norm."""
    return set(leaf_values(method_defaults(method).model_dump()))


def parse_spec(payload: dict[str, Any]) -> StudySpec:
    """Builds a spec from user input; a UserInputError names every field to fix."""
    return parsed(StudySpec, payload, "study spec")


Model = TypeVar("Model", bound=BaseModel)


def parsed(model: type[Model], payload: dict[str, Any], what: str) -> Model:
    """`model` from user input; a UserInputError "invalid <what>: field: problem; ..." names every field to fix."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise UserInputError(f"invalid {what}: {field_problems(error)}") from None


def field_problems(error: ValidationError) -> str:
    """"field: problem; ..." for every field a validation refused (pydantic's first line names only the model)."""
    return "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'spec'}: {e['msg']}" for e in error.errors())
