"""A comparison: the methods side by side on one data set, split and budget, as the papers print them.

    tailtune compare create acc --dataset digits-lt --n-trials 8 --seeds 3

One study per method, each with confirmation over `seeds` seeds (studies/definition/confirmation.py), so every
row of the table is a mean ± std over seeds of that method's confirmed configuration. The two-stage methods
(WB, τ-norm, LOS) begin with the same stage 1 (cross-entropy + weight decay), so they search it once, in the WB
paper's order (tune stage 1, then stage 2): a stage-1 study searches the stage-1 knobs of the default space
(weight decay, and lr and epochs where the space has them) with WB's recipe stage 2 and the same budget, and
each method's study then searches only its stage-2 knobs with the best stage 1 fixed, on the backbone the cache
already holds. EWB (one stage) runs its own search.
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
TWO_STAGE: tuple[Method, ...] = ("wb", "tau-norm", "los")
STAGE2_PREFIX = "stage2."
STAGE1_SUFFIX = "stage1"
_CONFIRM_DEFAULTS = Confirmation()
# The longest study-name suffix ("-tau-norm") must still fit a study name's 100 characters.
MAX_NAME = 90


class ComparisonSpec(BaseModel):
    """The REST body of POST /comparisons and what `tailtune compare create` builds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME,
                      description="comparison name; its studies are NAME-stage1 and NAME-<method>")
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
        self.stage1_spec()
        return self

    @property
    def two_stage(self) -> list[Method]:
        return [method for method in self.methods if method in TWO_STAGE]

    def stage1_space(self) -> dict[str, FloatRange | Choices]:
        """The two-stage methods' shared backbone knobs of the default space (stage 1's, and a folder's
        augmentation and model) that `fixed` leaves searched."""
        space = {**default_space("wb"), **folder_space(self.dataset, self.image_size, None)}
        return {name: param for name, param in space.items()
                if not name.startswith(STAGE2_PREFIX) and name not in self.fixed}

    def study_name(self, method: Method | Literal["stage1"]) -> str:
        return f"{self.name}-{method}"

    def stage1_spec(self) -> StudySpec | None:
        """WB searching only the shared stage-1 knobs, its stage 2 at the recipe; None without two-stage methods
        or with every stage-1 knob fixed (nothing to search)."""
        space = self.stage1_space()
        if not self.two_stage or not space:
            return None
        recipe = method_defaults("wb", self.dataset)
        stage2 = {name: param_value(recipe, name) for name in default_space("wb") if name not in space}
        return self._spec("wb", self.study_name(STAGE1_SUFFIX), n_trials=self.n_trials, fixed=stage2,
                          search_space=space, confirm=None, sampler=self.sampler)

    def method_spec(self, method: Method, stage1: dict[str, ParamValue]) -> StudySpec:
        """The method's study; a two-stage method's with the stage 1 the stage-1 study chose fixed."""
        chosen = stage1 if method in TWO_STAGE else {}
        return self._spec(method, self.study_name(method), n_trials=self.n_trials, fixed=chosen,
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


class ComparisonRecord(BaseModel):
    id: int
    name: str
    state: ComparisonState
    spec: ComparisonSpec
    stage1_study: str | None = None
    stage1_params: dict[str, ParamValue] | None = Field(None, description="the stage 1 the stage-1 study chose "
                                                        "for the two-stage methods (None while it runs)")
    stage1_trainings: int = Field(description="stage-1 trainings its studies ran (the cache served the rest)")
    methods: dict[str, MethodRow]
    recipes: dict[str, MethodRow] = Field(description="each method's recipe over the same seeds")
