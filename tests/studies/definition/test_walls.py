"""The search says when it hit a wall: the best value at the edge of its range, which side, and how to widen it."""

from __future__ import annotations

import json

import optuna
from typer.testing import CliRunner

from studies.definition.space import Choices, FloatRange, sample_params
from studies.definition.spec import StudySpec
from studies.definition.walls import range_walls
from studies.reports.report import finished_study, render_html
from studies.store import registry
from studies.store.db import Database
from tailtune.commands import study as study_command

NARROW = {"stage1.weight_decay": FloatRange(low=0.01, high=0.05, log=True)}


def _walls(space: dict, params: dict, method: str = "wb") -> list[tuple[str, str, str]]:
    spec = StudySpec(name="walls", method=method, n_trials=1, search_space=space)
    return [(wall.param, wall.side, wall.widen) for wall in range_walls(spec, params)]


def test_the_outer_5_percent_of_a_log_range_is_measured_on_the_log_axis() -> None:
    # 0.0105 is 3 % of the way from 0.01 to 0.05 on the log axis; 0.012 is 11 % there but 5 % on a linear axis.
    assert _walls(NARROW, {"stage1.weight_decay": 0.0105}) == [
        ("stage1.weight_decay", "low", "--space stage1.weight_decay=0.001:0.05:log")]
    assert _walls(NARROW, {"stage1.weight_decay": 0.012}) == []
    tau, log_tau = FloatRange(low=1.0, high=3.0), FloatRange(low=1.0, high=3.0, log=True)
    assert _walls({"stage2.tau": tau}, {"stage2.tau": 1.08}, method="tau-norm") == [
        ("stage2.tau", "low", "--space stage2.tau=0:3")]  # 4 % of the linear axis; widened down to 0, not -1
    assert _walls({"stage2.tau": log_tau}, {"stage2.tau": 1.08}, method="tau-norm") == []  # 7 % of the log axis
    assert _walls(NARROW, {"stage1.weight_decay": 0.049})[0][1:] == ("high", "--space stage1.weight_decay=0.01:0.5:log")


def test_a_linear_range_widens_by_its_width_and_stops_at_the_fields_limit() -> None:
    tau = {"stage2.tau": FloatRange(low=0.0, high=3.0)}
    assert _walls(tau, {"stage2.tau": 2.9}, method="tau-norm") == [("stage2.tau", "high", "--space stage2.tau=0:6")]
    assert _walls(tau, {"stage2.tau": 0.05}, method="tau-norm") == []  # tau < 0 is not a config the trainer takes
    assert _walls({}, {"stage2.maxnorm_thresh": 0.99, "stage2.weight_decay": 1.0, "stage2.loss": "ce",
                       "stage1.weight_decay": 5e-3}) == []  # a radius above 1 is no radius; the middle is no wall


def test_ordered_choices_continue_their_grid_and_unordered_ones_have_no_edge() -> None:
    assert _walls({}, {"stage1.weight_decay": 1e-4, "stage2.loss": "ce", "stage1.lr": 0.03}) == [
        ("stage1.weight_decay", "low", "--space stage1.weight_decay=2e-05,0.0001,0.0005,0.002,0.005,0.01,0.02")]
    epochs = {"stage1.epochs": Choices(choices=[50, 100, 200])}
    assert _walls(epochs, {"stage1.epochs": 200})[0][2] == "--space stage1.epochs=50,100,200,400"
    # LOS's re-training weight decay starts at 0: nothing lies below it.
    assert _walls({}, {"stage2.weight_decay": 0.0}, method="los") == []


def test_study_best_and_the_record_name_the_parameter_and_the_side(sqlite_url: str) -> None:
    created = CliRunner().invoke(study_command.app, ["create", "narrow", "--n-trials", "3", "--storage", sqlite_url,
                                                     "--space", "stage1.weight_decay=0.01:0.05:log"])
    assert created.exit_code == 0, created.output
    db = Database.connect(sqlite_url)
    spec = registry.get_study_by_name(db, name="narrow").spec
    study = optuna.load_study(study_name="narrow", storage=sqlite_url)
    for weight_decay in (0.0102, 0.03, 0.045):
        study.enqueue_trial({"stage1.weight_decay": weight_decay, "stage2.weight_decay": 0.1,
                             "stage2.maxnorm_thresh": 0.5, "stage2.loss": "cb", "stage1.lr": 0.01,
                             "stage1.epochs": 100})
    for _ in range(3):  # val All falls with weight decay, as on digits-lt: the best sits at the low end
        trial = study.ask()
        params = sample_params(trial, spec.resolved_space())
        value = 100 - 1000 * params["stage1.weight_decay"]
        trial.set_user_attr("val", {"all": value, "many": value, "medium": value, "few": value})
        trial.set_user_attr("test", {"all": value, "many": value, "medium": value, "few": value})
        trial.set_user_attr("config", {"method": "wb", "data": {"name": "digits-lt"}})
        study.tell(trial, [value])
    record = registry.get_study_by_name(db, name="narrow")
    db.dispose()
    [wall] = record.walls
    assert (wall.param, wall.side, wall.value, wall.bound) == ("stage1.weight_decay", "low", 0.0102, 0.01)

    shown = CliRunner().invoke(study_command.app, ["best", "narrow", "--storage", sqlite_url])
    assert "hit a wall: stage1.weight_decay" in shown.stdout and "low end" in shown.stdout
    assert "--space stage1.weight_decay=0.001:0.05:log" in shown.stdout
    as_json = CliRunner().invoke(study_command.app, ["best", "narrow", "--storage", sqlite_url, "--json"])
    assert json.loads(as_json.stdout)["walls"][0]["side"] == "low"
    page = render_html(finished_study(study), [])
    assert "<h2>Range walls</h2>" in page and "hit a wall: stage1.weight_decay = 0.0102 sits at the low end" in page
