"""A comparison: the methods side by side on one data set, split and budget, as the papers print them.

    tailtune compare create acc --dataset digits-lt --n-trials 8 --seeds 3

One study per method, each with confirmation over `seeds` seeds (studies/definition/confirmation.py), so every
row of the table is a mean ± std over seeds of that method's confirmed configuration. Every method here trains a
network and then adjusts its classifier on the network's cached features, so each kind of network is searched
once, in the WB paper's order (tune stage 1, then stage 2): a stage-1 study searches the trained knobs of the
default space (weight decay, and lr and epochs where the space has them) with the method's recipe stage 2 and
the same budget, and each method's study then searches only its stage-2 knobs with the best stage 1 fixed, on
the backbone the cache already holds. WB, τ-norm and LOS share one stage 1 (cross-entropy + weight decay,
NAME-stage1); EWB's network (fixed ETF classifier, feature regularisation) is its own (NAME-ewb-stage1), and its
logit adjustment is post hoc. Besides the search, this makes confirmation cheap: a study's top configurations
share one backbone, so each further seed trains it once for all of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from studies.definition.confirmation import Confirmation, SeedCount, TopK
from studies.definition.space import Choices, FloatRange, ParamValue, default_space, folder_space, param_value
from studies.definition.spec import (
    NAME_PATTERN,
    ImageSize,
    ImbalanceFactor,
    SamplerSeed,
    StudySpec,
    TrialBudget,
    config_fields,
)
from studies.definition.statistics import SeedSummary
from trainers.config import Method
from trainers.presets import method_defaults

METHODS: tuple[Method, ...] = ("wb", "tau-norm", "los", "ewb")
# The stage-1 studies (by study-name suffix) and the methods whose network each searches; the first one's recipe
# stage 2 scores its trials.
STAGE1_STUDIES: dict[str, tuple[Method, ...]] = {"stage1": ("wb", "tau-norm", "los"), "ewb-stage1": ("ewb",)}
STAGE2_PREFIX = "stage2."
_CONFIRM_DEFAULTS = Confirmation()
# The longest study-name suffix ("-ewb-stage1") must still fit a study name's 100 characters.
MAX_NAME = 100 - max(len(f"-{suffix}") for suffix in [*METHODS, *STAGE1_STUDIES])


class ComparisonSpec(BaseModel):
    """The REST body of POST /comparisons and what `tailtune compare create` builds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME,
                      description="comparison name; its studies are NAME-<method>, NAME-stage1 and NAME-ewb-stage1")
    dataset: str = "digits-lt"
    data_root: str | None = None
    imbalance_factor: ImbalanceFactor | None = None
    image_size: ImageSize | None = None
    methods: list[Method] = Field(default_factory=lambda: list(METHODS), min_length=1, max_length=len(METHODS))
    n_trials: TrialBudget = Field(description="each method's search budget (trials)")
    seeds: SeedCount = Field(_CONFIRM_DEFAULTS.seeds, description="seeds per confirmed configuration")
    top_k: TopK = Field(_CONFIRM_DEFAULTS.top_k, description="configurations per method confirmed")
    fixed: dict[str, ParamValue] = Field(default_factory=dict, description="config fields fixed in every study "
                                         "whose method has them, e.g. stage1.epochs")
    sampler: Literal["tpe", "gp", "random"] = "tpe"
    seed: SamplerSeed = 0

    @model_validator(mode="after")
    def _valid(self) -> ComparisonSpec:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods must be distinct")
        known = set().union(*(config_fields(method) for method in self.methods))
        unknown = sorted(set(self.fixed) - known)
        if unknown:
            raise ValueError(f"fixed names {unknown} are config fields of none of the methods {self.methods}")
        for method in self.methods:  # every study the comparison will create must be valid now
            self.method_spec(method, {})
        for suffix in self.stage1_studies():
            self.stage1_spec(suffix)
        return self

    def stage1_studies(self) -> dict[str, list[Method]]:
        """The stage-1 studies this comparison runs (by name suffix) and its methods each searches stage 1 for;
        none for a network whose every trained knob is fixed (nothing to search)."""
        return {suffix: chosen for suffix, shared in STAGE1_STUDIES.items()
                if (chosen := [method for method in self.methods if method in shared])
                and self.stage1_space(shared[0])}

    def stage1_study_of(self, method: Method) -> str | None:
        return next((suffix for suffix, members in self.stage1_studies().items() if method in members), None)

    def stage1_space(self, method: Method) -> dict[str, FloatRange | Choices]:
        """The knobs of the method's default space that train its network (stage 1's, and a folder's augmentation
        and model), less those `fixed` sets."""
        space = {**default_space(method), **folder_space(self.dataset, self.image_size, None)}
        return {name: param for name, param in space.items()
                if not name.startswith(STAGE2_PREFIX) and name not in self.fixed}

    def study_name(self, method_or_suffix: str) -> str:
        return f"{self.name}-{method_or_suffix}"

    def stage1_spec(self, suffix: str) -> StudySpec:
        """The stage-1 study: its first method searching only the trained knobs, its stage 2 at the recipe."""
        method = STAGE1_STUDIES[suffix][0]
        space = self.stage1_space(method)
        recipe = method_defaults(method, self.dataset)
        stage2 = {name: param_value(recipe, name) for name in default_space(method) if name not in space}
        return self._spec(method, self.study_name(suffix), n_trials=self.n_trials, fixed=stage2,
                          search_space=space, confirm=None, sampler=self.sampler)

    def method_spec(self, method: Method, stage1: dict[str, ParamValue]) -> StudySpec:
        """The method's study, with the stage 1 its stage-1 study chose fixed (none without one)."""
        return self._spec(method, self.study_name(method), n_trials=self.n_trials, fixed=stage1,
                          confirm=Confirmation(top_k=self.top_k, seeds=self.seeds), sampler=self.sampler)

    def _spec(self, method: Method, name: str, *, fixed: dict[str, ParamValue], **fields: object) -> StudySpec:
        own = {key: value for key, value in self.fixed.items() if key in config_fields(method)}
        return StudySpec.model_validate({
            "name": name, "method": method, "dataset": self.dataset, "data_root": self.data_root,
            "imbalance_factor": self.imbalance_factor, "image_size": self.image_size, "seed": self.seed,
            "fixed": fixed | own, **fields})  # the user's fixed fields win, in every study


