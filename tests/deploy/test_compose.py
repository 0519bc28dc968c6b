"""docker-compose.yml and its CPU override, read as docker compose would read them (no docker engine needed).

The files are loaded with YAML anchors and compose's `!reset` tag, interpolated from .env.example plus the
two secrets a user must add, and the override is merged with compose's rules for the keys these files use.
Run: .venv/bin/pytest tests/deploy/test_compose.py
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"POSTGRES_PASSWORD": "s3cret-Pass_word", "TAILTUNE_API_TOKEN": "token-for-tests"}
VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_]\w*))")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class Reset:
    """A value tagged `!reset`: merging puts this value in place of the base file's."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    pass


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node, deep=True))
    return Reset(loader.construct_scalar(node))


ComposeLoader.add_constructor("!reset", _construct_reset)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `$$`."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, Reset):
        return Reset(interpolate(value.value, env))
    if isinstance(value, str):
        return VARIABLE.sub(lambda match: _substitute(match, env), value)
    return value


def _substitute(match: re.Match[str], env: dict[str, str]) -> str:
    if match.group(0) == "$$":
        return "$"
    expression = match.group("braced") or match.group("plain")
    name, operator, argument = re.fullmatch(r"(\w+)(:-|-|:\?|\?)?(.*)", expression).groups()
    value = env.get(name)
    empty_counts = operator is not None and operator.startswith(":")
    missing = value is None or (empty_counts and value == "")
    if operator in (":-", "-") and missing:
        return argument
    if operator in (":?", "?") and missing:
        raise KeyError(f"{name}: {argument}")
    return value or ""


def merge(base: Any, override: Any) -> Any:
    """Compose's merge for these files: mappings merge by key, `!reset` replaces, lists append."""
    if isinstance(override, Reset):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else strip_resets(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return override


def strip_resets(value: Any) -> Any:
    if isinstance(value, Reset):
        return value.value
    if isinstance(value, dict):
        return {key: strip_resets(item) for key, item in value.items()}
    return value


def env_example() -> dict[str, str]:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def load(name: str, env: dict[str, str]) -> dict[str, Any]:
    text = (REPO_ROOT / name).read_text()
    return interpolate(yaml.load(text, Loader=ComposeLoader), env)


def seconds(duration: str) -> float:
    parts = DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(number) * SECONDS[unit] for number, unit in parts)


