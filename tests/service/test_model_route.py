"""GET /studies/{id}/model: the trial's model file over HTTP, 409 for a trial that is not COMPLETE."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
import torch
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from tailtune.client import ApiError, TailtuneClient
from tests.model_files import predicted_per_class_accuracy, run_folder_study, write_noisy_folder


def test_the_model_route_returns_the_trials_model_and_refuses_unfinished_trials(sqlite_url: str,
                                                                               tmp_path: Path) -> None:
    folder = write_noisy_folder(tmp_path / "data")
    app = create_app(Settings(database={"url": sqlite_url}, artifact={"dir": tmp_path / "artifacts"},
                              api={"open": True}))
    with TestClient(app) as client:
        study_id = run_folder_study(app.state.database, tmp_path / "artifacts", folder, "http", "ewb",
                                    {"stage1.weight_decay": 5e-3, "stage1.feature_reg": 1e-2}, n_trials=2)
        study = optuna.load_study(study_name="http", storage=sqlite_url)
        trial = study.trials[1]

        response = client.get(f"/studies/{study_id}/model", params={"trial": trial.number})
        assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"] == f'attachment; filename="http-trial{trial.number}.pt"'
        (tmp_path / "model.pt").write_bytes(response.content)
        expected = trial.user_attrs["per_class_test"]
        assert predicted_per_class_accuracy(tmp_path / "model.pt", folder / "test") == pytest.approx(expected)
        best = torch.load(_download(client, f"/studies/{study_id}/model", tmp_path), weights_only=True)
        assert best["card"]["provenance"]["trial"] == study.best_trial.number

        # The Python client over the same app (TestClient's transport serves it in-process).
        with TailtuneClient(str(client.base_url), transport=client._transport) as api:
            fetched = torch.load(io.BytesIO(api.model(study_id, trial=trial.number)), weights_only=True)
            assert fetched["card"]["provenance"]["trial"] == trial.number
            running = study.ask()
            with pytest.raises(ApiError, match="RUNNING, not COMPLETE") as refused:
                api.model(study_id, trial=running.number)
            assert refused.value.status_code == 409
        unfinished = client.get(f"/studies/{study_id}/model", params={"trial": running.number})
        assert unfinished.status_code == 409 and "RUNNING, not COMPLETE" in unfinished.json()["detail"]
        assert client.get(f"/studies/{study_id}/model", params={"trial": 99}).status_code == 404
        assert client.get(f"/studies/{study_id + 1}/model").status_code == 404
        # Files gone (another artifact dir, a cleanup): a 404 that names no server path, stage 1's, then stage 2's.
        for stage in ("stage1", "stage2"):
            for stored in (tmp_path / "artifacts" / stage).glob("**/*.pt"):
                stored.unlink()
            missing = client.get(f"/studies/{study_id}/model", params={"trial": trial.number})
            assert missing.status_code == 404, missing.text
            assert str(tmp_path) not in missing.text and "--artifact-dir" in missing.text
    app.state.database.dispose()


def _download(client: TestClient, url: str, folder: Path) -> Path:
    response = client.get(url)
    assert response.status_code == 200, response.text
    (folder / "best.pt").write_bytes(response.content)
    return folder / "best.pt"
