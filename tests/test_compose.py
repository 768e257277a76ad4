"""docker-compose.yml: valid against the Compose spec, and it keeps the stack's promises
(healthchecks gate start-up, secrets from .env, only the two UIs published, on 127.0.0.1)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import REPO

SCHEMA = REPO / "tests" / "schemas" / "compose-spec.json"  # vendored: see tests/schemas/README.md


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_validates_against_the_compose_spec(compose):
    import jsonschema

    jsonschema.validate(compose, json.loads(SCHEMA.read_text()))


def test_topology_and_start_order(compose):
    s = compose["services"]
    assert set(s) == {"postgres", "prefect-server", "mlflow-server", "worker"}
    for name, svc in s.items():
        assert "healthcheck" in svc or name == "worker", name
    assert s["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["mlflow-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {k: v["condition"] for k, v in s["worker"]["depends_on"].items()} == {"prefect-server": "service_healthy", "mlflow-server": "service_healthy"}
    assert s["worker"]["build"]["dockerfile"] == "Dockerfile" and (REPO / "Dockerfile").is_file()
    assert s["worker"]["command"] == ["modelmill", "serve"]


def test_separate_databases_and_the_mlflow_server_settings(compose):
    s = compose["services"]
    assert "@postgres:5432/prefect" in s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_cmd = " ".join(s["mlflow-server"]["command"])
    assert "postgresql://mlflow:" in mlflow_cmd and "@postgres:5432/mlflow" in mlflow_cmd
    assert "--artifacts-destination=/mlartifacts" in mlflow_cmd and "--allowed-hosts=" in mlflow_cmd
    assert s["mlflow-server"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    init = (REPO / "docker" / "postgres-init.sh").read_text()
    assert "CREATE DATABASE prefect OWNER prefect" in init and "CREATE DATABASE mlflow OWNER mlflow" in init


def test_only_the_two_uis_are_published_and_on_loopback(compose):
    published = {n: svc["ports"] for n, svc in compose["services"].items() if svc.get("ports")}
    assert set(published) == {"prefect-server", "mlflow-server"}
    for ports in published.values():
        assert len(ports) == 1 and ports[0].startswith("${BIND_ADDRESS:-127.0.0.1}:")


def test_secrets_come_from_a_git_ignored_env_file(compose):
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text))
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines() if line and not line.startswith("#"))
    assert used <= set(example), used - set(example)
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{key} is not taken from .env"
    assert ".env" in (REPO / ".gitignore").read_text().split()
