"""Every study starts from its recipe (trial 0), and its record, `study best` and the report show recipe vs best."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from rich.console import Console

from studies.definition.space import sample_params
from studies.definition.spec import parse_spec
from studies.reports.report import finished_study, recipe_vs_best_rows
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database
from tailtune.commands.study import split_table
from tests.trainers.fake_data import write_fake_cifar
from trainers.presets import PRESETS

RECIPE_VAL = {"all": 60.0, "many": 80.0, "medium": 55.0, "few": None}
BEST_VAL = {"all": 64.5, "many": 79.0, "medium": 61.0, "few": None}


def _tell(study: optuna.Study, spec_space: dict, val: dict, test: dict) -> int:
    trial = study.ask()
    sample_params(trial, spec_space)
    trial.set_user_attr("val", val)
    trial.set_user_attr("test", test)
    study.tell(trial, [val["all"]])
    return trial.number


def test_trial_0_is_the_recipe_and_the_record_shows_recipe_vs_best(database: Database) -> None:
    spec = parse_spec({"name": "recipe", "method": "wb", "n_trials": 4, "sampler": "random"})
    record = registry.create_study(database, spec=spec)
    study = optuna.load_study(study_name="recipe", storage=database.optuna_storage())
    [waiting] = study.trials
    assert waiting.state == optuna.trial.TrialState.WAITING and waiting.user_attrs == {registry.RECIPE_ATTR: True}
    assert record.recipe is None  # not run yet

    trial = study.ask()
    assert trial.number == 0 and spec.config_for(sample_params(trial, spec.resolved_space())) == spec.base_config()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # the recipe's retry would be a recipe trial too
    assert _tell(study, spec.resolved_space(), BEST_VAL, {**BEST_VAL, "all": 63.0}) == 1
    study.enqueue_trial(study.trials[0].params, user_attrs={registry.RECIPE_ATTR: True})
    assert _tell(study, spec.resolved_space(), RECIPE_VAL, {**RECIPE_VAL, "all": 61.0}) == 2

    record = registry.get_study(database, study_id=record.id)
    assert record.best_trial_number == 1 and record.recipe is not None
    assert (record.recipe.trial_number, record.recipe.val, record.recipe.test["all"]) == (2, RECIPE_VAL, 61.0)
    assert record.recipe.best_minus_recipe_val == {"all": 4.5, "many": -1.0, "medium": 6.0, "few": None}
    assert record.recipe.best_minus_recipe_test["all"] == pytest.approx(2.0)

    console = Console(record=True, width=120)
    console.print(split_table(record))
    shown = console.export_text()
    assert "recipe" in shown and "+4.50" in shown and "-1.00" in shown and "–" in shown
    rows = recipe_vs_best_rows(finished_study(study))
    assert rows is not None and ("best - recipe", "val", [4.5, -1.0, 6.0, None]) in rows


def test_a_preset_study_runs_its_recipe_as_trial_0_with_every_preset_field(sqlite_url: str, tmp_path: Path) -> None:
    """The issue's acceptance at test size: WB preset on CIFAR-100-layout files (20 classes of 30 images, IF 10,
    16 px)."""
    write_fake_cifar(tmp_path / "cifar", num_classes=20, per_class_train=30, per_class_test=1)
    db = Database.connect(sqlite_url)
    spec = parse_spec({"name": "wb-preset", "method": "wb", "preset": "wb-cifar100-if100", "n_trials": 1,
                       "confirm": None, "data_root": str(tmp_path / "cifar"), "imbalance_factor": 10, "image_size": 16,
                       "fixed": {"model.arch": "small-cnn", "stage1.epochs": 1, "stage2.epochs": 1}})
    registry.create_study(db, spec=spec)
    run_worker(db, study_names=["wb-preset"], settings=WorkerSettings(device="cpu", handle_signals=False),
               artifact_dir=tmp_path / "artifacts")
    [trial] = optuna.load_study(study_name="wb-preset", storage=sqlite_url).trials
    db.dispose()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs[registry.RECIPE_ATTR]
    config = trial.user_attrs["config"]
    preset = PRESETS["wb-cifar100-if100"].config
    assert config["data"]["cifar_counts"] == "wb" and config["stage2"]["loss"] == "cb-bce"
    assert (config["stage2"]["weight_decay"], config["stage2"]["maxnorm_thresh"]) == (0.1, 0.1)
    assert config["stage1"]["weight_decay"] == 5e-3 and config["eval"] == preset.eval.model_dump(mode="json")
    assert config["stage2"]["bn_mode"] == "train" and config["stage2"]["maxnorm_every"] == "epoch"


def test_a_study_searching_flip_runs_the_recipe_with_the_data_sets_flip_and_shows_recipe_vs_best(
        sqlite_url: str, tmp_path: Path) -> None:
    """digits-lt's flip default is off (None in the config): the recipe is trial 0 with data.flip False."""
    db = Database.connect(sqlite_url)
    spec = parse_spec({"name": "flip", "method": "wb", "n_trials": 2, "sampler": "random",
                       "search_space": {"data.flip": {"type": "categorical", "choices": [True, False]}},
                       "fixed": {"stage1.epochs": 1, "stage2.epochs": 1}})
    assert spec.recipe_params() is not None and spec.recipe_params()["data.flip"] is False
    created = registry.create_study(db, spec=spec)
    run_worker(db, study_names=["flip"], settings=WorkerSettings(device="cpu", handle_signals=False),
               artifact_dir=tmp_path / "artifacts")
    study = optuna.load_study(study_name="flip", storage=sqlite_url)
    record = registry.get_study(db, study_id=created.id)
    db.dispose()
    assert record.best_val_coverage is not None and record.best_val_coverage.missing_classes == []
    console = Console(record=True, width=160)
    console.print(split_table(record))
    shown = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "every class has val images; val All / Many / Medium / Few average over 10 /" in shown
    recipe = study.trials[0]
    assert recipe.state == optuna.trial.TrialState.COMPLETE and recipe.user_attrs[registry.RECIPE_ATTR]
    assert recipe.params["data.flip"] is False and recipe.user_attrs["data"]["flip"] is False
    rows = recipe_vs_best_rows(finished_study(study))
    assert rows is not None and rows[-1][0] == "best - recipe"
