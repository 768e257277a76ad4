"""Pipelines side by side: ``modelmill run --all --workers N`` on a local Dask cluster (prefect-dask)
and ``--dask-address`` on an existing one. Same champions as one after another, each pipeline its
own MLflow run and flow run, and one pipeline's failure does not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, require_mirror

pytestmark = pytest.mark.flow
MODELMILL = str(Path(sys.executable).with_name("modelmill"))
PIPELINES = ("credit_risk", "breast_cytology")


def _project(root: Path, rejected: bool = False) -> Path:
    """A pipelines folder with the shipped credit_risk and breast_cytology specs (and, with
    ``rejected``, a third whose suite the data fails)."""
    (root / "pipelines").mkdir(parents=True)
    (root / "expectations").mkdir()
    for name in PIPELINES:
        shutil.copy(REPO / "pipelines" / f"{name}.yaml", root / "pipelines")
        shutil.copy(REPO / "expectations" / f"{name}.json", root / "expectations")
    if rejected:
        spec = yaml.safe_load((REPO / "pipelines" / "breast_cytology.yaml").read_text())
        spec.update(name="cells_strict", suite="cells_strict.json")
        (root / "pipelines" / "cells_strict.yaml").write_text(yaml.safe_dump(spec))
        suite = {
            "name": "cells_strict",
            "expectations": [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "mean_radius", "min_value": 0, "max_value": 10},
                }
            ],
        }
        (root / "expectations" / "cells_strict.json").write_text(json.dumps(suite))
    return root / "pipelines"


def _run(root: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING", "PREFECT_HOME"))}
    env.update(
        MODELMILL_HOME=str(root / "home"),
        MODELMILL_DATA_MIRROR=str(require_mirror()),
        MODELMILL_PIPELINES_DIR=str(root / "pipelines"),
        TMPDIR=str(root),
    )
    return subprocess.run([MODELMILL, "run", *argv], env=env, cwd=root, capture_output=True, text=True, timeout=900)


def _champions(root: Path) -> dict[str, tuple[str, float, str]]:
    """pipeline -> (candidate, test metric, flow run id) of its champion."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'home' / 'mlflow.db'}"
    c = MlflowClient(uri, registry_uri=uri)
    out = {}
    for name in PIPELINES:
        version = c.get_model_version_by_alias(f"modelmill-{name}", "champion")
        run = c.get_run(version.run_id)
        out[name] = (
            run.data.params["model.candidate"],
            version.tags["modelmill.primary"],
            run.data.tags["modelmill.prefect_flow_run_id"],
        )
    return out


def test_side_by_side_on_a_local_dask_cluster_gives_the_sequential_champions_and_isolates_a_failure(tmp_path):
    _project(tmp_path / "seq")
    one_by_one = _run(tmp_path / "seq", *PIPELINES)
    assert one_by_one.returncode == 0, one_by_one.stderr[-3000:]
    # with history, side by side hands out the longest pipeline first (by its last trained run)
    from modelmill.cli.run import _longest_first
    from modelmill.config.settings import Settings
    from modelmill.config.spec import load_spec
    from modelmill.registry.tracking import Tracker

    history = Settings(home=tmp_path / "seq" / "home", pipelines_dir=tmp_path / "seq" / "pipelines")
    specs = [load_spec(n, history) for n in PIPELINES]
    seconds = {n: Tracker(history).last_seconds(spec) for n, spec in zip(PIPELINES, specs, strict=True)}
    assert all(s is not None and 0 < s < 900 for s in seconds.values()), seconds
    assert _longest_first(list(PIPELINES), specs, history) == sorted(PIPELINES, key=lambda n: -seconds[n])

    _project(tmp_path / "par", rejected=True)
    side_by_side = _run(tmp_path / "par", "--all", "--workers", "2")
    out = side_by_side.stdout + side_by_side.stderr
    assert side_by_side.returncode == 3, out[-3000:]  # cells_strict's data is rejected; the others train
    assert "side by side on a local dask cluster of 2 workers" in out
    assert "[credit_risk]" in out and "[breast_cytology]" in out  # each worker's progress lines, labelled
    table = {
        ln.split()[0]: ln.split()[1]
        for ln in side_by_side.stdout.splitlines()
        if ln.split() and ln.split()[0] in (*PIPELINES, "cells_strict")
    }
    assert table == {"credit_risk": "trained", "breast_cytology": "trained", "cells_strict": "rejected"}, (
        side_by_side.stdout
    )

    seq, par = _champions(tmp_path / "seq"), _champions(tmp_path / "par")
    for name in PIPELINES:
        assert par[name][:2] == seq[name][:2], (name, par[name], seq[name])  # same candidate, same test figure
    assert par["credit_risk"][2] != par["breast_cytology"][2]  # a flow run each


