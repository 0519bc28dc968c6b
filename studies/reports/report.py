"""A study's report: PNG figures plus one index.html (leaderboard and figures), attached to the study too.

    tailtune report wb-digits --storage sqlite:///tailtune.db          # writes ./reports/wb-digits/index.html

Reads only what Optuna stores (trial params, distributions, values, and the user attributes that
studies/run/objective.py writes), so it works on any tailtune study, running or done. The figures:
best-so-far val accuracy; per-split val accuracy against each searched parameter; the best trial's per-class
weight norms before and after stage 2 (WB Fig. 6) with its per-class test accuracy; for LOS, logits
magnitude and regularized std per class group; Few-vs-All val accuracy with the Pareto front.

The series each figure draws are computed by the public functions below, so tests check the data drawn.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from studies.definition.confirmation import ConfirmedAnswer, answer_rows
from studies.definition.errors import NoFinishedTrialsError
from studies.definition.records import best_minus
from studies.definition.spec import StudySpec
from studies.definition.walls import range_walls
from studies.reports.plots import (
    LABELS,
    SPLITS,
    ClassProfile,
    ParamPoints,
    Series,
    TradeOffPoint,
    draw_best_so_far,
    draw_logits,
    draw_params,
    draw_trade_off,
    draw_weight_norms,
)
from studies.store import registry
from studies.store.db import Database
from studies.store.registry import BASELINE_ATTR, RECIPE_ATTR, SPEC_ATTR
from trainers.errors import UserInputError
from trainers.results import SplitCoverage, SplitRule
from trainers.splits import split_rule

LEADERBOARD_ROWS = 10
DIFFERENCE_LABELS = ("best - recipe", "best - baseline")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pngs: list[Path]


@dataclass(frozen=True)
class FinishedStudy:
    """What a report reads: the study's finished trials (in trial order) and what was optimised."""

    name: str
    objectives: list[str]  # val split of each objective, e.g. ["all"] or ["few", "all"]
    trials: list[FrozenTrial]
    state_counts: dict[str, int]  # every trial of the study by state, e.g. {"COMPLETE": 34, "PRUNED": 6}
    baseline: dict[str, Any] | None = None  # the study's simple baseline as studies/store/baselines.py keeps it
    spec: StudySpec | None = None  # None for a study made outside tailtune
    confirmed: ConfirmedAnswer | None = None  # the answer over seeds (studies/definition/confirmation.py)

    @property
    def best(self) -> FrozenTrial:
        """Highest first objective (every tailtune objective is maximised); the earliest trial on a tie."""
        return max(self.trials, key=lambda t: (t.values[0], -t.number))

    @property
    def recipe(self) -> FrozenTrial | None:
        """The recipe's finished trial (trial 0, or its retry), if it has finished."""
        return next((t for t in self.trials if t.user_attrs.get(RECIPE_ATTR)), None)


