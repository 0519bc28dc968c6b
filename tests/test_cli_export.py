"""`tailtune export` and `tailtune predict` as a user runs them: exit codes, JSON and CSV rows, and messages
that name the bad file."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from studies.store.db import Database
from tailtune.cli import app
from tests.model_files import run_folder_study, write_noisy_folder
from trainers.classifier import evaluated_classifier
from trainers.exported import MODEL_FORMAT_VERSION, ModelInput, TrialModelParts, model_file_payload
from trainers.heads import Head
from trainers.models import build_model

runner = CliRunner()


@pytest.mark.parametrize("kind", ["fifo", "folder", "card-fifo"])
def test_export_onto_anything_but_a_regular_file_is_exit_2_and_leaves_it_as_it_was(tmp_path: Path,
                                                                                   kind: str) -> None:
    out = tmp_path / "model.pt"
    target = out.with_suffix(".card.json") if kind == "card-fifo" else out
    os.mkfifo(target) if kind.endswith("fifo") else target.mkdir()
    result = runner.invoke(app, ["export", "any", "--storage", f"sqlite:///{tmp_path / 'studies.db'}", "--out",
                                 str(out), "--force"])
    assert result.exit_code == 2, result.output
    assert str(target) in result.output.replace("\n", "") and "not a regular file" in result.output
    assert stat.S_ISFIFO(target.lstat().st_mode) if kind.endswith("fifo") else target.is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == [target.name]  # no card written beside it


def test_export_onto_an_existing_file_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    out.chmod(0o444)
    result = runner.invoke(app, ["export", "any", "--storage", f"sqlite:///{tmp_path / 'studies.db'}", "--out",
                                 str(out)])
    assert result.exit_code == 2 and "--force" in result.output and out.read_bytes() == b"keep me"


def test_export_then_predict_gives_the_trials_test_accuracy(tmp_path: Path) -> None:
    folder = write_noisy_folder(tmp_path / "data")
    url, artifacts = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "artifacts"
    db = Database.connect(url)
    run_folder_study(db, artifacts, folder, "cli", "tau-norm", {"stage1.weight_decay": 5e-3}, n_trials=2)
    best = optuna.load_study(study_name="cli", storage=url).best_trial

    exported = runner.invoke(app, ["export", "cli", "--storage", url, "--artifact-dir", str(artifacts),
                                   "--out", str(tmp_path / "model.pt")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "model.card.json").is_file() and (tmp_path / "model.card.md").is_file()
    payload = torch.load(tmp_path / "model.pt", weights_only=True)  # torch alone reads it
    assert payload["class_names"] == ["ant", "bee", "cat", "dog"] and payload["input"]["image_size"] == 12
    assert payload["card"]["provenance"]["trial"] == best.number  # the default: the best trial
    predicted = runner.invoke(app, ["predict", "--model", str(tmp_path / "model.pt"), "--json",
                                    str(folder / "test")])
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)
    per_class = [100 * sum(r["label"] == name for r in rows if Path(r["path"]).parent.name == name)
                 / sum(Path(r["path"]).parent.name == name for r in rows) for name in ("ant", "bee", "cat", "dog")]
    assert sum(per_class) / 4 == pytest.approx(best.user_attrs["test_all"], abs=0.01)

    one_file = sorted((folder / "test" / "cat").iterdir())[0]
    top2 = runner.invoke(app, ["predict", "--model", str(tmp_path / "model.pt"), "--top-k", "2", "--json",
                               "--csv", str(tmp_path / "rows.csv"), str(one_file)])
    assert top2.exit_code == 0, top2.output
    [row] = json.loads(top2.stdout)
    assert [entry["label"] for entry in row["top_k"]][0] == row["label"] and len(row["top_k"]) == 2
    assert row["top_k"][0]["score"] >= row["top_k"][1]["score"]
    with (tmp_path / "rows.csv").open() as file:
        assert list(csv.reader(file))[0] == ["path", "label", "score", "label_2", "score_2"]

    running = optuna.load_study(study_name="cli", storage=url).ask()
    unfinished = runner.invoke(app, ["export", "cli", "--storage", url, "--artifact-dir", str(artifacts),
                                     "--out", str(tmp_path / "x.pt"), "--trial", str(running.number)])
    assert unfinished.exit_code == 2 and "RUNNING, not COMPLETE" in unfinished.output
    elsewhere = runner.invoke(app, ["export", "cli", "--storage", url, "--artifact-dir", str(tmp_path / "empty"),
                                    "--out", str(tmp_path / "x.pt")])
    assert elsewhere.exit_code == 2 and "--artifact-dir" in elsewhere.output
    damaged = artifacts / best.user_attrs["stage2_file"]
    damaged.write_bytes(b"not a torch file")
    unreadable = runner.invoke(app, ["export", "cli", "--storage", url, "--artifact-dir", str(artifacts),
                                     "--out", str(tmp_path / "x.pt")])
    assert unreadable.exit_code == 2 and "is not readable" in unreadable.output
    assert best.user_attrs["stage2_file"] in unreadable.output.replace("\n", "")
    db.dispose()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A small untrained model in the export format (no study needed to test the file checks)."""
    model = build_model("small-cnn", 3, 1, 8)
    head = Head(model.classifier.weight.detach(), model.classifier.bias.detach())
    parts = TrialModelParts(classifier=evaluated_classifier(head, torch.full((3,), 1 / 3), flip_tta=False),
                            arch="small-cnn", input=ModelInput(8, 8, 1, (0.5,), (0.25,), channels_last=True),
                            class_names=["a", "b", "c"], split_rule={})
    path = tmp_path / "model.pt"
    torch.save(model_file_payload(parts, model.state_dict(), card={}), path)
    return path


def test_predict_names_a_file_that_is_not_an_image(model_file: Path, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("not pixels")
    result = runner.invoke(app, ["predict", "--model", str(model_file), str(fake)])
    assert result.exit_code == 2 and str(fake) in result.output and "not a PNG or JPEG" in result.output


@pytest.mark.parametrize(("content", "message"), [
    (b"PK\x03\x04 truncated", "not readable as a torch file"),
    ({"weights": torch.ones(2)}, "not a tailtune model"),
    ("other-version", f"has model format {MODEL_FORMAT_VERSION + 1}"),
])
def test_predict_names_a_bad_model_file(content: object, message: str, model_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content == "other-version":
        payload = torch.load(model_file, weights_only=True)
        torch.save(payload | {"format_version": MODEL_FORMAT_VERSION + 1}, bad)
    else:
        torch.save(content, bad)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    result = runner.invoke(app, ["predict", "--model", str(bad), str(image)])
    assert result.exit_code == 2 and str(bad) in result.output and message in result.output
