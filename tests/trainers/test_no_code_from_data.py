"""No code from data (issue 21 item 3): every loader of a file a user or another process could have written
refuses a payload that would run code, here one that would create a file when unpickled."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch

from tests.trainers.fake_data import write_fake_cifar
from trainers.config import DataConfig
from trainers.data import load_dataset
from trainers.errors import UserInputError

PACKAGES = ("trainers", "studies", "service", "tailtune")


class CreatesAFile:
    """Unpickled, it calls open(path, "w"): the file's existence is the proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return open, (str(self.path), "w")


@pytest.mark.parametrize("poisoned", ["data_batch_1", "test_batch", "batches.meta"])
def test_a_cifar_batch_that_would_run_code_is_refused_naming_the_file(tmp_path: Path, poisoned: str) -> None:
    fake = write_fake_cifar(tmp_path / "data", num_classes=10, per_class_train=25)
    marker = tmp_path / "pwned"
    with (fake.folder / poisoned).open("wb") as file:
        pickle.dump({b"data": CreatesAFile(marker), b"labels": [0]}, file, protocol=2)
    with pytest.raises(UserInputError, match=poisoned) as refused:
        load_dataset(DataConfig(name="cifar10-lt", root=tmp_path / "data", imbalance_factor=5))
    assert not marker.exists()
    assert "io.open" in str(refused.value)  # names what the file tried to call


def test_real_cifar_batches_still_load(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path, num_classes=10, per_class_train=25)
    data = load_dataset(DataConfig(name="cifar10-lt", root=tmp_path, imbalance_factor=5))
    assert data.train.images.dtype == torch.uint8 and len(data.class_names) == 10


def test_torch_files_that_would_run_code_are_refused_by_every_reader(tmp_path: Path) -> None:
    from studies.artifacts.trial_models import load_trial_model
    from studies.definition.errors import ModelFilesMissingError
    from trainers.exported import load_model_file

    marker = tmp_path / "pwned"
    torch.save({"format": "tailtune-model", "payload": CreatesAFile(marker)}, tmp_path / "model.pt")
    with pytest.raises(UserInputError, match="model.pt"):
        load_model_file(tmp_path / "model.pt", torch.device("cpu"))
    (tmp_path / "stage2").mkdir()
    torch.save({"payload": CreatesAFile(marker)}, tmp_path / "stage2" / "trial.pt")
    with pytest.raises(ModelFilesMissingError, match="trial.pt"):
        load_trial_model(tmp_path, "stage2/trial.pt")
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def test_no_loader_runs_code_from_data() -> None:
    """The audit, kept: torch.load only with weights_only=True; no pickle.load(s), eval, exec or yaml.load
    outside the one restricted unpickler (trainers/data/cifar.py)."""
    root = Path(__file__).resolve().parents[2]
    offences = []
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            for call in _calls(ast.parse(path.read_text())):
                name, where = _name(call), f"{path.relative_to(root)}:{call.lineno}"
                keywords = {keyword.arg: ast.unparse(keyword.value) for keyword in call.keywords}
                if name == "torch.load" and keywords.get("weights_only") != "True":
                    offences.append(f"{where}: torch.load without weights_only=True")
                if name in ("pickle.load", "pickle.loads", "eval", "exec", "yaml.load", "yaml.unsafe_load"):
                    offences.append(f"{where}: {name}")
    assert not offences, offences
