"""Issue 21's acceptance, against a real `tailtune serve` on PostgreSQL with no admin token and
TAILTUNE_DATA_ROOTS set, with a worker run on the same roots."""

from __future__ import annotations

import pickle
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from studies.run.worker import WorkerSettings, run_worker
from studies.store.db import Database
from tailtune.commands import token as token_command
from tests.trainers.fake_data import write_fake_cifar, write_fake_image_folder
from tests.trainers.test_no_code_from_data import CreatesAFile

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _token(postgres_url: str, *arguments: str) -> str:
    result = CliRunner().invoke(token_command.app, [*arguments, "--storage", postgres_url])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _poisoned_data(root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A folder data set whose class folder leads out of the root, and CIFAR batches that would create a file."""
    folder = write_fake_image_folder(root / "images", {"ant": 12, "bee": 8}, {"ant": 3, "bee": 3})
    outside = tmp_path / "outside" / "bee"
    outside.parent.mkdir()
    (folder / "train" / "bee").rename(outside)
    (folder / "train" / "bee").symlink_to(outside)
    cifar = write_fake_cifar(root / "cifar", num_classes=10, per_class_train=25)
    for name in ("data_batch_1", "batches.meta"):
        with (cifar.folder / name).open("wb") as file:
            pickle.dump({b"data": CreatesAFile(tmp_path / "pwned")}, file, protocol=2)
    return folder, root / "cifar"


def test_closed_by_default_against_a_real_server(serve, postgres_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    folder, cifar_root = _poisoned_data(root, tmp_path)
    served = serve("127.0.0.1", None, TAILTUNE_DATA_ROOTS=str(root))
    api = served.base_url
    writer = {"Authorization": f"Bearer {_token(postgres_url, 'create', 'ci')}"}

    assert httpx.post(f"{api}/studies", json={"name": "s", "n_trials": 1, "seed": 2**32},
                      headers=writer).status_code == 422
    assert httpx.post(f"{api}/studies", json={"name": "s", "n_trials": 1, "preset": [1]},
                      headers=writer).status_code == 422
    home = httpx.post(f"{api}/studies", json={"name": "home", "n_trials": 1, "dataset": "folder:~/x",
                                               "data_root": str(root), "image_size": 8}, headers=writer)
    assert home.status_code == 422 and "'~/x'" in home.text
    url = sa.make_url(postgres_url)
    for name, body in [("linked", {"dataset": f"folder:{folder}", "image_size": 8}),
                       ("pickled", {"dataset": "cifar10-lt", "data_root": str(cifar_root), "imbalance_factor": 5})]:
        created = httpx.post(f"{api}/studies", json={"name": name, "n_trials": 1, "fixed": {"stage1.epochs": 1}}
                             | body, headers=writer)
        assert created.status_code == 201, created.text
        assert all(part not in created.text for part in (url.host, url.database, "postgresql"))

    db = Database.connect(postgres_url)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False,
                              max_consecutive_failures=2)
    summary = run_worker(db, study_names=["linked", "pickled"], settings=settings,
                         artifact_dir=tmp_path / "artifacts", data_roots=[root])
    db.dispose()
    assert summary.completed == 0 and not (tmp_path / "pwned").exists()
    studies = httpx.get(f"{api}/studies", headers=writer).json()["items"]
    assert {study["name"]: study["counts"]["complete"] for study in studies} == {"linked": 0, "pickled": 0}

    _token(postgres_url, "revoke", "ci")
    assert httpx.get(f"{api}/studies").status_code == 401
    assert httpx.get(f"{api}/studies", headers=writer).status_code == 401
