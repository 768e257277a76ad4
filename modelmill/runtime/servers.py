"""Local Prefect and MLflow servers as child processes (for ``modelmill serve`` and the tests).

Each server binds 127.0.0.1, logs to a file under the project data folder, is considered up when
its health endpoint answers, and is stopped with its whole process group.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("modelmill.runtime.servers")


def _bin(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


@dataclass
class LocalServer:
    name: str
    cmd: list[str]
    env: dict[str, str]
    url: str
    health: str
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    health_headers: dict[str, str] = field(default_factory=dict, repr=False)
    ready: bool = field(default=False, repr=False)
    #: exit codes after which the server is started again (a failed start-up, not a bad command)
    restart_on: tuple[int, ...] = ()
    #: a socket bound to the server's port, handed to each start of the server by its descriptor
    #: and held here until :meth:`stop`: no other process can take the port meanwhile
    sock: socket.socket | None = field(default=None, repr=False)

    def start(self, timeout: float = 180) -> LocalServer:
        return self.launch().wait(timeout)

    def launch(self) -> LocalServer:
        """Start the process and return at once (:meth:`wait` for it to answer)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            fds = (self.sock.fileno(),) if self.sock is not None else ()
            self.proc = subprocess.Popen(
                self.cmd,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=fds,
            )
        return self

    def wait(self, timeout: float = 180) -> LocalServer:
        """Return once the health endpoint answers (at once if it already has)."""
        if self.ready:
            return self
        deadline, restarts = time.time() + timeout, 0
        while time.time() < deadline:
            if self.proc.poll() is not None:
                if self.proc.returncode in self.restart_on and restarts < 5:
                    restarts += 1
                    log.debug("%s server exited with %d; starting it again", self.name, self.proc.returncode)
                    time.sleep(random.uniform(0.2, 1.0))  # processes that failed together retry apart
                    self.launch()
                    continue
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}; see {self.log_path}")
            if self.answers(timeout=2):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} server did not answer {self.health} within {timeout:.0f}s; see {self.log_path}"
        )

    def answers(self, timeout: float = 0.5) -> bool:
        """Whether the health endpoint answers now (one request)."""
        if not self.ready:
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(self.health, headers=self.health_headers), timeout=timeout
                ) as r:
                    if r.status == 200:
                        log.info("%s server up at %s", self.name, self.url)
                        self.ready = True
            except OSError:
                pass
        return self.ready

    def stop(self, timeout: float = 20) -> None:
        if self.sock is not None:
            self.sock.close()  # the child has its own copy while it runs
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_group(self.proc, timeout)
        log.info("%s server stopped", self.name)


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process started in a session of its own and everything it started: SIGTERM to the
    group, then after ``grace`` seconds SIGKILL to whatever of it is left (a server's workers
    can outlive their parent and hold its port)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _basic(user_password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(user_password.encode()).decode()}


#: names the API URL of a temporary Prefect API (set with ``PREFECT_API_URL`` by the command that
#: launched it, and inherited by its workers): one that stops with that command
TEMPORARY_API = "MODELMILL_TEMPORARY_PREFECT_API"


def temporary_prefect_api(state_dir: Path) -> LocalServer:
    """The API Prefect starts by itself when a flow runs without ``PREFECT_API_URL`` (its
    "ephemeral" server: uvicorn on ``create_app``, UI off, on a free loopback port), as a server
    the caller launches early, so it comes up while the run does its own start-up, and stops.
    Prefect would start it at the first flow and wait for it there (~7 s on a new project's
    database, ~3 s on one that exists)."""
    import importlib.util

    # The port is this process's from the moment it is chosen: uvicorn serves on the bound socket
    # (``--fd``). A port picked free and bound later by the server could be taken in between, by
    # another command's server say, and every start on it would fail.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(app_dir),
        "--factory",
        "modelmill_flows.prefect_server:temporary_app",  # Prefect's app behind a Host allow-list
        "--fd",
        str(sock.fileno()),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    env = {
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # as closed as `serve`'s: no web page may call it (CORS: its own origin only; Host: its own)
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": url,
        TEMPORARY_API: url,
    }
    # uvicorn exits 3 when the app's start-up fails: runs starting at once on one new database race
    # for its migrations (Prefect's own ephemeral server is started again then, too)
    return LocalServer(
        "prefect (temporary)",
        cmd,
        env,
        url,
        f"{url}/api/health",
        state_dir / "logs" / "prefect-temporary.log",
        restart_on=(3,),
        sock=sock,
    )