def environment(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment", {})
    return value if isinstance(value, dict) else dict(item.split("=", 1) for item in value)


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume."""
    return [tuple(entry.split(":")[:2]) for entry in service.get("volumes", [])]


def health_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", f"health check {test} is not exec form"
    return test[1:]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return {**env_example(), **SECRETS}


@pytest.fixture(scope="module")
def compose(env: dict[str, str]) -> dict[str, Any]:
    return load("docker-compose.yml", env)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_the_stack_has_its_services(services: dict[str, Any]) -> None:
    assert {"postgres", "migrate", "api", "worker", "dashboard"} <= set(services)


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_health(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert ("pgdata", "/var/lib/postgresql/data") in volume_mounts(postgres)
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_migrations_run_once_before_everything_that_uses_the_database(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"][:2] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "dashboard"):
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name


def test_every_tailtune_process_uses_the_compose_postgres(
    services: dict[str, Any], env: dict[str, str]
) -> None:
    postgres = environment(services["postgres"])
    for name in ("migrate", "api", "worker", "dashboard"):
        url = make_url(environment(services[name])["TAILTUNE_DATABASE_URL"])
        assert (url.drivername, url.host, url.port) == ("postgresql+psycopg2", "postgres", 5432), name
        assert (url.username, url.password, url.database) == (
            postgres["POSTGRES_USER"], env["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]), name
    for name in ("migrate", "worker", "dashboard"):
        command = services[name]["command"]
        assert command[command.index("--storage") + 1] == environment(services[name])["TAILTUNE_DATABASE_URL"]


def test_api_serves_on_8000_with_its_token_and_a_health_check(
    services: dict[str, Any], run_health_check
) -> None:
    api = services["api"]
    assert api["command"][0] == "serve" and api["command"][api["command"].index("--port") + 1] == "8000"
    assert any(port.endswith(":8000") for port in api["ports"])
    assert environment(api)["TAILTUNE_API_TOKEN"] == SECRETS["TAILTUNE_API_TOKEN"]
    assert "/healthz" in health_command(api)[2]
    assert run_health_check(health_command(api), 8000, 200) == 0
    assert run_health_check(health_command(api), 8000, 503) != 0


def test_dashboard_serves_on_8080_to_the_loopback_only(services: dict[str, Any], run_health_check) -> None:
    dashboard = services["dashboard"]
    command = dashboard["command"]
    assert command[0] == "dashboard" and command[command.index("--port") + 1] == "8080"
    assert all(port.startswith("127.0.0.1:") and port.endswith(":8080") for port in dashboard["ports"])
    assert run_health_check(health_command(dashboard), 8080, 200) == 0
    assert run_health_check(health_command(dashboard), 8080, 503) != 0


def test_worker_reserves_one_nvidia_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["command"][0] == "worker"
    (device,) = gpu_devices(worker)
    assert device["driver"] == "nvidia" and device["count"] == 1 and device["capabilities"] == ["gpu"]


def test_worker_scales_without_collisions_and_outlives_a_trial(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert seconds(worker["stop_grace_period"]) >= 5 * 60
    # deploy.replicas is the default count; `--scale worker=N` overrides it.
    assert int(worker["deploy"]["replicas"]) >= 1


def test_api_and_workers_share_the_artifact_volume_and_mount_data_read_only(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        service = services[name]
        artifact_dir = environment(service)["TAILTUNE_ARTIFACT_DIR"]
        assert ("artifacts", artifact_dir) in volume_mounts(service), name
        data_root = environment(service)["TAILTUNE_DATA_ROOT"]
        data = [entry for entry in service["volumes"] if entry.split(":")[1] == data_root]
        assert len(data) == 1 and data[0].endswith(":ro"), name


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {source for service in compose["services"].values() for source, _ in volume_mounts(service)
            if not source.startswith((".", "/", "~"))}
    assert used and used <= set(compose["volumes"])


def test_files_the_compose_file_names_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            context = REPO_ROOT / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        for env_file in service.get("env_file", []):
            assert (REPO_ROOT / env_file).is_file(), f"{name}: env_file {env_file} is missing"
    header = (REPO_ROOT / "docker-compose.yml").read_text()
    for override in re.findall(r"-f (docker-compose[\w.-]*\.yml)", header):
        assert (REPO_ROOT / override).is_file(), f"docker-compose.yml names {override}, which is missing"


def test_env_example_documents_every_variable_and_ships_no_secret() -> None:
    documented = env_example()
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    used = {re.match(r"\w+", m.group("braced") or m.group("plain")).group()
            for m in VARIABLE.finditer(text) if m.group(0) != "$$"}
    assert used <= set(documented), f"not in .env.example: {sorted(used - set(documented))}"
    assert all(documented[name] == "" for name in SECRETS)


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret(secret: str, env: dict[str, str]) -> None:
    without = {name: value for name, value in env.items() if name != secret}
    with pytest.raises(KeyError, match=r"\.env"):
        load("docker-compose.yml", without)


def test_cpu_override_drops_only_the_gpu_reservation(compose: dict[str, Any], env: dict[str, str]) -> None:
    override = yaml.load((REPO_ROOT / "docker-compose.cpu.yml").read_text(), Loader=ComposeLoader)
    assert set(override["services"]) <= set(compose["services"])
    merged = merge(compose, interpolate(override, env))["services"]
    assert gpu_devices(compose["services"]["worker"])
    assert gpu_devices(merged["worker"]) == []
    merged["worker"].pop("deploy")
    base = {name: dict(service) for name, service in compose["services"].items()}
    base["worker"].pop("deploy")
    assert merged == base
