"""Confirmation over seeds: the study's answer is not the luckiest of its trials but the configuration whose
val stays best when it is trained again with other seeds.

The best of N noisy trials overstates itself (the winner's curse): on digits-lt two configurations a search put
level differ by -0.08 ± 0.41 test points over five seeds while one seed's test Few moves 90-95 %. So when the
search budget is spent, the top `top_k` distinct configurations by val and the recipe are trained with
`seeds - 1` further seeds (the search's own run is the first), and the answer is read off the means:

- the confirmed best is the configuration with the best mean val (first objective) over its seeds;
- for it and the recipe, val and test per split as mean ± std and a 95 % t interval (studies/definition/
  statistics.py);
- best - recipe paired by seed, with its interval and a verdict.

The runs live in a linked Optuna study, so the search's sampler never reads them (they would count as extra
observations of the winners and narrow its model where it already looked); each carries the search trial it
confirms and its seed as user attributes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from studies.definition.space import ParamValue
from studies.definition.statistics import PairedDifference, SeedSummary, paired_difference, shown, summarize
from trainers.errors import UserInputError
from trainers.results import SPLITS

# User attributes of a confirmation run: the search trial whose params it runs again, and its seed.
CONFIRMS_ATTR = "confirms_trial"
SEED_ATTR = "confirm_seed"
# The linked Optuna study's name; '~' is not allowed in a study name, so it cannot clash with one.
LINKED_SUFFIX = "~confirm"


# strict: JSON's true is no integer, though pydantic's lax mode takes a bool for one.
TopK = Annotated[int, Field(ge=1, le=20, strict=True)]
SeedCount = Annotated[int, Field(ge=2, le=20, strict=True)]


class Confirmation(BaseModel):
    """How a study confirms its answer once its search budget is spent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: TopK = Field(3, description="distinct configurations of the search, best by val, to confirm")
    seeds: SeedCount = Field(3, description="seeds per configuration in all, the search's run counting as one; "
                             "seed s+1, s+2, ... after the study's seed s")

    def runs(self, configurations: int) -> int:
        """Trainings that confirming `configurations` distinct configurations (the recipe among them) costs."""
        return configurations * (self.seeds - 1)

    def cost_line(self, n_trials: int) -> str:
        return (f"confirmation: the top {self.top_k} configurations and the recipe, {self.seeds} seeds each: up to "
                f"{self.runs(self.top_k + 1)} trainings after the {n_trials}-trial search "
                f"({(n_trials + self.runs(self.top_k + 1)) / n_trials:.2f}x the search's trials)")


def parse_confirm(text: str) -> Confirmation:
    """`K:S` from the command line: top-k configurations, seeds in all."""
    top_k, sep, seeds = text.partition(":")
    try:
        return Confirmation(top_k=int(top_k), seeds=int(seeds))
    except ValueError:
        raise UserInputError(f"--confirm {text!r}: expected K:S, top-k configurations (1-20) and seeds in all "
                             f"(2-20), e.g. 3:3; --no-confirm to skip confirmation") from None


class PlannedRun(BaseModel):
    """One confirmation run: a search trial's params again, with another seed."""

    trial: int = Field(description="number of the search trial it confirms")
    seed: int
    recipe: bool = False
    params: dict[str, ParamValue]


class SearchTrial(BaseModel):
    """A COMPLETE search trial as the plan reads it."""

    number: int
    value: float = Field(description="its first objective (val, maximised)")
    params: dict[str, ParamValue]
    recipe: bool = False


def plan_runs(confirmation: Confirmation, trials: list[SearchTrial], search_seed: int) -> list[PlannedRun]:
    """The top-k distinct configurations by val and the first recipe trial, each with seeds s+1 ... s+seeds-1.
    A configuration found twice (a queued duplicate, a retry) is confirmed once, under its first trial."""
    chosen: dict[str, SearchTrial] = {}
    for trial in sorted(trials, key=lambda t: (-t.value, t.number)):
        if len(chosen) < confirmation.top_k:
            chosen.setdefault(_params_key(trial.params), trial)
    recipe = min((t for t in trials if t.recipe), key=lambda t: t.number, default=None)
    if recipe is not None:
        chosen.setdefault(_params_key(recipe.params), recipe)
    return [PlannedRun(trial=trial.number, seed=search_seed + offset, recipe=trial.recipe, params=trial.params)
            for trial in sorted(chosen.values(), key=lambda t: t.number)
            for offset in range(1, confirmation.seeds)]


def _params_key(params: dict[str, ParamValue]) -> str:
    return repr(sorted(params.items()))


# ---------------------------------------------------------------------------------------------- the answer
class SeedRun(BaseModel):
    """One finished training of a configuration: the search trial itself or a confirmation run."""

    seed: int
    val: dict[str, float | None]
    test: dict[str, float | None]


class ConfirmedConfiguration(BaseModel):
    trial_number: int = Field(description="the search trial whose configuration this is")
    params: dict[str, Any]
    recipe: bool
    seeds: list[int]
    val: dict[str, SeedSummary | None] = Field(description="per split; None where a split has no class")
    test: dict[str, SeedSummary | None]