def test_an_existing_dask_cluster_runs_the_pipelines_with_the_submitters_configuration(tmp_path):
    from distributed import LocalCluster

    _project(tmp_path)
    # Workers started elsewhere, with none of modelmill's settings: they get the project folder,
    # mirror and tracking store from the submitting command.
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        local_directory=str(tmp_path / "dask"),
    ) as cluster:
        done = _run(tmp_path, "breast_cytology", "--dask-address", cluster.scheduler_address)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"side by side on {cluster.scheduler_address}" in done.stderr
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    run = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("modelmill/breast_cytology").experiment_id]
    )[0]
    assert run.info.status == "FINISHED" and run.data.tags["modelmill.decision"] == "promoted"


def test_unknown_runner_or_zero_workers_are_one_line_errors(tmp_path):
    _project(tmp_path)
    done = _run(tmp_path, "breast_cytology", "--workers", "0")
    assert done.returncode == 2 and "--workers 0: give at least 1" in done.stderr


PROBE = """
import json, os
from modelmill.cli.common import prepare_environment
from modelmill.config.settings import get_settings
prepare_environment(get_settings())
from prefect import flow, task
from modelmill_flows.parallel import task_runner

@task
def probe(i):
    import time
    time.sleep(1)  # both workers take one
    return {"pid": os.getpid(), **{k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "OMP_NUM_THREADS", "PREFECT_API_URL", "MODELMILL_SHARED_CORES")}}

@flow
def probes():
    return [f.result() for f in [probe.submit(i) for i in range(4)]]

runner = task_runner(2, scratch=get_settings().home_dir / "workers")
print(json.dumps({"pid": os.getpid(), "api": os.environ.get("PREFECT_API_URL"), "probes": probes.with_options(task_runner=runner)()}))
"""


def test_local_workers_keep_glibc_malloc_defaults_and_share_the_runs_temporary_prefect_api(tmp_path):
    """Dask's nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536 (every allocation over
    128 KiB an mmap: a torch pipeline ran 2x slower in a worker) and, with no PREFECT_API_URL, each
    worker started a temporary Prefect API of its own on the run's database. The workers share
    the machine's cores through one folder of busy marks."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING", "PREFECT_HOME", "MALLOC_"))
    }
    env.update(MODELMILL_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["api"] and seen["api"].startswith("http://127.0.0.1:")  # the run's own temporary API
    workers = {p["pid"] for p in seen["probes"]}
    assert len(workers) == 2 and seen["pid"] not in workers
    for p in seen["probes"]:
        assert p["MALLOC_TRIM_THRESHOLD_"] is None and p["MALLOC_ARENA_MAX"] == "1" and p["OMP_NUM_THREADS"] == "1"
        assert p["PREFECT_API_URL"] == seen["api"]  # recorded through the run's server, not one of their own
        assert p["MODELMILL_SHARED_CORES"] == str(
            tmp_path / "home" / "workers" / "busy"
        )  # idle cores go to the last pipelines
