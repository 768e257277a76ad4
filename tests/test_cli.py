"""CLI behaviour that needs no pipeline run: exit codes, usage errors, argument handling, and how
a command uses its temporary Prefect API (heartbeats, the wait for its start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, free_port, modelmill_env, require_mirror, run_cli
from modelmill.cli.common import exit_code
from modelmill.cli.service import _param
from modelmill.errors import ModelmillError


def test_exit_code_is_the_worst_outcome():
    assert exit_code([{"status": "trained"}, {"status": "trained"}]) == 0
    assert exit_code([{"status": "trained"}, {"status": "rejected"}]) == 3
    assert exit_code([{"status": "rejected"}, {"status": "failed"}, {"status": "trained"}]) == 1


def test_trigger_parameters_are_typed():
    assert _param("as_of=2012-06-29") == ("as_of", "2012-06-29")
    assert _param("promote=false") == ("promote", False)
    with pytest.raises(ModelmillError):
        _param("promote")


def test_run_needs_a_pipeline_and_names_unknown_ones(tmp_path, monkeypatch, capsys):
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    code, _, err = run_cli(capsys, "run")
    assert code == 2 and "--all" in err
    code, _, err = run_cli(capsys, "run", "credit_risk", "no_such_thing")
    assert code == 1 and "unknown pipeline 'no_such_thing'" in err and "credit_risk" in err
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing started


def test_backfill_refuses_an_undated_pipeline(tmp_path, monkeypatch, capsys):
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    code, _, err = run_cli(capsys, "backfill", "credit_risk", "--start", "2012-01-01", "--end", "2012-03-01")
    assert code == 1 and "no date column" in err


def test_flow_runs_recorded_by_a_temporary_api_send_no_heartbeats(prefect_api, monkeypatch):
    """Prefect beats every flow run's heart from a thread that each run waits up to a second to
    join at its end. Only a server that outlives the run can use the beats: on the API a command
    launched for itself (named by TEMPORARY_API), runs go without."""
    import time

    from prefect import flow
    from prefect.flow_engine import FlowRunEngine
    from prefect.settings import PREFECT_API_URL

    from modelmill.runtime.servers import TEMPORARY_API
    from modelmill_flows.pipeline import heartbeats_where_watched

    beats = []
    monkeypatch.setattr(FlowRunEngine, "_emit_flow_run_heartbeat", lambda self, *a: beats.append(self.flow_run.id))

    @flow
    def short():
        time.sleep(0.5)

    api = PREFECT_API_URL.value()
    monkeypatch.setenv("PREFECT_API_URL", api)
    monkeypatch.delenv(TEMPORARY_API, raising=False)
    with heartbeats_where_watched():  # a server of its own: watched
        short()
    assert len(beats) == 1
    monkeypatch.setenv(TEMPORARY_API, "http://127.0.0.1:1/api")  # another command's temporary API
    with heartbeats_where_watched():
        short()
    assert len(beats) == 2
    monkeypatch.setenv(TEMPORARY_API, api)
    with heartbeats_where_watched():
        short()
    assert len(beats) == 2


WARM_UP = """
import json, sys
from pathlib import Path
from types import SimpleNamespace
from modelmill.cli import common as cli
from modelmill.runtime.servers import LocalServer

specs = [SimpleNamespace(problem="tabular_classification"), SimpleNamespace(problem="text_classification")]
wanted = ["great_expectations", "modelmill.learn.kinds.tabular", "modelmill.learn.kinds.text"]
port = int(sys.argv[2])  # nothing listens: an API still starting
api = LocalServer("api", [sys.executable, "-c", "import time; time.sleep(60)"], {}, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api/health", Path(sys.argv[1]))
cli._temporary_api.append(api.launch())
api.ready = True  # up already: nothing to wait for, nothing imported ahead
cli.warm_up(specs)
up = [m for m in wanted if m in sys.modules]
api.ready = False
cli.warm_up(specs)
starting = [m for m in wanted if m in sys.modules]
api.stop()
print(json.dumps({"up": up, "starting": starting}))
"""


def test_the_wait_for_the_temporary_api_imports_what_the_stages_need(tmp_path):
    """While the temporary Prefect API starts (~8 s on a new project's database), the run imports
    GX and its pipelines' problem kinds (~2 s and ~1 s each) instead of waiting idle; with the API
    up it imports nothing ahead (a rerun that is skipped as unchanged needs neither)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", WARM_UP, str(tmp_path / "api.log"), str(free_port())],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "up": [],
        "starting": ["great_expectations", "modelmill.learn.kinds.tabular", "modelmill.learn.kinds.text"],
    }
