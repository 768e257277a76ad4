"""Local Prefect and MLflow servers as child processes (for ``modelmill serve`` and the tests).

Each server binds 127.0.0.1, logs to a file under the project data folder, is considered up when
its health endpoint answers, and is stopped with its whole process group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("modelmill.servers")


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

    def start(self, timeout: float = 180) -> LocalServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(self.cmd, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.health, timeout=2) as r:
                    if r.status == 200:
                        log.info("%s server up at %s", self.name, self.url)
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} server did not answer {self.health} within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        except ProcessLookupError:
            pass
        log.info("%s server stopped", self.name)


def prefect_server(state_dir: Path, port: int, database_url: str | None = None, scheduler_loop_seconds: float | None = None) -> LocalServer:
    """``prefect server start`` on 127.0.0.1 (SQLite under ``state_dir`` unless ``database_url``)."""
    env = {
        "PREFECT_HOME": str(state_dir / "prefect-server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    if scheduler_loop_seconds:
        env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(scheduler_loop_seconds)
    cmd = [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    return LocalServer("prefect", cmd, env, url, f"{url}/api/health", state_dir / "logs" / "prefect-server.log")


def mlflow_server(state_dir: Path, port: int, backend_uri: str | None = None) -> LocalServer:
    """``mlflow server`` on 127.0.0.1 with artifacts served by the server itself."""
    backend = backend_uri or f"sqlite:///{state_dir / 'mlflow.db'}"
    cmd = [
        _bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", backend, "--artifacts-destination", str(state_dir / "mlartifacts"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return LocalServer("mlflow", cmd, env, url, f"{url}/health", state_dir / "logs" / "mlflow-server.log")