class ConfirmedAnswer(BaseModel):
    """The study's answer after confirmation (while it runs: so far)."""

    complete: bool = Field(description="every planned confirmation run finished")
    runs_finished: int
    runs_planned: int
    objective: str = Field(description="the val split whose mean over seeds picks the best")
    best: ConfirmedConfiguration
    recipe: ConfirmedConfiguration | None = None
    candidates: list[ConfirmedConfiguration] = Field(description="every confirmed configuration, best first")
    best_minus_recipe: PairedDifference | None = Field(None, description="test All, best - recipe paired by seed")
    best_minus_recipe_val: dict[str, PairedDifference | None] | None = None
    best_minus_recipe_test: dict[str, PairedDifference | None] | None = None
    verdict: str


def answer_rows(answer: ConfirmedAnswer) -> list[tuple[str, str, list[str]]]:
    """(row label, val|test, [All, Many, Medium, Few] as "mean ± std [interval]") for the confirmed best, the
    recipe and best - recipe: what the CLI, the report and the card print."""
    sides = [(f"best #{answer.best.trial_number}", answer.best)]
    if answer.recipe is not None:
        sides.append((f"recipe #{answer.recipe.trial_number}", answer.recipe))
    rows = [(label, part, [shown(getattr(side, part)[split]) for split in SPLITS])
            for label, side in sides for part in ("val", "test")]
    for part, differences in (("val", answer.best_minus_recipe_val), ("test", answer.best_minus_recipe_test)):
        if differences is not None:
            rows.append(("best - recipe", part, [shown(differences[split], signed=True) for split in SPLITS]))
    return rows


def confirmed_answer(runs: dict[int, list[SeedRun]], trials: dict[int, SearchTrial], *, objective: str,
                     runs_planned: int, runs_finished: int) -> ConfirmedAnswer | None:
    """The answer from each confirmed configuration's runs (search trial number -> its runs, any seed order)."""
    configurations = [_configuration(trials[number], seed_runs) for number, seed_runs in runs.items() if seed_runs]
    if not configurations:
        return None
    ranked = sorted(configurations, key=lambda c: (-_mean(c.val, objective), c.trial_number))
    best = ranked[0]
    recipe = next((c for c in ranked if c.recipe), None)
    answer: dict[str, Any] = {
        "complete": runs_finished >= runs_planned, "runs_finished": runs_finished, "runs_planned": runs_planned,
        "objective": objective, "best": best, "recipe": recipe, "candidates": ranked}
    if recipe is None:
        return ConfirmedAnswer(**answer, verdict="no recipe trial to compare with (the search space leaves it out)")
    best_runs, recipe_runs = runs[best.trial_number], runs[recipe.trial_number]
    by_split = {name: _paired(best_runs, recipe_runs, name) for name in ("val", "test")}
    headline = by_split["test"]["all"]
    return ConfirmedAnswer(**answer, best_minus_recipe=headline, best_minus_recipe_val=by_split["val"],
                           best_minus_recipe_test=by_split["test"],
                           verdict=_headline_verdict(best, recipe, headline))


def _configuration(trial: SearchTrial, seed_runs: list[SeedRun]) -> ConfirmedConfiguration:
    ordered = sorted(seed_runs, key=lambda run: run.seed)
    return ConfirmedConfiguration(
        trial_number=trial.number, params=trial.params, recipe=trial.recipe, seeds=[run.seed for run in ordered],
        val=_summaries([run.val for run in ordered]), test=_summaries([run.test for run in ordered]))


def _summaries(per_seed: list[dict[str, float | None]]) -> dict[str, SeedSummary | None]:
    values = {split: [run[split] for run in per_seed if run.get(split) is not None] for split in SPLITS}
    return {split: summarize(found) if found else None for split, found in values.items()}


def _mean(values: dict[str, SeedSummary | None], split: str) -> float:
    summary = values.get(split)
    return summary.mean if summary is not None else -float("inf")


def _paired(best: list[SeedRun], recipe: list[SeedRun], name: str) -> dict[str, PairedDifference | None]:
    recipe_by_seed = {run.seed: getattr(run, name) for run in recipe}
    pairs = [(getattr(run, name), recipe_by_seed[run.seed]) for run in best if run.seed in recipe_by_seed]
    differences: dict[str, PairedDifference | None] = {}
    for split in SPLITS:
        both = [(a[split], b[split]) for a, b in pairs if a.get(split) is not None and b.get(split) is not None]
        differences[split] = paired_difference(*zip(*both, strict=True)) if both else None
    return differences


def _headline_verdict(best: ConfirmedConfiguration, recipe: ConfirmedConfiguration,
                      headline: PairedDifference | None) -> str:
    if best.trial_number == recipe.trial_number:
        return "the recipe is the confirmed best: no configuration found beats it on mean val over seeds"
    if headline is None:
        return "best and recipe share no seed with a test All value yet"
    return f"best - recipe, test All: {headline.verdict}"
