"""Typed views of studies, trials and workers, as the REST API, the CLI and reports read them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from studies.definition.confirmation import ConfirmedAnswer
from studies.definition.spec import StudySpec
from studies.definition.walls import RangeWall
from trainers.results import SplitCoverage

T = TypeVar("T")

StudyState = Literal["active", "stopped", "done"]
TrialStateName = Literal["running", "waiting", "complete", "pruned", "fail"]
WorkerState = Literal["idle", "running", "stopping", "exited", "gone"]
# Per-split accuracies in percent, keys all/many/medium/few; None where a split has no class.
SplitValues = dict[str, float | None]


# Items per page where a caller names no limit, and the most one page may hold (the API refuses more; readers that
# want everything, as the CSV export, read pages of this size).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="items in all pages")
    offset: int
    limit: int


class TrialCounts(BaseModel):
    running: int = 0
    waiting: int = Field(0, description="queued retries (and enqueued trials) not yet picked up")
    complete: int = 0
    pruned: int = 0
    fail: int = Field(0, description="crashed, interrupted or reaped trials; each is retried or replaced")

    @property
    def finished(self) -> int:
        """Trials that used up budget: COMPLETE and PRUNED (a pruned trial ran and was judged)."""
        return self.complete + self.pruned


class RecipeComparison(BaseModel):
    """Recipe vs best: the study's recipe (enqueued as trial 0 with the preset's values, else tailtune's
    defaults) beside the best trial found, per split, with the difference best - recipe in points."""

    trial_number: int = Field(description="the recipe's trial (0, or a retry of it)")
    val: SplitValues
    test: SplitValues
    best_minus_recipe_val: SplitValues = Field(description="None where either side has no value (an empty split)")
    best_minus_recipe_test: SplitValues


def best_minus(best: SplitValues | None, reference: SplitValues) -> SplitValues:
    """best - reference per split, in points; None where either side has no value (an empty split)."""
    best = best or {}
    return {split: None if best.get(split) is None or value is None else best[split] - value
            for split, value in reference.items()}


class BaselineComparison(BaseModel):
    """The study's simple baseline (a class-balanced linear classifier on the raw pixels, fitted once per study
    on its own splits by the first worker) beside the best trial, per split, with best - baseline in points."""

    state: Literal["fitting", "done", "skipped", "failed"] = Field(
        description="fitting: a worker is fitting it; skipped: the data are too large (see reason)")
    model: str | None = Field(None, description="what was fitted")
    val: SplitValues | None = None
    test: SplitValues | None = None
    best_minus_baseline_val: SplitValues | None = Field(None, description="None until both sides have values")
    best_minus_baseline_test: SplitValues | None = None
    reason: str | None = Field(None, description="why it was skipped or failed")

    @classmethod
    def of(cls, stored: dict[str, Any], best_val: SplitValues | None,
           best_test: SplitValues | None) -> BaselineComparison:
        val, test = stored.get("val"), stored.get("test")
        return cls(state=stored["state"], model=stored.get("model"), val=val, test=test,
                   best_minus_baseline_val=best_minus(best_val, val) if val and best_val else None,
                   best_minus_baseline_test=best_minus(best_test, test) if test and best_test else None,
                   reason=stored.get("reason"))


class StudySummary(BaseModel):
    """A study as lists show it: everything but its spec, so a page stays small whatever the specs hold."""

    id: int = Field(description="the Optuna study id (also optuna-dashboard's)")
    name: str
    state: StudyState
    method: str
    dataset: str
    n_trials: int = Field(description="budget: the study is done when this many are COMPLETE or PRUNED")
    counts: TrialCounts
    best_trial_number: int | None = None
    best_values: list[float] | None = None
    best_params: dict[str, Any] | None = None
    best_val: SplitValues | None = None
    best_test: SplitValues | None = None
    best_val_coverage: SplitCoverage | None = Field(None, description="which classes the best trial's val "
                                                    "means are over (classes without val images are left out)")
    recipe: RecipeComparison | None = Field(None, description="recipe vs best; None until the recipe trial "
                                            "completes, or when the search space leaves the recipe out")
    baseline: BaselineComparison | None = Field(None, description="simple baseline vs best; None until a worker "
                                                "has claimed the study")
    stop_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class StudyRecord(StudySummary):
    """One study with its full spec (GET /studies/{id}, `tailtune study status`)."""

    spec: StudySpec
    walls: list[RangeWall] = Field(default_factory=list, description="searched parameters whose best value sits "
                                   "at the edge of its range (the optimum may lie beyond), with how to widen it")
    confirmed: ConfirmedAnswer | None = Field(None, description="the study's answer over seeds, once its search "
                                              "budget is spent and confirmation has started (spec.confirm)")


class TrialRecord(BaseModel):
    number: int
    state: TrialStateName
    params: dict[str, Any]
    values: list[float | None] | None = None
    val: SplitValues | None = Field(None, description="val accuracy per split; None until the trial finished")
    test: SplitValues | None = None
    diagnostics: dict[str, Any] | None = None
    duration_s: float | None = None
    worker: str | None = Field(None, description="id of the worker that ran (or runs) it")
    retried_from: int | None = Field(None, description="number of the failed trial this one retries")
    retry_history: list[int] = Field(default_factory=list, description="the retried trials, oldest first")


class WorkerRecord(BaseModel):
    id: str
    host: str
    pid: int
    state: WorkerState = Field(description="gone: no heartbeat for three of its intervals (killed, or cut off)")
    started_at: datetime
    last_seen: datetime
    current_study_id: int | None = None
    current_trial_number: int | None = None