def build_report(db: Database, study_name: str, out_dir: Path, artifact_dir: Path | None = None) -> ReportFiles:
    """Writes the figures and index.html under `out_dir`; with `artifact_dir`, attaches the PNGs to the study
    in Optuna's FileSystemArtifactStore there (optuna-dashboard's Artifacts tab, started with that dir)."""
    study = _load_study(db, study_name)
    finished = replace(finished_study(study), confirmed=_confirmed(db, study_name))
    if not finished.trials:
        raise NoFinishedTrialsError(f"study {study_name!r} has no finished trials yet; run a worker: "
                             f"tailtune worker --study {study_name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = draw_figures(finished, out_dir)
    html_path = out_dir / "index.html"
    html_path.write_text(render_html(finished, pngs), encoding="utf-8")
    if artifact_dir is not None:
        attach_to_study(study, pngs, artifact_dir)
    return ReportFiles(html=html_path, pngs=pngs)


def _confirmed(db: Database, study_name: str) -> ConfirmedAnswer | None:
    try:
        return registry.get_study_by_name(db, name=study_name).confirmed
    except registry.StudyNotFoundError:  # an Optuna study tailtune did not create
        return None


def _load_study(db: Database, study_name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=db.optuna_storage())
    except KeyError:
        raise UserInputError(f"no study named {study_name!r}; check the name and the database "
                             "(tailtune study status NAME --storage URL)") from None


def finished_study(study: optuna.Study) -> FinishedStudy:
    every_trial = study.get_trials(deepcopy=False)
    # A COMPLETE trial without "val" was told by hand, not by studies/run/objective.py: it has nothing to plot.
    trials = [t for t in every_trial if t.state == TrialState.COMPLETE and "val" in t.user_attrs]
    return FinishedStudy(name=study.study_name, objectives=_objectives(study),
                         trials=sorted(trials, key=lambda t: t.number),
                         state_counts=dict(Counter(t.state.name for t in every_trial)),
                         baseline=study.user_attrs.get(BASELINE_ATTR),
                         spec=StudySpec.model_validate(study.user_attrs[SPEC_ATTR]) if SPEC_ATTR in study.user_attrs
                         else None)


def _objectives(study: optuna.Study) -> list[str]:
    """The val split of each objective: from the stored spec, else from Optuna's metric names."""
    if SPEC_ATTR in study.user_attrs:
        return list(study.user_attrs[SPEC_ATTR]["objectives"])
    names = study.metric_names or []
    if names and all(name in SPLITS for name in names):
        return list(names)
    if len(study.directions) == 1:
        return ["all"]  # StudySpec's default objective
    return [f"objective {i}" for i in range(len(study.directions))]


# ---------------------------------------------------------------------------------------------- series
def best_so_far(finished: FinishedStudy) -> list[Series]:
    """Single objective: the running best objective value, and the All / Few val accuracy of the trial that is
    best so far. Several objectives: each of All and Few on its own running maximum."""
    trials = finished.trials
    if len(finished.objectives) > 1:
        return [_running_max(trials, split) for split in ("all", "few")]
    objective = finished.objectives[0]
    numbers, incumbents, best = [], [], None
    for trial in trials:
        if best is None or trial.values[0] > best.values[0]:
            best = trial
        numbers.append(trial.number)
        incumbents.append(best)
    split = objective if objective in SPLITS else "all"
    series = [Series(f"best val {LABELS.get(objective, objective)} (objective)", split, numbers,
                     [t.values[0] for t in incumbents])]
    for other in ("all", "few"):
        if other != objective:
            points = [(n, t.user_attrs["val"][other]) for n, t in zip(numbers, incumbents, strict=True)]
            points = [(n, v) for n, v in points if v is not None]
            series.append(Series(f"val {LABELS[other]} of the best trial so far", other,
                                 [n for n, _ in points], [v for _, v in points]))
    return series


def _running_max(trials: list[FrozenTrial], split: str) -> Series:
    numbers, values = [], []
    for trial in trials:
        value = trial.user_attrs["val"][split]
        if value is not None:
            numbers.append(trial.number)
            values.append(value if not values else max(values[-1], value))
    return Series(f"best val {LABELS[split]} so far", split, numbers, values)


def every_trial_all(finished: FinishedStudy) -> Series:
    return Series("val All of each trial", "all", [t.number for t in finished.trials],
                  [t.user_attrs["val"]["all"] for t in finished.trials])


def searched_params(finished: FinishedStudy) -> dict[str, BaseDistribution]:
    """Every parameter any finished trial searched, in first-seen order, with its latest distribution."""
    distributions: dict[str, BaseDistribution] = {}
    for trial in finished.trials:
        distributions.update(trial.distributions)
    return distributions


def param_points(finished: FinishedStudy, name: str, distribution: BaseDistribution) -> ParamPoints:
    trials = [t for t in finished.trials if name in t.params]
    categorical = isinstance(distribution, CategoricalDistribution)
    return ParamPoints(
        name=name, log=bool(getattr(distribution, "log", False)),
        categories=[_format(c) for c in distribution.choices] if categorical else None,
        x=[_format(t.params[name]) if categorical else t.params[name] for t in trials],
        y={split: [t.user_attrs["val"][split] for t in trials] for split in SPLITS})


def class_profile(trial: FrozenTrial) -> ClassProfile:
    """The trial's per-class values, classes sorted by training images, most first (stable on ties)."""
    attrs = trial.user_attrs
    counts = attrs["class_counts"]
    order = sorted(range(len(counts)), key=lambda k: -counts[k])
    # trials before the rule was stored grouped by their kept counts
    rule = (SplitRule.model_validate(attrs["split_rule"]) if "split_rule" in attrs
            else split_rule(counts, attrs["config"]["data"]["name"]))
    group_of = {k: group for group, members in (("many", rule.many_classes), ("medium", rule.medium_classes),
                                                ("few", rule.few_classes)) for k in members}
    diagnostics = attrs["diagnostics"]

    def ordered(values: list[Any]) -> list[Any]:
        return [values[k] for k in order]

    def ordered_if_stored(name: str) -> list[float | None] | None:
        return ordered(diagnostics[name]) if diagnostics.get(name) is not None else None

    return ClassProfile(
        trial_number=trial.number, classes=order, counts=ordered(counts), groups=[group_of[k] for k in order],
        stage1_norms=ordered(attrs["stage1_weight_norms"]), stage2_norms=ordered(diagnostics["weight_norms"]),
        test_accuracy=ordered(attrs["per_class_test"]), logits_magnitude=ordered_if_stored("logits_magnitude"),
        regularized_std=ordered_if_stored("regularized_std"))


def trade_off_points(finished: FinishedStudy) -> list[TradeOffPoint]:
    vals = [(t.number, t.user_attrs["val"]) for t in finished.trials]
    return [TradeOffPoint(number, val["all"], val["few"]) for number, val in vals if val["few"] is not None]


def pareto_front(points: list[TradeOffPoint]) -> list[TradeOffPoint]:
    """Points no other point beats on both val All and val Few (both maximised); one of identical points."""
    front: list[TradeOffPoint] = []
    for point in sorted(points, key=lambda p: (-p.val_all, -p.val_few, p.trial_number)):
        if not front or point.val_few > front[-1].val_few:
            front.append(point)
    return front


def leaderboard(finished: FinishedStudy, rows: int = LEADERBOARD_ROWS) -> list[FrozenTrial]:
    return sorted(finished.trials, key=lambda t: (-t.values[0], t.number))[:rows]


# ---------------------------------------------------------------------------------------------- figures
def draw_figures(finished: FinishedStudy, out_dir: Path) -> list[Path]:
    """Draws every figure the study has data for; returns the PNG paths in the order the page shows them."""
    best = finished.best
    profile = class_profile(best)
    drawn = []

    def path(name: str) -> Path:
        drawn.append(out_dir / f"{name}.png")
        return drawn[-1]

    draw_best_so_far(best_so_far(finished), every_trial_all(finished), _best_so_far_title(finished),
                     path("best-so-far"))
    panels = [param_points(finished, name, d) for name, d in searched_params(finished).items()]
    if panels:
        draw_params(panels, path("accuracy-vs-params"))
    draw_weight_norms(profile, path("weight-norms"))
    if best.user_attrs["config"]["method"] == "los" and profile.logits_magnitude is not None:
        draw_logits(profile, path("los-logits"))
    points = trade_off_points(finished)
    if points:
        draw_trade_off(points, pareto_front(points), best.number, path("pareto-few-all"))
    return drawn


def _best_so_far_title(finished: FinishedStudy) -> str:
    if len(finished.objectives) > 1:
        return "best-so-far val accuracy per split (several objectives: running maximum of each)"
    objective = finished.objectives[0]
    return f"best-so-far val accuracy (objective: val {LABELS.get(objective, objective)})"


def attach_to_study(study: optuna.Study, pngs: list[Path], artifact_dir: Path) -> list[str]:
    """Uploads each PNG as a study artifact; a later report overwrites the artifact of the same file name,
    so re-running a report refreshes the dashboard's figures instead of piling up copies."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(artifact_dir)
    existing = {meta.filename: meta.artifact_id for meta in get_all_artifact_meta(study)}
    ids = []
    for png in pngs:
        if png.name in existing:
            with png.open("rb") as content:
                store.write(existing[png.name], content)
            ids.append(existing[png.name])
        else:
            ids.append(upload_artifact(artifact_store=store, file_path=str(png), study_or_trial=study))
    return ids


# ---------------------------------------------------------------------------------------------- html
FIGURE_CAPTIONS = {
    "best-so-far": "Best-so-far val accuracy against trial number (grey dots: val All of each trial).",
    "accuracy-vs-params": "Val accuracy per split against each searched parameter; log axes where the search "
                          "distribution is log.",
    "weight-norms": "Best trial: per-class classifier weight norms before and after stage 2 (WB Fig. 6), and "
                    "per-class test accuracy, classes sorted by training images.",
    "los-logits": "Best trial (LOS): logits magnitude and regularized standard deviation per class and per "
                  "class group.",
    "pareto-few-all": "Few vs All val accuracy of every finished trial; squares: the Pareto front.",
}


def render_html(finished: FinishedStudy, pngs: list[Path]) -> str:
    best = finished.best
    summary = {
        "study": finished.name, "method": best.user_attrs["config"]["method"],
        "data set": best.user_attrs["config"]["data"]["name"],
        "objectives": ", ".join(f"val {LABELS.get(o, o)} (max)" for o in finished.objectives),
        "trials": ", ".join(f"{n} {state.lower()}" for state, n in sorted(finished.state_counts.items())),
        "best trial": f"#{best.number}: val All {_percent(best.user_attrs['val']['all'])}, "
                      f"test All {_percent(best.user_attrs['test']['all'])}",
        **_groups(best.user_attrs),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return _PAGE.format(title=html.escape(f"tailtune report: {finished.name}"),
                        summary=_summary_table(summary), confirmed=_confirmed_table(finished.confirmed),
                        recipe=_recipe_table(finished),
                        baseline=_baseline_table(finished), walls=_walls_list(finished),
                        leaderboard=_leaderboard_table(finished), figures="\n".join(map(_figure, pngs)))


def _groups(attrs: dict) -> dict[str, str]:
    """How Many / Medium / Few were formed and which classes the val means are over (trials that stored it)."""
    if "val_coverage" not in attrs:
        return {}
    rule = SplitRule.model_validate(attrs["split_rule"])
    return {"Many / Medium / Few": f"{len(rule.many_classes)} / {len(rule.medium_classes)} / "
                                   f"{len(rule.few_classes)} classes; rule: {rule.rule}",
            "val coverage": SplitCoverage.model_validate(attrs["val_coverage"]).text("val")}


def _figure(png: Path) -> str:
    name = html.escape(png.name)
    return (f'<figure><a href="{name}"><img src="{name}" alt="{html.escape(png.stem)}"></a>'
            f"<figcaption>{html.escape(FIGURE_CAPTIONS[png.stem])}</figcaption></figure>")


def _summary_table(summary: dict[str, str]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary.items())
    return f'<table class="summary">{rows}</table>'


def recipe_vs_best_rows(finished: FinishedStudy) -> list[tuple[str, str, list[float | None]]] | None:
    """(row label, val|test, [All, Many, Medium, Few]) for the best trial, the recipe and best - recipe; None
    until the recipe's trial has finished."""
    recipe = finished.recipe
    if recipe is None:
        return None
    return _vs_best_rows(finished.best, f"recipe #{recipe.number}", recipe.user_attrs)


def baseline_vs_best_rows(finished: FinishedStudy) -> list[tuple[str, str, list[float | None]]] | None:
    """As recipe_vs_best_rows, for the study's simple baseline; None until it is fitted (or when skipped)."""
    if not finished.baseline or finished.baseline.get("state") != "done":
        return None
    return _vs_best_rows(finished.best, "baseline", finished.baseline)


def _vs_best_rows(best: FrozenTrial, label: str,
                  reference: dict[str, Any]) -> list[tuple[str, str, list[float | None]]]:
    rows = []
    for part in ("val", "test"):
        difference = best_minus(best.user_attrs[part], reference[part])
        rows += [(f"best #{best.number}", part, [best.user_attrs[part][s] for s in SPLITS]),
                 (label, part, [reference[part][s] for s in SPLITS]),
                 (f"best - {label.split()[0]}", part, [difference[s] for s in SPLITS])]
    return rows


def _recipe_table(finished: FinishedStudy) -> str:
    rows = recipe_vs_best_rows(finished)
    if rows is None:
        return "<p>The recipe's trial (trial 0) has not finished yet.</p>"
    return _comparison_table(rows, "recipe: the preset's values, else tailtune's defaults, run as trial 0; "
                                   "best - recipe in points (per-class-mean accuracy, %)")


def _confirmed_table(answer: ConfirmedAnswer | None) -> str:
    if answer is None:
        return "<p>Not confirmed yet: the top configurations and the recipe are trained with further seeds once " \
               "the search budget is spent (or the study was created with --no-confirm).</p>"
    head = "<tr><th>configuration</th><th>split</th>" + "".join(f"<th>{LABELS[s]}</th>" for s in SPLITS) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in (label, part, *cells)) + "</tr>"
                   for label, part, cells in answer_rows(answer))
    progress = "" if answer.complete else f" (so far: {answer.runs_finished} of {answer.runs_planned} runs)"
    caption = (f"over seeds{progress}: mean ± std [95 % t interval], %; best = best mean val "
               f"{LABELS.get(answer.objective, answer.objective)}; best - recipe paired by seed")
    table = f'<table class="leaderboard"><caption>{html.escape(caption)}</caption>{head}{body}</table>'
    return f"{table}<p>{html.escape(answer.verdict)}</p>"


