"""One settings object per process: the environment and .env, then the command's flags; one rule for the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailtune.cli import app
from tailtune.commands.common import load_settings
from trainers.errors import UserInputError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No TAILTUNE_ variable of the machine, and no .env file, may reach these tests.
    for name in [name for name in __import__("os").environ if name.startswith("TAILTUNE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_flags_override_the_environment_section_by_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILTUNE_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("TAILTUNE_WORKER_BATCH_TRIALS", "3")
    monkeypatch.setenv("TAILTUNE_WORKER_HEARTBEAT_INTERVAL", "4")
    monkeypatch.setenv("TAILTUNE_API_TOKEN", "s3cret")
    Path(".env").write_text("TAILTUNE_ARTIFACT_DIR=/from/dotenv\nTAILTUNE_API_PORT=8000\n")
    settings = load_settings(database={"url": None}, worker={"batch_trials": 5, "grace_period": None})
    assert settings.database.url == "sqlite:///from-env.db"  # a flag left out (None) is not given
    assert settings.worker.batch_trials == 5 and settings.worker.heartbeat_interval == 4
    assert settings.worker.grace_period == 30  # the default, written once in studies/run/worker.py
    assert settings.api.token is not None and settings.api.token.get_secret_value() == "s3cret"
    assert settings.artifact.dir == Path("/from/dotenv")
    flagged = load_settings(database={"url": "sqlite:///flag.db"}, artifact={"dir": Path("a")})
    assert flagged.database.url == "sqlite:///flag.db" and flagged.artifact.dir == Path("a")


def test_a_bad_setting_is_a_user_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILTUNE_WORKER_GRACE_PERIOD", "1")
    with pytest.raises(UserInputError, match=r"worker: .*grace_period \(1 s\) must be at least twice"):
        load_settings()
    monkeypatch.delenv("TAILTUNE_WORKER_GRACE_PERIOD")
    monkeypatch.setenv("TAILTUNE_WORKER_BACTH_TRIALS", "3")
    with pytest.raises(UserInputError, match=r"worker\.bacth_trials: Extra inputs are not permitted"):
        load_settings()


# `serve` resolves it in create_app by the same call (Database.connect(settings.database.url)); importing
# FastAPI to show that here would cost more than the check.
COMMANDS = [["worker"], ["study", "status", "x"], ["report", "x"], ["db", "upgrade"], ["dashboard"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_resolves_the_database_by_one_rule(command: list[str], tmp_path: Path) -> None:
    cli = CliRunner()
    missing = cli.invoke(app, command)
    assert missing.exit_code == 2 and "no database given: pass --storage URL or set TAILTUNE_DATABASE_URL" in \
        missing.stderr, missing.output
    if command[0] in ("dashboard", "report"):
        return  # with a database, the dashboard serves until stopped; the report imports matplotlib (seconds)
    env_url, flag_url = f"sqlite:///{tmp_path / 'env.db'}", f"sqlite:///{tmp_path / 'flag.db'}"
    from_env = cli.invoke(app, command, env={"TAILTUNE_DATABASE_URL": env_url})
    from_flag = cli.invoke(app, [*command, "--storage", flag_url], env={"TAILTUNE_DATABASE_URL": env_url})
    assert "no database given" not in from_env.output + from_flag.output
    assert (tmp_path / "env.db").exists() and (tmp_path / "flag.db").exists()
