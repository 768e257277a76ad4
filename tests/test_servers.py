"""Against real servers on 127.0.0.1 free ports: ``modelmill serve`` starts a Prefect and an
MLflow server, registers every spec's cron deployment, the scheduler creates runs, and
``modelmill trigger`` runs one through the API to the end; and the work-pool path from
prefect.yaml with process workers (and its Docker and Kubernetes variants, deployed). The compose
topology on PostgreSQL, with an object store and a Dask cluster, is tests/test_stack.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port, last_run, mlflow_client, require_mirror, write_spec
from modelmill.config.settings import Settings
from modelmill.config.spec import available, load_spec
from modelmill.runtime.servers import mlflow_server, prefect_server

pytestmark = pytest.mark.server
MODELMILL = str(Path(sys.executable).with_name("modelmill"))


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))}
    env.update(
        MODELMILL_HOME=str(home),
        MODELMILL_DATA_MIRROR=str(require_mirror()),
        MODELMILL_PIPELINES_DIR=str(REPO / "pipelines"),
    )
    env.update(extra)
    return env


def _post(api: str, path: str, body: dict, auth: str | None = None) -> list:
    headers = {"Content-Type": "application/json", **(_basic(auth) if auth else {})}
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _basic(user_password: str) -> dict:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(user_password.encode()).decode()}


def _status(url: str, method: str = "GET", body: dict | None = None, **headers) -> tuple[int, dict]:
    """(HTTP status, response headers) of one request, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"process exited {proc.returncode} while waiting for {what}:\n{log.read_text()[-4000:] if log else ''}"
            )
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:] if log else ''}")


