"""Every finished trial keeps its stage-2 output, and its exported file is the trial's model: predicting the
trial's test folder with it gives the trial's per-class test accuracy, for each method, flip TTA, batched heads
and a stage 2 that changed the backbone."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from studies.definition.spec import parse_spec
from studies.reports.export import card_as_markdown, export_trial, model_card, write_export
from studies.store import baselines, registry
from studies.store.db import Database
from tests.model_files import predicted_per_class_accuracy, run_folder_study, write_noisy_folder
from trainers.classifier import evaluated_classifier
from trainers.exported import ModelInput, TrialModelParts
from trainers.heads import Head
from trainers.presets import PRESETS
from trainers.splits import split_rule

# (method, fixed fields): flip TTA with WB (whose trials 1-2 train in one batched pass) and with EWB's logit
# adjustment; LOS with BN statistics updating in stage 2, so its stored output carries its own backbone.
# Stage 1 is fixed, so the three trials of a study share one cached backbone.
CASES = {
    "wb": ("wb", {"eval.flip_tta": True, "stage1.weight_decay": 5e-3, "stage2.epochs": 2}),
    "tau-norm": ("tau-norm", {"stage1.weight_decay": 5e-3}),
    "los": ("los", {"stage2.bn_mode": "train", "stage1.weight_decay": 5e-3, "stage2.epochs": 2}),
    "ewb": ("ewb", {"eval.flip_tta": True, "stage1.weight_decay": 5e-3, "stage1.feature_reg": 1e-2}),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_noisy_folder(tmp_path_factory.mktemp("noisy"))


@pytest.mark.parametrize("case", list(CASES))
def test_the_exported_model_gives_each_trials_per_class_test_accuracy(case: str, folder: Path,
                                                                      tmp_path: Path) -> None:
    method, fixed = CASES[case]
    db = Database.connect(f"sqlite:///{tmp_path / 'studies.db'}")
    study_id = run_folder_study(db, tmp_path / "artifacts", folder, case, method, fixed)
    trials = optuna.load_study(study_name=case, storage=db.url).trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 3
    if case == "wb":
        assert max(trial.user_attrs["batch_size"] for trial in trials) > 1, "no trial ran in a batch"
    for trial in trials:
        stored = tmp_path / "artifacts" / trial.user_attrs["stage2_file"]
        assert stored.stat().st_size == trial.user_attrs["stage2_bytes"]
        exported = export_trial(db, study_id=study_id, trial_number=trial.number,
                                artifact_dir=tmp_path / "artifacts")
        [model_file, card_json, card_markdown] = write_export(exported, tmp_path / f"trial{trial.number}.pt")
        expected = trial.user_attrs["per_class_test"]
        assert predicted_per_class_accuracy(model_file, folder / "test") == pytest.approx(expected, abs=1e-9)
        card = json.loads(card_json.read_text())
        assert card["results"]["test"] == trial.user_attrs["test"] and card["params"] == trial.params
        assert card["model"]["flip_tta"] == fixed.get("eval.flip_tta", False)
        assert f"trial {trial.number}" in card_markdown.read_text()
    db.dispose()



SPLIT = {"all": 50.0, "many": 70.0, "medium": 50.0, "few": 30.0}


def _card_of_a_paper_study(db: Database, baseline: dict | None = None, name: str = "paper",
                           params: dict | None = None) -> dict:
    record = registry.create_study(db, spec=parse_spec({"name": name, "method": "wb", "n_trials": 1,
                                                        "preset": "wb-cifar100-if100", "dataset": "cifar100-lt"}))
    if baseline is not None:
        baselines.store_baseline(db, study_id=record.id, baseline=baseline)
        record = registry.get_study(db, study_id=record.id)
    trial = optuna.trial.create_trial(
        params={}, distributions={}, value=50.0,
        user_attrs={"config": record.spec.config_for(params or {}).model_dump(mode="json"), "val": SPLIT, "test": SPLIT,
                    "stage1_val": SPLIT, "stage1_test": SPLIT, "stage1_key": "k", "stage2_file": "stage2/k/f.pt"})
    parts = TrialModelParts(
        classifier=evaluated_classifier(Head(torch.zeros(2, 4), torch.zeros(2)), torch.full((2,), 0.5),
                                        flip_tta=True),
        arch="resnet34-cifar", input=ModelInput(32, 32, 3, (0.5,) * 3, (0.25,) * 3, channels_last=True),
        class_names=["apple", "bee"], split_rule=split_rule([500, 5], "cifar100-lt").model_dump())
    return model_card(record, trial, parts)


def test_the_card_of_a_preset_study_carries_the_papers_numbers(tmp_path: Path) -> None:
    db = Database.connect(f"sqlite:///{tmp_path / 'studies.db'}")
    card = _card_of_a_paper_study(db)
    assert card["recipe"]["preset"] == "wb-cifar100-if100"
    assert card["recipe"]["reported_test"] == PRESETS["wb-cifar100-if100"].reported
    markdown = card_as_markdown(card)
    assert "## Recipe: wb-cifar100-if100" in markdown and "stage2.all 53.35" in markdown
    assert "flip TTA on" in markdown and "| test | 50.00 | 70.00 | 50.00 | 30.00 |" in markdown
    assert "Baseline: none (not fitted: no worker has fitted it yet)." in markdown

    searched = _card_of_a_paper_study(db, name="searched", params={"stage2.weight_decay": 0.3})
    assert searched["recipe"]["differs_in"] == ["stage2.weight_decay"] and searched["recipe"]["reported_test"] is None
    assert "53.35" not in card_as_markdown(searched)
    db.dispose()


def test_the_card_shows_the_trial_minus_the_studys_baseline(tmp_path: Path) -> None:
    db = Database.connect(f"sqlite:///{tmp_path / 'studies.db'}")
    baseline = {"all": 41.5, "many": 72.0, "medium": 40.0, "few": 12.5}
    card = _card_of_a_paper_study(db, {"state": "done", "model": "LogisticRegression", "val": baseline,
                                       "test": baseline})
    db.dispose()
    assert card["margins"]["minus_baseline"]["test"] == {"all": 8.5, "many": -2.0, "medium": 10.0, "few": 17.5}
    markdown = card_as_markdown(card)
    assert "| test - baseline | +8.50 | -2.00 | +10.00 | +17.50 |" in markdown
    assert "Baseline: LogisticRegression, fitted on the study's own splits: val All 41.50" in markdown