def _baseline_table(finished: FinishedStudy) -> str:
    rows, baseline = baseline_vs_best_rows(finished), finished.baseline or {}
    if rows is None:
        reason = f": {baseline['reason']}" if baseline.get("reason") else ""
        return f"<p>No baseline: {html.escape(baseline.get('state', 'no worker has fitted it yet') + reason)}.</p>"
    return _comparison_table(rows, f"baseline: {baseline['model']}, fitted on the study's own splits; "
                                   "best - baseline in points (per-class-mean accuracy, %)")


def _walls_list(finished: FinishedStudy) -> str:
    walls = range_walls(finished.spec, finished.best.params) if finished.spec else []
    if not walls:
        return "<p>No searched parameter of the best trial sits at an edge of its range.</p>"
    items = "".join(f"<li>{html.escape(wall.text)}</li>" for wall in walls)
    return f"<ul>{items}</ul>"


def _comparison_table(rows: list[tuple[str, str, list[float | None]]], caption: str) -> str:
    head = "<tr><th>trial</th><th>split</th>" + "".join(f"<th>{LABELS[s]}</th>" for s in SPLITS) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
        label, part, *[_percent(v, signed=label in DIFFERENCE_LABELS) for v in values])) + "</tr>"
        for label, part, values in rows)
    return f'<table class="leaderboard"><caption>{html.escape(caption)}</caption>{head}{body}</table>'


