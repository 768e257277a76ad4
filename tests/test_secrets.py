"""Secrets stay out of everything modelmill records: one secret of each kind is planted (a notify
URL's password and path token in the spec, a password in MLFLOW_TRACKING_URI, one in
MODELMILL_STORE_ENDPOINT), real commands run against a real MLflow server, and every byte they
left (the project folder with Prefect's database and logs, the MLflow server's database and
artifacts, the console) is searched for each secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import command_env, free_port, write_example_spec
from modelmill.runtime.redact import mask_url, redact
from modelmill.runtime.servers import mlflow_server

MODELMILL = str(Path(sys.executable).with_name("modelmill"))
SECRETS = {
    "notify password": "S3CRET-NOTIFY-1",
    "notify path token": "S3CRET-PATH-2",
    "tracking password": "S3CRET-MLFLOW-3",
    "tracking password of a server that is down": "S3CRET-DOWN-4",
    "store endpoint password": "S3CRET-STORE-5",
}


def test_urls_lose_their_passwords_and_tokens():
    assert redact("MLFLOW_TRACKING_URI=http://bob:pw@127.0.0.1:5000 is down") == (
        "MLFLOW_TRACKING_URI=http://bob:***@127.0.0.1:5000 is down"
    )
    assert redact("mailto://a:b@smtp.x.org?to=o@x.org") == "mailto://a:***@smtp.x.org?to=o@x.org"
    assert redact("https://h/data.csv?x=1&token=abc") == "https://h/data.csv?x=1&token=***"
    assert (
        redact("http://host/#/experiments/1/runs?workflowType=x") == "http://host/#/experiments/1/runs?workflowType=x"
    )
    assert mask_url("slack://T000/B000/XXXXsecret") == "slack://T000/…"


def _every_byte(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


@pytest.mark.flow
def test_no_planted_secret_is_recorded_anywhere(example_project, tmp_path):
    root, spec, data = example_project
    home = Path(os.environ["MODELMILL_HOME"])
    dead = free_port()
    spec["notify"] = {
        "urls": [f"json://alice:{SECRETS['notify password']}@127.0.0.1:{dead}/hook/{SECRETS['notify path token']}"],
        "events": ["promoted", "failed"],
    }
    write_example_spec(root, spec, data)
    server = mlflow_server(tmp_path / "server", free_port()).start(timeout=180)
    try:
        env = command_env(
            MLFLOW_TRACKING_URI=server.url.replace("http://", f"http://bob:{SECRETS['tracking password']}@"),
            MODELMILL_NOTIFY_DEADLINE="3",
        )

        def modelmill(*args, **extra):
            return subprocess.run(
                [MODELMILL, *args], env=env | extra, capture_output=True, text=True, timeout=600, cwd=tmp_path
            )

        trained = modelmill("run", "my_cells")
        assert trained.returncode == 0, trained.stdout + trained.stderr[-3000:]
        down = modelmill(
            "run", "my_cells",
            MLFLOW_TRACKING_URI=f"http://carol:{SECRETS['tracking password of a server that is down']}@127.0.0.1:{free_port()}",
        )  # fmt: skip
        assert down.returncode == 1 and "is unreachable" in down.stderr
        store = modelmill(
            "run", "my_cells", "--force",
            MODELMILL_STORE_URI="s3://modelmill/project",
            MODELMILL_STORE_ENDPOINT=f"http://dave:{SECRETS['store endpoint password']}@127.0.0.1:{dead}",
            AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
        )  # fmt: skip
        assert store.returncode == 1, store.stdout + store.stderr[-3000:]
        assert "127.0.0.1" in store.stderr  # the endpoint is named, its password is not
        console = "".join(r.stdout + r.stderr for r in (trained, down, store))
    finally:
        server.stop()
    files = _every_byte(home, tmp_path / "server")
    assert any(p.name == "prefect.db" for p in files) and any(p.name == "spec.json" for p in files), "\n".join(
        sorted(str(p.relative_to(tmp_path)) for p in files)
    )
    for kind, secret in SECRETS.items():
        assert secret not in console, f"the {kind} reached the console"
        found = [str(p) for p, content in files.items() if secret.encode() in content]
        assert not found, f"the {kind} is recorded in {found}"
