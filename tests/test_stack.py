"""The path a team takes when one machine is not enough, end to end and without docker:
PostgreSQL under an MLflow server (its artifacts on an S3 store behind its proxy) and a Prefect
server; snapshots on the same store (SeaweedFS); a Dask scheduler and two workers started
separately, each in a working directory of its own with none of the project's settings.

``modelmill run --all --dask-address`` trains three pipelines there while one worker is killed
mid-run: its pipeline runs again on the other, every pipeline gets a champion, and no MLflow or
Prefect run is left RUNNING. A rerun skips all three."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port, require_mirror
from modelmill.runtime.servers import mlflow_server, prefect_server

pytestmark = pytest.mark.server
BIN = Path(sys.executable).parent
PIPELINES = ("credit_risk", "breast_cytology", "price_forecast")
CLIENT_ONLY = ("MODELMILL_", "MLFLOW_", "PREFECT_", "AWS_")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_ONLY)}
    return env | extra


def _statuses(output: str) -> dict[str, str]:
    """pipeline -> status, from the summary table `modelmill run` prints."""
    return {
        ln.split()[0]: ln.split()[1] for ln in output.splitlines() if len(ln.split()) > 1 and ln.split()[0] in PIPELINES
    }


def _flow_runs(api: str) -> list[dict]:
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes (no nanny: killing a worker kills it)."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> None:
        folder = self.root / name
        folder.mkdir(parents=True)
        env = self.env | {"HOME": str(folder), "TMPDIR": str(folder), "PREFECT_HOME": str(folder / "prefect")}
        with open(folder / "out.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [str(BIN / "dask"), *args],
                env=env,
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, workers: int) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
        for i in range(workers):
            name = f"worker-{i}"
            self._start(
                name,
                "worker",
                self.address,
                "--name",
                name,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--local-directory",
                str(self.root / name / "dask"),
            )
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=90)

    def worker_pids(self) -> dict[int, str]:
        return {p.pid: name for name, p in self.procs.items() if name.startswith("worker") and p.poll() is None}

    def log(self, name: str) -> str:
        return (self.root / name / "out.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            except ProcessLookupError:
                pass


def _project(root: Path) -> Path:
    for folder in ("pipelines", "expectations"):
        (root / folder).mkdir(parents=True)
    for name in PIPELINES:
        shutil.copy(REPO / "pipelines" / f"{name}.yaml", root / "pipelines")
        shutil.copy(REPO / "expectations" / f"{name}.json", root / "expectations")
    return root / "pipelines"


def test_three_pipelines_on_a_dask_cluster_started_elsewhere_with_postgres_mlflow_on_s3_and_a_worker_killed(
    tmp_path, postgres, seaweedfs
):
    state = tmp_path / "state"
    store = seaweedfs.env("team")
    secrets = {"AWS_ACCESS_KEY_ID": store["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": store["AWS_SECRET_ACCESS_KEY"]}
    mlflow = mlflow_server(
        state, free_port(), backend_uri=f"postgresql://mlflow:mlflow-secret@127.0.0.1:{postgres}/mlflow",
        artifacts=f"s3://{seaweedfs.BUCKET}/mlflow-artifacts", env={"MLFLOW_S3_ENDPOINT_URL": seaweedfs.endpoint, **secrets},
    )  # fmt: skip
    prefect = prefect_server(
        state, free_port(), database_url=f"postgresql+asyncpg://prefect:prefect-secret@127.0.0.1:{postgres}/prefect"
    )
    api = f"{prefect.url}/api"
    # the workers: the tracking server, the Prefect API and the store, nothing of the project
    cluster = DaskCluster(tmp_path / "cluster", _clean_env(**secrets, PREFECT_API_URL=api, OMP_NUM_THREADS="1"))
    # the submitting command: no store credentials (MLflow's artifacts go through its server)
    submitter = _clean_env(
        MODELMILL_HOME=str(tmp_path / "home"), MODELMILL_DATA_MIRROR=str(require_mirror()), MODELMILL_PIPELINES_DIR=str(_project(tmp_path)),
        MODELMILL_STORE_URI=store["MODELMILL_STORE_URI"], MODELMILL_STORE_ENDPOINT=store["MODELMILL_STORE_ENDPOINT"],
        MLFLOW_TRACKING_URI=mlflow.url, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "prefect-client"), TMPDIR=str(tmp_path),
        MODELMILL_SIGNING_KEY=os.environ["MODELMILL_SIGNING_KEY"],  # the project's key (its runs hand it to the workers)
    )  # fmt: skip
    mlflow.launch(), prefect.launch()
    try:
        mlflow.wait(240), prefect.wait(240)
        cluster.start(workers=2)
        run = [str(BIN / "modelmill"), "run", "--all", "--dask-address", cluster.address]
        with open(tmp_path / "first.log", "w") as out:
            first = subprocess.Popen(run, env=submitter, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True)
        from mlflow import MlflowClient

        client = MlflowClient(mlflow.url, registry_uri=mlflow.url)
        experiments = lambda: [e.experiment_id for e in client.search_experiments() if e.name.startswith("modelmill/")]  # noqa: E731

        # kill the worker whose pipeline is past its gate, training
        victim, deadline = None, time.time() + 600
        while victim is None and time.time() < deadline and first.poll() is None:
            pids = cluster.worker_pids()
            for r in (
                client.search_runs(experiments(), filter_string="attributes.status = 'RUNNING'")
                if experiments()
                else []
            ):
                pid = int(r.data.tags.get("modelmill.owner_pid", "0"))
                if pid in pids and r.data.tags.get("modelmill.validation") == "passed":
                    victim = (pids[pid], r.data.tags["modelmill.pipeline"], r.info.run_id)
                    os.kill(pid, signal.SIGKILL)
                    break
            time.sleep(0.5)
        assert victim is not None, (tmp_path / "first.log").read_text()[-4000:]
        first.wait(900)
        said = (tmp_path / "first.log").read_text()
        logs = said[-4000:] + "".join(f"\n--- {n}\n{cluster.log(n)[-3000:]}" for n in cluster.procs)
        assert first.returncode == 0, logs
        assert _statuses(said) == dict.fromkeys(PIPELINES, "trained"), logs

        # every pipeline has a champion; the killed attempt is FAILED, not RUNNING
        runs = client.search_runs(experiments(), max_results=100)
        assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"], logs
        killed = client.get_run(victim[2])
        assert killed.info.status == "FAILED" and killed.data.tags["modelmill.failure"] == "orphaned", killed.data.tags
        for name in PIPELINES:
            champion = client.get_model_version_by_alias(f"modelmill-{name}", "champion")
            trained = client.get_run(champion.run_id)
            assert trained.info.status == "FINISHED"
            assert trained.data.tags["modelmill.owner_pid"] != str(first.pid)  # trained on a worker
            assert trained.info.artifact_uri.startswith("mlflow-artifacts:")  # through the server's proxy
        assert "was lost; the pipeline ran again on process" in killed.data.tags["modelmill.error"]
        survivor = next(iter(cluster.worker_pids().values()))
        assert f"[{victim[1]}] {victim[1]}: validation passed" in cluster.log(survivor)  # it ran again there

        # the artifacts and the snapshots are on the store; the workers' folders are their own
        from pyarrow.fs import FileSelector

        objects = {
            i.path for i in seaweedfs.fs().get_file_info(FileSelector(seaweedfs.BUCKET, recursive=True)) if i.is_file
        }
        assert any(
            o.startswith(f"{seaweedfs.BUCKET}/mlflow-artifacts/") and o.endswith("model_card.md") for o in objects
        ), sorted(objects)[:20]
        assert any(o.startswith(f"{seaweedfs.BUCKET}/team/snapshots/") for o in objects), sorted(objects)[:20]
        assert not list((tmp_path / "home").rglob("*.parquet"))  # nothing of it in the project's folder
        assert all(
            list((tmp_path / "cluster" / w / ".modelmill").rglob("*")) for w in ("worker-0", "worker-1")
        )  # each its own

        # the runs live in PostgreSQL, MLflow's and Prefect's
        def count(database: str, table: str) -> int:
            sql = [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(postgres),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                f"select count(*) from {table}",
            ]
            return int(subprocess.run(sql, capture_output=True, text=True, check=True).stdout.strip())

        assert count("mlflow", "runs") == len(runs) == len(PIPELINES) + 1  # and the killed attempt
        assert (
            count("prefect", "flow_run") == len(_flow_runs(api)) == 1 + len(PIPELINES) + 1
        )  # modelmill-all, its sub-flows

        # no Prefect flow run left RUNNING either: the lost attempt's is Crashed
        states = {r["id"]: (r["name"], r["state"]["type"]) for r in _flow_runs(api)}
        assert not [s for s in states.values() if s[1] == "RUNNING"], states
        assert states[killed.data.tags["modelmill.prefect_flow_run_id"]] == (victim[1], "CRASHED")

        # a rerun skips all three
        again = subprocess.run(run, env=submitter, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert _statuses(again.stdout) == dict.fromkeys(PIPELINES, "skipped"), again.stdout
    finally:
        cluster.stop()
        prefect.stop()
        mlflow.stop()