def _leaderboard_table(finished: FinishedStudy) -> str:
    params = list(searched_params(finished))
    # <wbr> after each dot lets long dotted names (stage2.maxnorm_thresh) wrap in a narrow column.
    names = [html.escape(p).replace(".", ".<wbr>") for p in params]
    head = ("<tr><th rowspan=2>trial</th>" + "".join(f"<th rowspan=2>{name}</th>" for name in names)
            + "<th colspan=4>val (%)</th><th colspan=4>test (%)</th></tr><tr>"
            + "".join(f"<th>{LABELS[s]}</th>" for s in SPLITS) * 2 + "</tr>")
    rows = []
    for trial in leaderboard(finished):
        cells = [f"#{trial.number}"] + [_format(trial.params.get(p, "-")) for p in params]
        cells += [_percent(trial.user_attrs[part][s]) for part in ("val", "test") for s in SPLITS]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    objective = LABELS.get(finished.objectives[0], finished.objectives[0])
    caption = f"top {len(rows)} finished trials by val {objective} (per-class-mean accuracy)"
    table = f'<table class="leaderboard"><caption>{caption}</caption>{head}{"".join(rows)}</table>'
    return f'<div class="scroll">{table}</div>'


def _format(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"  # an empty split: no class, no accuracy
    return f"{value:+.2f}" if signed else f"{value:.2f}"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px; color: #111; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 0.85em; }}
th, td {{ border: 1px solid #bbb; padding: 2px 6px; text-align: right; }}
.scroll {{ overflow-x: auto; }}
table.summary th {{ text-align: left; background: #f2f2f2; }} table.summary td {{ text-align: left; }}
table.leaderboard tr:nth-child(even) td {{ background: #f7f7f7; }}
table.leaderboard th {{ background: #e8e8e8; }}
caption {{ caption-side: top; text-align: left; padding-bottom: 4px; color: #444; }}
figure {{ margin: 0 0 28px; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ color: #444; font-size: 0.9em; }}
</style></head>
<body>
<h1>{title}</h1>
{summary}
<h2>Confirmed over seeds</h2>
{confirmed}
<h2>Recipe vs best (search seed)</h2>
{recipe}
<h2>Baseline vs best</h2>
{baseline}
<h2>Range walls</h2>
{walls}
<h2>Leaderboard</h2>
{leaderboard}
<h2>Figures</h2>
{figures}
</body></html>
"""
