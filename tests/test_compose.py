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
    assert set(s) == {"check-secrets", "postgres", "seaweedfs", "prefect-server", "mlflow-server", "worker"}
    for name, svc in s.items():
        assert "healthcheck" in svc or name == "check-secrets", name  # a one-shot check has none
    assert s["postgres"]["depends_on"]["check-secrets"]["condition"] == "service_completed_successfully"
    assert s["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {k: v["condition"] for k, v in s["mlflow-server"]["depends_on"].items()} == {
        "postgres": "service_healthy",
        "seaweedfs": "service_healthy",
    }
    assert s["seaweedfs"]["depends_on"]["check-secrets"]["condition"] == "service_completed_successfully"
    assert {k: v["condition"] for k, v in s["worker"]["depends_on"].items()} == {
        "prefect-server": "service_healthy",
        "mlflow-server": "service_healthy",
        "seaweedfs": "service_healthy",
    }
    assert s["worker"]["build"]["dockerfile"] == "Dockerfile" and (REPO / "Dockerfile").is_file()
    assert s["worker"]["command"] == ["modelmill", "serve"]


def test_separate_databases_and_the_mlflow_server_settings(compose):
    s = compose["services"]
    assert "@postgres:5432/prefect" in s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_cmd = " ".join(s["mlflow-server"]["command"])
    backend = s["mlflow-server"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql://mlflow:") and backend.endswith("@postgres:5432/mlflow")
    assert "--artifacts-destination=s3://mlflow-artifacts/" in mlflow_cmd and "--allowed-hosts=" in mlflow_cmd
    assert (
        "--serve-artifacts" not in mlflow_cmd and "--no-serve-artifacts" not in mlflow_cmd
    )  # proxied (the default): clients need no store credentials
    assert s["mlflow-server"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert "AWS_SECRET_ACCESS_KEY" not in s["prefect-server"]["environment"]
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
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert used <= set(example), used - set(example)
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{key} is not taken from .env"
    assert ".env" in (REPO / ".gitignore").read_text().split()


SECRETS = ("PASSWORD", "SECRET", "AUTH_STRING")


def test_both_servers_need_a_login_and_the_worker_has_one(compose):
    s = compose["services"]
    assert s["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == "${PREFECT_AUTH_STRING}"
    assert "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS" in s["prefect-server"]["environment"]
    assert s["prefect-server"]["command"][:3] == [
        "python",
        "-m",
        "modelmill_flows.prefect_server",
    ]  # the Host allow-list
    assert "--app-name=basic-auth" in s["mlflow-server"]["command"]
    assert {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_CONFIG_PATH"} <= set(
        s["mlflow-server"]["environment"]
    )
    ini = (REPO / "docker" / "mlflow-auth.ini").read_text()
    assert "admin_password" not in ini and "password1234" not in ini and "default_permission = NO_PERMISSIONS" in ini
    assert {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(
        s["worker"]["environment"]
    )


def test_no_secret_is_on_a_process_command_line(compose):
    for name, svc in compose["services"].items():
        command = (
            " ".join(svc.get("command") or [])
            if isinstance(svc.get("command"), list)
            else str(svc.get("command") or "")
        )
        used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", command))
        assert not [v for v in used if any(k in v for k in SECRETS)], (name, used)


def test_images_are_pinned_to_exact_versions(compose):
    from modelmill_flows.deployments import IMAGE

    for name, svc in compose["services"].items():
        if "build" in svc and "image" in svc:  # built here, not pulled: the tag the work pools run
            assert svc["image"] == IMAGE, (name, svc["image"])
        elif "image" in svc:
            assert re.search(r":v?\d+\.\d+(\.\d+)?(-[\w.]+)?$", svc["image"]), (name, svc["image"])
    assert re.search(r"^FROM \S+:v?\d+\.\d+\.\d+", (REPO / "docker" / "mlflow.Dockerfile").read_text(), re.M)


def _check_secrets_script(compose) -> str:
    (script,) = compose["services"]["check-secrets"]["command"]
    return script.replace("$$", "$")  # what compose hands the container's shell


@pytest.mark.parametrize(
    "override, ok",
    [
        ({}, False),
        ({"MLFLOW_ADMIN_PASSWORD": ""}, False),
        ("real", True),
        ({"PREFECT_AUTH_STRING": "modelmill:change-me-x"}, False),
        ({"S3_SECRET_KEY": "change-me-s3-secret"}, False),
    ],
)
def test_the_stack_refuses_to_start_with_placeholder_or_empty_secrets(compose, override, ok):
    """The check-secrets service's script, run in a real shell with .env.example's values."""
    import subprocess

    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    names = [
        "POSTGRES_ADMIN_PASSWORD",
        "PREFECT_DB_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "PREFECT_AUTH_STRING",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SECRET_KEY",
        "S3_SECRET_KEY",
        "MODELMILL_SIGNING_KEY",
    ]
    env = {"PATH": "/usr/bin:/bin", **{n: example[n] for n in names}}
    if override == "real":
        env |= {n: f"user:s3cret-{i}" if n == "PREFECT_AUTH_STRING" else f"s3cret-{i}" for i, n in enumerate(names)}
    else:
        env |= {**{n: f"s3cret-{i}" for i, n in enumerate(names)}, **override} if override else {}
    done = subprocess.run(["sh", "-c", _check_secrets_script(compose)], env=env, capture_output=True, text=True)
    assert (done.returncode == 0) == ok, done.stderr
    if not ok:
        assert "is empty or still a change-me placeholder: set it in .env" in done.stderr