# ---------------------------------------------------------------------------------------------- the result
ComparisonState = Literal["searching stage 1", "running", "done", "stopped"]


class MethodRow(BaseModel):
    """One row of the table: a method's confirmed configuration (or its recipe) over seeds."""

    study: str
    state: str = Field(description="its study's state; 'waiting' while the stage-1 study runs")
    params: dict[str, ParamValue] | None = Field(None, description="the confirmed configuration, the stage-1 "
                                                 "fields its search fixed included")
    seeds: list[int] = Field(default_factory=list)
    val: dict[str, SeedSummary | None] | None = None
    test: dict[str, SeedSummary | None] | None = None
    verdict: str | None = Field(None, description="best - recipe, test All")


class Stage1Search(BaseModel):
    """A stage-1 study: one network's trained knobs, searched once for the methods that re-use it."""

    study: str
    methods: list[Method]
    params: dict[str, ParamValue] | None = Field(None, description="the stage 1 it chose (None while it runs)")


class ComparisonRecord(BaseModel):
    id: int
    name: str
    state: ComparisonState
    spec: ComparisonSpec
    stage1: list[Stage1Search]
    stage1_trainings: int = Field(description="stage-1 trainings its studies ran (the cache served the rest)")
    methods: dict[str, MethodRow]
    recipes: dict[str, MethodRow] = Field(description="each method's recipe over the same seeds")