def _port_closed(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_serve_registers_cron_deployments_scheduler_runs_and_trigger_completes(tmp_path):
    home = tmp_path / "home"
    pport, mport = free_port(), free_port()
    api, mlflow_url = f"http://127.0.0.1:{pport}/api", f"http://127.0.0.1:{mport}"
    log = tmp_path / "serve.log"
    env = _env(home, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5", PREFECT_HOME=str(tmp_path / "prefect-client"))
    with open(log, "wb") as out:
        # Ctrl-C as a terminal delivers it: a harness started in the background ignores SIGINT, and its children inherit that
        serve = subprocess.Popen(
            [MODELMILL, "serve", "--prefect-port", str(pport), "--mlflow-port", str(mport)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        _wait(lambda: "Serving;" in log.read_text(), 300, "modelmill serve to start", serve, log)
        text = log.read_text()
        assert f"Prefect UI: http://127.0.0.1:{pport}" in text and f"MLflow UI:  {mlflow_url}" in text
        # No open doors: generated credentials, private; unauthenticated and foreign-Host requests refused.
        cred_file = home / "credentials.env"
        assert f"{cred_file} (mode 0600)" in text and (cred_file.stat().st_mode & 0o777) == 0o600
        creds = dict(
            ln.split("=", 1) for ln in cred_file.read_text().splitlines() if "=" in ln and not ln.startswith("#")
        )
        pauth, muser, mpass = (
            creds["PREFECT_SERVER_API_AUTH_STRING"],
            creds["MLFLOW_TRACKING_USERNAME"],
            creds["MLFLOW_TRACKING_PASSWORD"],
        )
        assert "admin:password1234" not in cred_file.read_text()
        assert _status(f"{api}/flows/filter", "POST", {})[0] == 401
        assert _status(f"{api}/flows/filter", "POST", {}, **_basic(pauth))[0] == 200
        assert _status(f"{api}/flows/filter", "POST", {}, Host="evil.com", **_basic(pauth))[0] == 400
        status, headers = _status(
            f"{api}/flows/filter", "OPTIONS", Origin="http://evil.com", **{"Access-Control-Request-Method": "POST"}
        )
        assert (
            headers.get("access-control-allow-origin") in (None, f"http://127.0.0.1:{pport}")
            and headers.get("access-control-allow-origin") != "*"
        )
        search = f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(search)[0] == 401
        assert _status(search, **_basic(f"{muser}:{mpass}"))[0] == 200
        assert _status(search, Host="evil.com", **_basic(f"{muser}:{mpass}"))[0] == 403
        assert _status(search, **_basic(f"{muser}:password1234"))[0] == 401
        auth_env = {
            "PREFECT_API_AUTH_STRING": pauth,
            "MLFLOW_TRACKING_USERNAME": muser,
            "MLFLOW_TRACKING_PASSWORD": mpass,
        }

        specs = {
            n: load_spec(n, Settings(pipelines_dir=REPO / "pipelines"))
            for n in available(Settings(pipelines_dir=REPO / "pipelines"))
        }
        everything = _wait(
            lambda: (d := _post(api, "/deployments/filter", {}, pauth)) and len(d) == len(specs) + 1 and d,
            120,
            "deployments",
            serve,
            log,
        )
        deployments = [
            d for d in everything if d["name"] != "stale-check"
        ]  # serve's hourly stale check is the one more
        assert len(deployments) == len(specs)
        crons = {d["name"]: [s["schedule"]["cron"] for s in d["schedules"]] for d in deployments}
        assert crons == {n: [spec.schedule.cron] for n, spec in specs.items()}
        switched_on = {d["name"]: [s["active"] for s in d["schedules"]] for d in deployments}
        assert switched_on == {n: [spec.schedule.active] for n, spec in specs.items()}
        heavy = {"breast_ultrasound", "support_intent", "review_sentiment"}  # deployed switched off
        assert {n for n, on in switched_on.items() if on == [False]} == heavy

        scheduled = _wait(
            lambda: _post(api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}, pauth),
            120,
            "the scheduler to create runs",
            serve,
            log,
        )
        assert {r["deployment_id"] for r in scheduled} <= {
            d["id"] for d in everything
        }  # the stale check is scheduled too
        assert all(r["auto_scheduled"] for r in scheduled)
        by_id = {d["id"]: d["name"] for d in everything}
        assert not {by_id[r["deployment_id"]] for r in scheduled} & heavy, "a switched-off schedule created a run"

        trig_env = _env(
            home,
            PREFECT_API_URL=api,
            MLFLOW_TRACKING_URI=mlflow_url,
            PREFECT_HOME=str(tmp_path / "prefect-client"),
            **auth_env,
        )
        trig = subprocess.run(
            [MODELMILL, "trigger", "breast_cytology", "--timeout", "600"],
            env=trig_env,
            capture_output=True,
            text=True,
            timeout=700,
        )
        assert trig.returncode == 0, trig.stdout + trig.stderr + log.read_text()[-3000:]
        assert "breast_cytology" in trig.stdout and "champion" in trig.stdout
        status = subprocess.run(
            [MODELMILL, "status", "--json"], env=trig_env, capture_output=True, text=True, timeout=300
        )
        rows = {r["pipeline"]: r for r in json.loads(status.stdout)}
        assert status.returncode == 0, status.stdout  # one healthy pipeline, the others never ran yet
        assert {r["state"] for n, r in rows.items() if n != "breast_cytology"} == {"never run"}
        assert (
            rows["support_intent"]["next_run"] is None and rows["support_intent"]["next_run_source"] == "schedule off"
        )
        assert rows["breast_cytology"]["state"] == "ok" and rows["breast_cytology"]["champion"] == "1"
        assert rows["breast_cytology"]["next_run_source"] == "prefect"  # the server's own scheduled runs

        settings = Settings(home=home)
        os.environ.update(
            MLFLOW_TRACKING_URI=mlflow_url, MLFLOW_TRACKING_USERNAME=muser, MLFLOW_TRACKING_PASSWORD=mpass
        )
        try:
            run = last_run(settings, "breast_cytology")
            client = mlflow_client(settings)
            assert run.info.status == "FINISHED" and run.data.tags["modelmill.trigger"] == "manual"
            champion = client.get_model_version_by_alias("modelmill-breast_cytology", "champion")
            assert champion.run_id == run.info.run_id
            flow_run_id = run.data.tags["modelmill.prefect_flow_run_id"]
        finally:
            for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                del os.environ[k]
        runs = _post(api, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}, pauth)
        assert runs and runs[0]["state"]["type"] == "COMPLETED"
        arts = _post(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}, pauth)
        md = [a for a in arts if a["type"] == "markdown"]
        assert md and run.info.run_id in md[0]["data"] and mlflow_url in md[0]["data"]

        # `modelmill run` in another shell, no variable set: its run is on the served Prefect UI too
        plain = subprocess.run(
            [MODELMILL, "run", "breast_cytology", "--force"], env=_env(home, PREFECT_HOME=str(tmp_path / "prefect-client")),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert (
            f"using the servers of `modelmill serve` for this project (flow runs recorded at http://127.0.0.1:{pport})"
            in plain.stderr
        )
        assert "prefect (temporary) server" not in plain.stderr
        (again,) = [
            r for r in mlflow_client(Settings(home=home)).search_runs(
                [run.info.experiment_id], "tags.`modelmill.trigger` = 'manual'", order_by=["attributes.start_time DESC"], max_results=1
            )
        ]  # fmt: skip
        assert again.info.run_id != run.info.run_id
        shown = _post(
            api,
            "/flow_runs/filter",
            {"flow_runs": {"id": {"any_": [again.data.tags["modelmill.prefect_flow_run_id"]]}}},
            pauth,
        )
        assert shown and shown[0]["state"]["type"] == "COMPLETED"
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(240)  # under a loaded CI machine (dask workers beside it) stopping has taken over 90 s
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            pytest.fail("modelmill serve did not stop on Ctrl-C")
    assert _port_closed(pport) and _port_closed(mport), "serve left a server running"
    assert not (home / "served.json").exists()  # the next `run` starts its own API again


# -- concurrency on one tracking server (here, not beside the serve test: ten processes load the machine)
def test_ten_runs_at_once_against_one_tracking_server_all_finish_with_one_champion(tmp_path):
    """Ten ``modelmill run`` processes of one pipeline, started together on a brand-new home against
    one MLflow server: each starts its own temporary Prefect API on the shared Prefect database of
    MODELMILL_HOME; all must finish and exactly one run may become champion."""
    from mlflow import MlflowClient

    one_candidate = [{"name": "logistic_regression", "estimator": "logistic_regression", "params": {"C": 1.0}}]
    spec = write_spec(tmp_path, "breast_cytology", candidates=one_candidate)
    (tmp_path / "expectations").mkdir()
    shutil.copy(REPO / "expectations" / "breast_cytology.json", tmp_path / "expectations")
    server = mlflow_server(tmp_path / "server", free_port()).start(timeout=120)
    try:
        env = _env(
            tmp_path / "home",
            MODELMILL_PIPELINES_DIR=str(spec.parent),
            MLFLOW_TRACKING_URI=server.url,
            OMP_NUM_THREADS="1",
        )
        logs = [tmp_path / f"run{i}.log" for i in range(10)]
        procs = [
            subprocess.Popen(
                [MODELMILL, "run", "breast_cytology", "--force"],
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
            for log in logs
        ]
        codes = [p.wait(timeout=900) for p in procs]
        assert codes == [0] * 10, "\n".join(
            f"--- run {i} (exit {c})\n{logs[i].read_text()[-1500:]}" for i, c in enumerate(codes) if c
        )
        # the registry too: left to default, it is MLflow's process-wide registry URI, which an
        # earlier test of this file set to its own (by then stopped) server: "connection refused"
        c = MlflowClient(server.url, registry_uri=server.url)
        runs = c.search_runs([c.get_experiment_by_name("modelmill/breast_cytology").experiment_id])
        assert len(runs) == 10 and {r.info.status for r in runs} == {"FINISHED"}
        decisions = sorted(r.data.tags["modelmill.decision"] for r in runs)
        assert decisions == ["challenger"] * 9 + ["promoted"], decisions
        promoted = next(r for r in runs if r.data.tags["modelmill.decision"] == "promoted")
        assert server.proc.poll() is None, (
            f"the MLflow server exited ({server.proc.returncode}): {server.log_path.read_text()[-3000:]}"
        )
        assert c.get_model_version_by_alias("modelmill-breast_cytology", "champion").run_id == promoted.info.run_id
    finally:
        server.stop()


def test_prefect_yaml_deploys_to_a_work_pool_and_a_process_worker_runs_it(tmp_path):
    """The work-pool path of the docs (Scaling out): `prefect deploy --all` from prefect.yaml, process workers
    and `prefect deployment run`. Two workers (one run at a time each) drain one pool side by
    side: two runs submitted together are taken one by each and overlap in time."""
    server = prefect_server(tmp_path / "state", free_port()).start(timeout=240)
    prefect = str(Path(sys.executable).with_name("prefect"))
    env = _env(tmp_path / "home", PREFECT_API_URL=f"{server.url}/api", PREFECT_HOME=str(tmp_path / "prefect-client"))
    workers: list[subprocess.Popen] = []
    try:
        subprocess.run(
            [prefect, "work-pool", "create", "modelmill-process", "--type", "process"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=120,
        )
        deploy = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        deployments = _post(f"{server.url}/api", "/deployments/filter", {})
        assert len(deployments) == len(available(Settings(pipelines_dir=REPO / "pipelines")))
        logs = {name: tmp_path / f"{name}.log" for name in ("worker-a", "worker-b")}
        for name, log in logs.items():
            with open(log, "wb") as out:
                cmd = [prefect, "worker", "start", "--pool", "modelmill-process", "--name", name, "--limit", "1"]
                loud = {
                    "PREFECT_LOGGING_LEVEL": "INFO",
                    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
                }  # its "submitting flow run" lines
                # poll every second (default 10 s): a run of ~10 s could otherwise end before the
                # other worker's next poll takes the second one (seen in CI: no overlap)
                loud["PREFECT_WORKER_QUERY_SECONDS"] = "1"
                workers.append(
                    subprocess.Popen(
                        cmd, env=env | loud, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        watch = subprocess.Popen(
            [
                prefect,
                "deployment",
                "run",
                "modelmill-pipeline/breast_cytology",
                "--param",
                "trigger=manual",
                "--watch",
                "--watch-timeout",
                "600",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        other = subprocess.run(
            [prefect, "deployment", "run", "modelmill-pipeline/credit_risk", "--watch", "--watch-timeout", "600"],
            env=env,
            capture_output=True,
            text=True,
            timeout=700,
        )
        watched = watch.communicate(timeout=700)[0]
        worker_logs = "\n".join(f"--- {n}\n{p.read_text()[-2000:]}" for n, p in logs.items())
        assert watch.returncode == 0 and "Completed" in watched, watched + worker_logs
        assert other.returncode == 0 and "Completed" in other.stdout, other.stdout + other.stderr + worker_logs
        runs = {
            r["name"]: r
            for r in _post(f"{server.url}/api", "/flow_runs/filter", {})
            if r["name"] in ("breast_cytology", "credit_risk")
        }
        assert len(runs) == 2
        # both workers may reach for the same run; the server lets one move it to PENDING and the
        # other logs "Aborted submission of flow run ..." (more often with one-second polling)
        said = {n: p.read_text() for n, p in logs.items()}
        taken = {
            n: [
                rid
                for rid in (r["id"] for r in runs.values())
                if f"submitting flow run '{rid}'" in text and f"Aborted submission of flow run '{rid}'" not in text
            ]
            for n, text in said.items()
        }
        assert sorted(len(v) for v in taken.values()) == [1, 1], taken  # one run each
        a, b = runs.values()
        assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"], "the two runs did not overlap"
        settings = Settings(home=tmp_path / "home")

        # whoever may call the API names a pipeline of the worker's specs folder, never a file of its choosing
        evil = tmp_path / "elsewhere" / "evil.yaml"
        evil.parent.mkdir()
        evil.write_text((REPO / "pipelines" / "breast_cytology.yaml").read_text().replace("breast_cytology", "evil"))
        attack = subprocess.run(
            [prefect, "deployment", "run", "modelmill-pipeline/breast_cytology", "--param", f"pipeline={evil}"]
            + ["--watch", "--watch-timeout", "600"],
            env=env,
            capture_output=True,
            text=True,
            timeout=700,
        )
        worker_logs = "\n".join(p.read_text() for p in logs.values())
        assert attack.returncode != 0 and "Failed" in attack.stdout, attack.stdout + attack.stderr
        assert "a deployment's `pipeline` parameter names a pipeline of" in worker_logs, worker_logs[-3000:]
        assert mlflow_client(settings).get_experiment_by_name("modelmill/evil") is None
        assert last_run(settings, "breast_cytology").data.tags["modelmill.trigger"] == "manual"
        assert (
            str(mlflow_client(settings).get_model_version_by_alias("modelmill-breast_cytology", "champion").version)
            == "1"
        )
        assert (
            str(mlflow_client(settings).get_model_version_by_alias("modelmill-credit_risk", "champion").version) == "1"
        )

        # the Docker and Kubernetes variants of the file deploy to pools of those types: the server
        # checks their job variables against each type's base job template
        for pool in ("docker", "kubernetes"):
            subprocess.run(
                [prefect, "work-pool", "create", f"modelmill-{pool}", "--type", pool],
                env=env,
                cwd=REPO,
                check=True,
                capture_output=True,
                timeout=120,
            )
            variant = tmp_path / f"prefect-{pool}.yaml"
            subprocess.run(
                [MODELMILL, "prefect-yaml", "--pool", pool, "--write", str(variant)],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            deploy = subprocess.run(
                [prefect, "--no-prompt", "deploy", "--name", "credit_risk", "--prefect-file", str(variant)],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            [d] = [d for d in _post(f"{server.url}/api", "/deployments/filter", {}) if d["name"] == "credit_risk"]
            assert (
                d["work_pool_name"] == f"modelmill-{pool}" and d["job_variables"]["image"] == "modelmill-worker:latest"
            )
            assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
        variant.write_text(variant.read_text().replace("memory_limit: 6Gi", "memory_limit: [6Gi]"))
        refused = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--name", "credit_risk", "--prefect-file", str(variant)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert (
            refused.returncode != 0
            and "is not valid under any of the given schemas" in refused.stderr
            and "6Gi" in refused.stderr
        ), refused.stderr[-1500:]
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        server.stop()


def test_a_server_whose_start_up_failed_is_started_again_when_its_exit_code_says_so(tmp_path):
    """Runs starting at once on a new project race for its Prefect database's migrations, and the
    loser's API exits 3 (a failed start-up); the temporary API is then started again."""
    from modelmill.runtime.servers import LocalServer

    port = free_port()
    script = f"""
import http.server, pathlib, sys
tried = pathlib.Path({str(tmp_path / "tried")!r})
if not tried.exists():
    tried.touch()
    sys.exit(3)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", {port}), Health).serve_forever()
"""
    url = f"http://127.0.0.1:{port}"

    def server(**kw):
        return LocalServer(
            "flaky", [sys.executable, "-c", script], {}, url, f"{url}/health", tmp_path / "flaky.log", **kw
        )

    with pytest.raises(RuntimeError, match="flaky server exited with 3"):
        server().start(timeout=30)
    (tmp_path / "tried").unlink()
    srv = server(restart_on=(3,))
    try:
        assert srv.start(timeout=30).ready
    finally:
        srv.stop()


def test_the_temporary_prefect_api_holds_its_port_from_the_moment_it_is_chosen(tmp_path, monkeypatch):
    """Commands started together each choose a port for their temporary Prefect API. A port found
    free and bound by the server seconds later can be taken meanwhile (by another command's
    server), and then every start on it fails (seen: ten runs at once, one ended "prefect
    (temporary) server exited with 3" after five restarts). The port is held from the moment it is
    chosen, the API serves on it, and nothing listens there once the API stops."""
    from modelmill.runtime.servers import temporary_prefect_api

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    api = temporary_prefect_api(tmp_path)
    port = int(api.url.rsplit(":", 1)[1])

    def bind_as_a_server_does():  # uvicorn and most servers set SO_REUSEADDR before they bind
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            other.bind(("127.0.0.1", port))

    try:
        with pytest.raises(OSError):
            bind_as_a_server_does()  # another command's server, before ours has started
        api.launch().wait(180)
        with urllib.request.urlopen(api.health, timeout=10) as r:
            assert r.status == 200
    finally:
        api.stop()
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_the_temporary_prefect_api_is_as_closed_as_serves(tmp_path):
    """A web page the operator visits while a run is going cannot reach the run's temporary API:
    a foreign Host is refused (DNS rebinding), and no other origin gets a CORS grant."""
    from modelmill.runtime.servers import temporary_prefect_api

    api = temporary_prefect_api(tmp_path)
    base = api.url
    try:
        api.launch().wait(180)
        assert _status(f"{base}/api/flows/filter", "POST", {})[0] == 200
        assert _status(f"{base}/api/flows/filter", "POST", {}, Host="evil.com")[0] == 400
        assert _status(f"{base}/api/logs/filter", "POST", {}, Host="evil.com")[0] == 400
        for method in ("POST", "DELETE"):
            status, headers = _status(
                f"{base}/api/flows/filter", "OPTIONS", Origin="http://evil.com",
                **{"Access-Control-Request-Method": method},
            )  # fmt: skip
            assert headers.get("access-control-allow-origin") in (None, base), (method, headers)
            assert "DELETE" not in headers.get("access-control-allow-methods", "") or status >= 400
    finally:
        api.stop()