def prefect_server(
    state_dir: Path,
    port: int,
    database_url: str | None = None,
    scheduler_loop_seconds: float | None = None,
    creds: Credentials | None = None,
) -> LocalServer:
    """A Prefect server on 127.0.0.1 (SQLite under ``state_dir`` unless ``database_url``).

    With ``creds`` (what ``modelmill serve`` runs): basic auth on every API call, CORS only for its
    own UI origin, and a Host allow-list (``modelmill_flows.prefect_server``). Without: ``prefect server
    start`` as Prefect ships it, for tests of other topologies."""
    url = f"http://127.0.0.1:{port}"
    env = {
        "PREFECT_HOME": str(state_dir / "prefect-server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"{url}/api",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    if scheduler_loop_seconds:
        env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(scheduler_loop_seconds)
    log_path = state_dir / "logs" / "prefect-server.log"
    if creds is None:
        cmd = [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        return LocalServer("prefect", cmd, env, url, f"{url}/api/health", log_path)
    env |= {
        "PREFECT_SERVER_API_AUTH_STRING": creds.prefect_auth,
        "PREFECT_API_AUTH_STRING": creds.prefect_auth,
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"{url},http://localhost:{port}",
    }
    cmd = [
        sys.executable,
        "-m",
        "modelmill_flows.prefect_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--allowed-host",
        f"127.0.0.1:{port}",
        "--allowed-host",
        f"localhost:{port}",
    ]
    return LocalServer(
        "prefect", cmd, env, url, f"{url}/api/health", log_path, health_headers=_basic(creds.prefect_auth)
    )


def mlflow_server(
    state_dir: Path,
    port: int,
    backend_uri: str | None = None,
    creds: Credentials | None = None,
    artifacts: str | None = None,
    env: dict[str, str] | None = None,
) -> LocalServer:
    """``mlflow server`` on 127.0.0.1 with artifacts served by the server itself, its security
    middleware on (``--allowed-hosts``: only its own host names). With ``creds``: MLflow's
    basic-auth app; the admin password and the Flask secret come from the environment, never
    the command line.

    ``artifacts``: where the server keeps them (default: a folder under ``state_dir``), e.g.
    ``s3://bucket/prefix`` with the store's endpoint and credentials in ``env``
    (``MLFLOW_S3_ENDPOINT_URL``, ``AWS_*``): only the server holds them; clients reach the
    artifacts through its proxy."""
    backend = backend_uri or f"sqlite:///{state_dir / 'mlflow.db'}"
    cmd = [
        _bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", backend, "--artifacts-destination", artifacts or str(state_dir / "mlartifacts"),
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port},127.0.0.1,localhost",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    headers = {}
    if creds is not None:
        config = state_dir / "mlflow-auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{state_dir / 'mlflow-auth.db'}\nadmin_username = {creds.mlflow_user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        cmd += ["--app-name", "basic-auth"]
        env |= {
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": creds.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": creds.flask_secret,
        }
        headers = _basic(f"{creds.mlflow_user}:{creds.mlflow_password}")
    return LocalServer(
        "mlflow", cmd, env, url, f"{url}/health", state_dir / "logs" / "mlflow-server.log", health_headers=headers
    )


@dataclass(frozen=True)
class Credentials:
    """What `modelmill serve`'s servers and their clients authenticate with."""

    prefect_auth: str  # "user:password" (PREFECT_SERVER_API_AUTH_STRING / PREFECT_API_AUTH_STRING)
    mlflow_user: str
    mlflow_password: str
    flask_secret: str
    path: Path | None = None  # where they were generated, if they were

    def client_env(self) -> dict[str, str]:
        return {
            "PREFECT_API_AUTH_STRING": self.prefect_auth,
            "MLFLOW_TRACKING_USERNAME": self.mlflow_user,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_password,
        }


CREDENTIALS_FILE = "credentials.env"


def credentials(home: Path) -> Credentials:
    """From the environment when given (PREFECT_SERVER_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME /
    _PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY); else generated once into
    ``home/credentials.env`` (mode 0600) and read back from there."""
    import secrets

    env = os.environ
    path = home / CREDENTIALS_FILE
    stored: dict[str, str] = {}
    if path.is_file():
        stored = dict(
            line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")
        )
    values = {
        "PREFECT_SERVER_API_AUTH_STRING": env.get("PREFECT_SERVER_API_AUTH_STRING")
        or stored.get("PREFECT_SERVER_API_AUTH_STRING")
        or f"modelmill:{secrets.token_urlsafe(24)}",
        "MLFLOW_TRACKING_USERNAME": env.get("MLFLOW_TRACKING_USERNAME")
        or stored.get("MLFLOW_TRACKING_USERNAME")
        or "modelmill-admin",
        "MLFLOW_TRACKING_PASSWORD": env.get("MLFLOW_TRACKING_PASSWORD")
        or stored.get("MLFLOW_TRACKING_PASSWORD")
        or secrets.token_urlsafe(24),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": env.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or stored.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or secrets.token_hex(32),
    }
    generated = None
    if values != stored:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("# modelmill serve: credentials of the local Prefect and MLflow servers (keep private)\n")
            out.writelines(f"{k}={v}\n" for k, v in values.items())
        os.chmod(path, 0o600)
        generated = path
    return Credentials(
        values["PREFECT_SERVER_API_AUTH_STRING"], values["MLFLOW_TRACKING_USERNAME"], values["MLFLOW_TRACKING_PASSWORD"],
        values["MLFLOW_FLASK_SERVER_SECRET_KEY"], generated or path,
    )  # fmt: skip


#: where ``modelmill serve`` says which servers it runs, so that a command started beside it
#: (``modelmill run`` in another shell) records its runs there: on its Prefect UI, and through its
#: MLflow server (whose experiments keep their artifacts behind it, out of a direct store's reach)
SERVED_FILE = "served.json"


def record_served(home: Path, prefect_url: str | None, mlflow_url: str | None) -> Path:
    """Note the servers this process serves (removed when it stops)."""
    import json

    path = home / SERVED_FILE
    path.write_text(json.dumps({"prefect": prefect_url, "mlflow": mlflow_url, "pid": os.getpid()}))
    return path


def served_environment(home: Path) -> dict[str, str] | None:
    """The client variables of the servers a live ``modelmill serve`` of this project runs, when
    they answer now; else None (no serve, a stale note, a server that does not answer)."""
    import json

    try:
        note = json.loads((home / SERVED_FILE).read_text())
        os.kill(int(note["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    creds = credentials(home)
    env, checks = {}, []
    if note.get("prefect"):
        env |= {"PREFECT_API_URL": f"{note['prefect']}/api", "PREFECT_API_AUTH_STRING": creds.prefect_auth}
        checks.append((f"{note['prefect']}/api/health", creds.prefect_auth))
    if note.get("mlflow"):
        env |= {
            "MLFLOW_TRACKING_URI": note["mlflow"],
            "MLFLOW_TRACKING_USERNAME": creds.mlflow_user,
            "MLFLOW_TRACKING_PASSWORD": creds.mlflow_password,
        }
        checks.append((f"{note['mlflow']}/health", f"{creds.mlflow_user}:{creds.mlflow_password}"))
    for url, auth in checks:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=_basic(auth)), timeout=2) as r:
                if r.status != 200:
                    return None
        except OSError:
            return None
    return env or None
