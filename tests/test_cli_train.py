"""`tailtune train` as a user runs it: its exit code and its output, in this process (typer's CliRunner); one
test runs the real process, for what only a process shows (a traceback on stderr)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tailtune.cli import app
from tests.trainers.fake_data import write_fake_cifar, write_fake_image_folder
from tests.trainers.test_data import truncate_one_png
from tests.trainers.test_presets import ALGORITHMS_MD_FIGURES
from trainers.data import lt_counts


def _run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    # An exception that escaped the command would be a traceback in a real process; exits are the command's own.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_train_json_has_per_stage_per_split_results(tmp_path: Path) -> None:
    completed = _run("train", "--dataset", "digits-lt", "--method", "wb", "--epochs", "4", "--json",
                     "--checkpoint-dir", str(tmp_path / "ckpt"))
    assert completed.exit_code == 0, completed.stderr
    result = json.loads(completed.stdout)
    for stage in ("stage1", "stage2"):
        for split in ("val", "test"):
            assert set(result[stage][split]) == {"all", "many", "medium", "few"}
    assert (tmp_path / "ckpt" / "stage1.pt").exists()


def test_train_table_on_a_folder_data_set(tmp_path: Path) -> None:
    root = write_fake_image_folder(tmp_path / "shapes", train_counts={"circle": 30, "square": 12, "star": 6},
                                   test_counts={"circle": 5, "square": 5, "star": 5})
    completed = _run("train", "--dataset", f"folder:{root}", "--image-size", "28", "--epochs", "2")
    assert completed.exit_code == 0, completed.stderr
    assert "stage 2" in completed.stdout and "Few" in completed.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "mnist-lt"], "unknown data set"),
    (["--dataset", "cifar100-lt", "--data-root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--imbalance-factor", "0.5"], "imbalance"),
    (["--set", "stage2.maxnorm=absolute", "--set", "stage2.maxnorm_radius=-1"], "maxnorm_radius"),
    (["--method", "magic"], "unknown method"),
    (["--preset", "wb-cifar100-if100"], "cifar100-lt needs --data-root"),
    (["--preset", "ewb-cifar100-if100", "--method", "wb"], "drop --method"),
    (["--set", "stage1.lr=1e12", "--epochs", "2"], "NaN"),
])
def test_bad_input_is_one_clear_line_and_nonzero_exit(args: list[str], message: str) -> None:
    completed = _run("train", *args)
    assert completed.exit_code != 0
    assert message in completed.stderr


@pytest.mark.slow
def test_a_paper_preset_runs_its_recipe_on_cifar_files_and_shows_the_papers_numbers(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path, num_classes=100, per_class_train=30, per_class_test=2)
    completed = _run("train", "--preset", "wb-cifar100-if100", "--data-root", str(tmp_path), "--imbalance-factor",
                     "10", "--epochs", "1", "--set", "model.arch=small-cnn", "--set", "stage2.epochs=1",
                     "--image-size", "16", "--checkpoint-dir", str(tmp_path / "run"))
    assert completed.exit_code == 0, completed.stderr
    printed = " ".join(completed.stdout.split())  # rich wraps long lines at the terminal's width
    # IF 10, 1 epoch, a small CNN on 16 px: the paper's IF 100 numbers are not this run's
    for value in ALGORITHMS_MD_FIGURES["wb-cifar100-if100"].values():
        assert f"{value:.2f}" not in printed
    assert ("differs from it in data.image_size, data.imbalance_factor, model.arch, stage1.epochs, stage2.epochs"
            in printed)
    # the WB head class uses all 30 of its images: val has none of it, and says so
    assert "no val image of class 0;" in printed
    # the WB code's floor() counts on this file's 30 images per class, not EWB's round() of 30 - 20
    assert f"{sum(lt_counts(30, 10, 100, 'floor')):,} train images in 100 classes" in printed
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["cifar_counts"] == "wb" and config["eval"]["flip_tta"] is True
    assert config["stage2"]["loss"] == "cb-bce" and config["stage2"]["maxnorm_every"] == "epoch"
    assert config["stage2"]["bn_mode"] == "train"


def test_a_truncated_image_is_named_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    root = write_fake_image_folder(tmp_path / "shapes", train_counts={"circle": 3, "square": 3},
                                   test_counts={"circle": 1, "square": 1}, modes=("RGB",))
    damaged = truncate_one_png(root)
    completed = _run("train", "--dataset", f"folder:{root}", "--image-size", "8", "--epochs", "1")
    assert completed.exit_code == 2  # _run: and no exception escaped, which a real process prints as a traceback
    assert str(damaged) in completed.stderr.replace("\n", "") and "Traceback" not in completed.stderr
