"""deploy/k8s: every manifest validates against the Kubernetes schema offline, and the pieces fit together.

kubernetes-validate ships the API schemas; manifests under deploy/k8s/optional/ (KEDA's CRDs, which the
validator does not know) are kept out of the validated set and out of kustomization.yaml. The KEDA query is
run against a real PostgreSQL holding a real Optuna study.
Run: .venv/bin/pytest tests/deploy/test_kubernetes.py
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import optuna
import pytest
import sqlalchemy
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
# A recent release the validator ships schemas for; strict mode rejects unknown fields.
KUBERNETES_VERSION = "1.35.0"
POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
MANIFEST_FILES = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
MANIFESTS = [(path.name, doc) for path in MANIFEST_FILES for doc in documents(path)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in MANIFESTS if doc["kind"] == kind}


def pod_specs() -> dict[str, dict[str, Any]]:
    workloads = {**of_kind("Deployment"), **of_kind("Job")}
    return {name: doc["spec"]["template"]["spec"] for name, doc in workloads.items()}


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, container) for name, spec in pod_specs().items() for container in spec["containers"]]


def secret_refs() -> set[tuple[str, str]]:
    return {(item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
            for _, container in containers() for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})}


@pytest.mark.parametrize("name,manifest", MANIFESTS, ids=[f"{n}:{d['kind']}" for n, d in MANIFESTS])
def test_manifest_validates_against_the_kubernetes_schema(name: str, manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_an_unknown_field() -> None:
    worker = copy.deepcopy(of_kind("Deployment")["tailtune-worker"])
    worker["spec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"nvidia.com/gpu": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_no_optional_one() -> None:
    assert sorted(KUSTOMIZATION["resources"]) == sorted(path.name for path in MANIFEST_FILES)
    assert all(doc["metadata"]["namespace"] == KUSTOMIZATION["namespace"]
               for _, doc in MANIFESTS if doc["kind"] != "Namespace")
    assert KUSTOMIZATION["namespace"] in of_kind("Namespace")


def test_every_container_uses_the_image_kustomize_rewrites() -> None:
    (image,) = KUSTOMIZATION["images"]
    assert {container["image"] for _, container in containers()} == {image["name"]}


def test_workloads_run_as_non_root() -> None:
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name


def test_the_expected_workloads_exist() -> None:
    assert {"tailtune-api", "tailtune-worker", "tailtune-dashboard"} <= set(of_kind("Deployment"))
    assert {"tailtune-api", "tailtune-dashboard"} <= set(of_kind("Service"))
    (job,) = of_kind("Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["db", "upgrade"]


def test_worker_holds_one_gpu_and_time_to_finish_a_trial() -> None:
    spec = pod_specs()["tailtune-worker"]
    (worker,) = spec["containers"]
    assert worker["args"][0] == "worker"
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert spec["terminationGracePeriodSeconds"] >= 5 * 60
    assert of_kind("Deployment")["tailtune-worker"]["spec"]["replicas"] >= 1


def test_artifacts_are_on_a_read_write_many_claim_mounted_by_the_workers() -> None:
    claims = of_kind("PersistentVolumeClaim")
    assert "ReadWriteMany" in claims["tailtune-artifacts"]["spec"]["accessModes"]
    spec = pod_specs()["tailtune-worker"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    (worker,) = spec["containers"]
    env = {item["name"]: item.get("value") for item in worker["env"]}
    (mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == env["TAILTUNE_ARTIFACT_DIR"]]
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "tailtune-artifacts"
    (data,) = [m for m in worker["volumeMounts"] if m["mountPath"] == env["TAILTUNE_DATA_ROOT"]]
    assert data["readOnly"] is True


def test_every_claim_a_pod_mounts_is_defined() -> None:
    claims = set(of_kind("PersistentVolumeClaim"))
    for name, spec in pod_specs().items():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name


def test_secret_keys_and_references_match_and_values_are_placeholders() -> None:
    secrets = of_kind("Secret")
    defined = {(name, key) for name, secret in secrets.items() for key in secret["stringData"]}
    assert secret_refs() == defined
    assert all("CHANGE-ME" in value for secret in secrets.values() for value in secret["stringData"].values())


def test_every_tailtune_container_gets_the_database_url_from_the_secret() -> None:
    for name, container in containers():
        (item,) = [item for item in container["env"] if item["name"] == "TAILTUNE_DATABASE_URL"]
        assert item["valueFrom"]["secretKeyRef"]["key"] == "database-url", name


def test_variables_in_args_are_defined_in_the_container_env() -> None:
    # Kubernetes leaves an undefined $(NAME) in args as literal text, which would reach tailtune as a URL.
    for name, container in containers():
        defined = {item["name"] for item in container.get("env", [])}
        used = {match for arg in container.get("args", []) for match in re.findall(r"\$\((\w+)\)", arg)}
        assert used <= defined, name


def test_api_probes_hit_healthz_on_its_port() -> None:
    (api,) = pod_specs()["tailtune-api"]["containers"]
    served = int(api["args"][api["args"].index("--port") + 1])
    ports = {port["name"]: port["containerPort"] for port in api["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["path"] == "/healthz", probe
        assert ports[api[probe]["httpGet"]["port"]] == served, probe


def test_services_select_their_pods_and_target_a_named_port() -> None:
    deployments = of_kind("Deployment")
    for name, service in of_kind("Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        port_names = {port["name"] for port in container["ports"]}
        assert all(port["targetPort"] in port_names for port in service["spec"]["ports"]), name


def test_deployment_selectors_match_their_pod_labels() -> None:
    for name, deployment in of_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name


# ---- optional/: the KEDA example -------------------------------------------------------------------------

KEDA = documents(K8S / "optional" / "keda-scaledobject.yaml")


def keda_query() -> str:
    (scaled,) = [doc for doc in KEDA if doc["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    return trigger["metadata"]["query"]


def test_keda_example_scales_the_worker_deployment_from_postgresql() -> None:
    (scaled,) = [doc for doc in KEDA if doc["kind"] == "ScaledObject"]
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "tailtune-worker")
    assert target["name"] in of_kind("Deployment")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    (auth,) = [doc for doc in KEDA if doc["kind"] == "TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (secret,) = [doc for doc in KEDA if doc["kind"] == "Secret"]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert "optional" not in " ".join(KUSTOMIZATION["resources"])
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


@pytest.fixture
def optuna_database() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL, dropped afterwards."""
    name = f"tailtune_keda_{uuid.uuid4().hex[:12]}"
    server = sqlalchemy.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with server.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.mark.postgres
def test_keda_query_counts_the_trials_still_owed(optuna_database: str) -> None:
    storage = optuna.storages.RDBStorage(optuna_database)
    owed = {"a": (5, 2), "b": (3, 3), "c": (4, 0)}  # study: (n_trials budget, finished trials)
    for study_name, (budget, finished) in owed.items():
        study = optuna.create_study(study_name=study_name, storage=storage)
        study.set_user_attr("spec", {"name": study_name, "n_trials": budget})
        for number in range(finished):
            study.tell(study.ask(), float(number))
    running = optuna.load_study(study_name="c", storage=storage).ask()  # still owed until it finishes
    failed = optuna.load_study(study_name="a", storage=storage)
    failed.tell(failed.ask(), state=optuna.trial.TrialState.FAIL)  # retried, so still owed
    assert running.number == 0

    engine = sqlalchemy.create_engine(optuna_database)
    with engine.connect() as connection:
        remaining = connection.execute(sqlalchemy.text(keda_query())).scalar_one()
    engine.dispose()
    storage.remove_session()
    assert remaining == sum(max(budget - finished, 0) for budget, finished in owed.values())
