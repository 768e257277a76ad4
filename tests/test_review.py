"""What a reviewer sees: MLflow runs that read at a glance, the chosen hyperparameters as params,
GX Data Docs on the run, every stage's log lines on the Prefect flow run, a summary table with
each pipeline's own figures, and errors that say what to do."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, artifacts, last_run, mlflow_client, modelmill_env, require_mirror, run_cli
from modelmill.ops.report import summary_table
from modelmill.registry.runview import PRIMARY, SHARED_VIEW_TAG_PREFIX, VIEW_KEY, headline_text

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def cytology_run(store):
    """One breast_cytology run through the CLI (as a user runs it), shared by the module."""
    with pytest.MonkeyPatch.context() as mp:
        modelmill_env(mp, store.home, require_mirror())
        from modelmill.cli import main

        code = main(["run", "breast_cytology"])
        assert code == 0
    return last_run(store, "breast_cytology")


def test_the_runs_table_shows_metric_baseline_lift_decision_and_digest(env, cytology_run):
    run = cytology_run
    m, tags = run.data.metrics, run.data.tags
    value, baseline, lift = m[f"{PRIMARY}/roc_auc"], m[f"{PRIMARY}/baseline_roc_auc"], m[f"{PRIMARY}/lift"]
    assert (
        value == m["test/roc_auc"]
        and baseline == m["test/baseline_roc_auc"]
        and lift == pytest.approx(value - baseline)
    )
    # The run name (a column the table always shows) carries the figures and the decision...
    name = run.info.run_name
    assert name.startswith(f"v{tags['modelmill.model_version']} champion · ") and f"roc_auc {value:.4f}" in name
    assert f"baseline {baseline:.4f}" in name and f"{lift:+.4f}" in name
    # ... and the Dataset column (also shown by default) names the snapshot by our data digest.
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.digest == tags["modelmill.data_digest"][:12]
    # The experiment's shared view: every column it selects has a value on the run.
    exp = mlflow_client(env).get_experiment(run.info.experiment_id)
    view = json.loads(exp.tags[SHARED_VIEW_TAG_PREFIX + VIEW_KEY])
    assert view["orderByKey"] == "attributes.start_time" and view["orderByAsc"] is False
    columns = [re.fullmatch(r"(\w+)\.`(.+)`", c).groups() for c in view["selectedColumns"]]
    shown = {"metrics": m, "tags": tags, "params": run.data.params}
    for kind, key in columns:
        if kind != "attributes":
            assert key in shown[kind], f"the view shows {kind} {key}, which the run does not have"
    assert {"modelmill.decision", "modelmill.data_digest"} <= {k for kind, k in columns if kind == "tags"}
    assert {f"{PRIMARY}/roc_auc", f"{PRIMARY}/baseline_roc_auc", f"{PRIMARY}/lift"} <= {
        k for kind, k in columns if kind == "metrics"
    }


def test_metric_keys_group_in_the_chart_view_and_the_primary_ones_sort_first(cytology_run):
    keys = sorted(cytology_run.data.metrics)
    assert all("/" in k for k in keys), [k for k in keys if "/" not in k]
    assert keys[0].startswith(f"{PRIMARY}/") and {k.split("/")[0] for k in keys} >= {
        PRIMARY,
        "test",
        "validation",
        "promotion",
    }
    assert not [k for k in keys if k.startswith(("drift.", "test."))], "old dotted keys would share one chart section"


def test_the_description_states_the_decision_in_one_sentence(cytology_run):
    note = cytology_run.data.tags["mlflow.note.content"]
    assert "\n" not in note and note.endswith(".") and note.count(". ") == 0
    assert "breast_cytology v" in note and ("became the champion" in note or "is the challenger" in note)


def test_the_chosen_hyperparameters_are_params(cytology_run, env):
    params = cytology_run.data.params
    client = mlflow_client(env)
    path = client.download_artifacts(cytology_run.info.run_id, "tables/model_selection.csv")
    best = pd.read_csv(path).iloc[0]
    assert params["model.candidate"] == best["candidate"]
    chosen = ast.literal_eval(best["params"])  # the grid point as the selection table wrote it
    assert best["metric"] == "roc_auc" and best["selected_on"] == "5-fold cross-validation"
    for k, v in chosen.items():
        assert params[f"model.{k}"] == str(v), k


def test_gx_data_docs_are_the_validation_artifact(cytology_run, env):
    run = cytology_run
    folder = artifacts(env, run, "validation")
    assert {"validation/report.html", "validation/report.json", "validation/data_docs"} <= folder
    docs = artifacts(env, run, "validation/data_docs")
    assert "validation/data_docs/index.html" in docs
    client = mlflow_client(env)
    local = client.download_artifacts(run.info.run_id, "validation/data_docs")
    pages = [p for p in Path(local).rglob("*.html") if "validations" in p.parts]
    assert len(pages) == 1, "one GX validation result page per run"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", pages[0].read_text()))
    evaluated = int(run.data.metrics["validation/evaluated"])
    assert "Expectation Suite: breast_cytology" in text and "Status: Succeeded" in text
    assert f"Evaluated Expectations {evaluated} Successful Expectations {evaluated}" in text


def test_the_summary_shows_each_pipelines_own_figures():
    forecast = {"pipeline": "price_forecast", "status": "trained", "metric": "rmse", "direction": "minimize", "value": 0.015612,
                "baseline": 0.015634, "lift": 2.2e-5, "version": "3", "promoted": False,
                "headline": {"skill": 0.00138, "dm_pvalue": 0.4141}}  # fmt: skip
    sentiment = {"pipeline": "review_sentiment", "status": "trained", "metric": "roc_auc", "direction": "maximize", "value": 0.934,
                 "baseline": 0.5, "lift": 0.434, "version": "1", "promoted": True, "headline": {"accuracy": 0.857}}  # fmt: skip
    failed = {
        "pipeline": "credit_risk",
        "status": "rejected",
        "metric": "roc_auc",
        "error": "credit_risk: data rejected by suite credit_risk: 1 of 45 expectations failed",
    }
    table = summary_table([forecast, sentiment, failed])
    rows = {ln.split()[0]: ln for ln in table.splitlines()[2:]}
    assert "0.0000" not in rows["price_forecast"], "an error metric's tiny absolute lift reads as zero"
    assert (
        "-0.14%" in rows["price_forecast"]
        and "skill 0.00138" in rows["price_forecast"]
        and "dm_pvalue 0.4141" in rows["price_forecast"]
    )
    assert "accuracy 0.8570" in rows["review_sentiment"] and "+0.4340" in rows["review_sentiment"]
    assert rows["credit_risk"].endswith("1 of 45 expectations failed")
    assert headline_text("rmse", "minimize", 0.5, 0.0) == "rmse 0.5000 (baseline 0.0000, n/a)"


def test_mlflow_registry_prints_go_through_the_log_with_timestamps(env, capsys):
    code, out, err = run_cli(capsys, "run", "breast_cytology", "--force")
    assert code == 0, err
    registry = [ln for ln in (out + err).splitlines() if "registered model" in ln or "Created version" in ln]
    assert registry, "the registry events are still reported"
    assert all(re.match(r"\d\d:\d\d:\d\d  ", ln) for ln in registry), registry


def test_a_typo_in_a_pipeline_name_suggests_the_closest(env, capsys):
    code, out, err = run_cli(capsys, "run", "credit_risc")
    assert code == 1
    assert "did you mean credit_risk?" in err and len(err.strip().splitlines()) == 1


def test_a_missing_mirror_folder_fails_before_anything_starts(tmp_path, monkeypatch, capsys):
    modelmill_env(monkeypatch, tmp_path / "home", tmp_path / "no-such-mirror")
    code, out, err = run_cli(capsys, "run", "credit_risk")
    assert code == 1
    assert f"MODELMILL_DATA_MIRROR={tmp_path / 'no-such-mirror'}: the folder does not exist" in err
    assert not (tmp_path / "home" / "mlflow.db").exists(), "no flow or MLflow run was started"
    code, _, err = run_cli(capsys, "datasets", "pull", "german-credit")
    assert code == 1 and "the folder does not exist" in err


def test_stage_log_lines_reach_the_prefect_flow_run(tmp_path, prefect_api):
    """A flow run started outside the CLI (a worker's or `serve`'s subprocess does the same) has
    every stage's lines in its Prefect logs, not only "Finished in state Completed()"."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_LOGGING_EXTRA", "MLFLOW_TRACKING"))}
    env.update(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        MODELMILL_HOME=str(tmp_path / "home"),
        MODELMILL_DATA_MIRROR=str(require_mirror()),
        MODELMILL_PIPELINES_DIR=str(REPO / "pipelines"),
    )
    script = (
        "import mlflow; from modelmill_flows.pipeline import pipeline_flow; run_id = pipeline_flow('breast_cytology')['run_id']; "
        "print(mlflow.MlflowClient().get_run(run_id).data.tags['modelmill.prefect_flow_run_id'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    flow_run_id = done.stdout.split()[-1]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    messages = [lg.message for lg in logs]
    for fragment in ("MLflow run", "snapshot", "validation passed", "trained", "test roc_auc", "is the new champion"):
        assert any(fragment in msg for msg in messages), f"no {fragment!r} line in the flow run's logs: {messages}"


def test_modelmill_ui_serves_the_store_and_sigterm_stops_its_server(env, cytology_run, tmp_path):
    """``modelmill ui`` as a user starts it: the MLflow UI answers with the pipeline's experiment,
    and a SIGTERM to the command stops the server it started (the port is free again)."""
    import signal
    import socket
    import time
    import urllib.request

    from conftest import free_port

    port = free_port()
    environ = {**os.environ, "MODELMILL_HOME": str(env.home), "MODELMILL_DATA_MIRROR": str(require_mirror())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelmill.cli", "ui", "--port", str(port)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and answer is None:
            try:
                url = f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=modelmill/breast_cytology"
                with urllib.request.urlopen(url, timeout=5) as r:
                    answer = json.load(r)
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(1)
        assert answer is not None, "the MLflow UI never answered"
        assert answer["experiment"]["experiment_id"] == cytology_run.info.experiment_id
        # a second `ui` on the same port fails in one line, and leaves the first one serving
        again = subprocess.run(
            [sys.executable, "-m", "modelmill.cli", "ui", "--port", str(port)],
            env=environ,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 1 and f"port {port} is in use" in again.stderr
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and all it started: nothing outlives the test
            out = proc.communicate()[0]
            pytest.fail(f"`modelmill ui` did not end within 60 s of SIGTERM: {out[-2000:]}")
    assert f"MLflow UI for sqlite:///{env.home}" in out and "breast_cytology" in out
    assert f"{base}/#/experiments/{cytology_run.info.experiment_id}" in out
    deadline = time.monotonic() + 30
    while True:  # nothing listens on the port once the command has ended
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        assert time.monotonic() < deadline, "the MLflow server outlived `modelmill ui`"
        time.sleep(0.5)


def test_data_docs_read_offline_from_local_copies_of_their_assets(cytology_run, env):
    """Every page of a run's Data Docs loads its styles and scripts from the folder beside it,
    nothing from another host; the two files the pages pin by Subresource Integrity hash are
    the bytes that hash names."""
    import base64
    import hashlib

    local = Path(mlflow_client(env).download_artifacts(cytology_run.info.run_id, "validation/data_docs"))
    pages = list(local.rglob("*.html"))
    assert len(pages) == 3  # the index, the suite and this validation
    for page in pages:
        text = page.read_text()
        assert not re.findall(r'(?:src|href)="https?://[^"]+\.(?:js|css|png)[^"]*"|url\(.https?://', text), page
        loaded = re.findall(r'<(?:script[^>]*src|link[^>]*href)="([^"]+)"', text)
        assert any(u.endswith("vendor/bootstrap.min.css") for u in loaded), page
        for url in (u for u in loaded if "/vendor/" in u or u.startswith("vendor/")):
            assert (page.parent / url).is_file(), f"{page.name} loads {url}, which is not beside it"
        for url, pinned in re.findall(r'src="([^"]+)" integrity="sha384-([^"]+)"', text):
            digest = base64.b64encode(hashlib.sha384((page.parent / url).read_bytes()).digest()).decode()
            assert digest == pinned, url
