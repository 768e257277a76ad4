"""Closing the loop: outcomes that arrive after scoring are joined once to the rows the champion
scored, and the champion's realized figures (with bootstrap intervals) reach MLflow as a ``live``
series beside its test figures; a batch that does clearly worse raises ``live_drop``."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from conftest import mlflow_client, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _cells_with_ids(data: pd.DataFrame) -> pd.DataFrame:
    """The real Wisconsin rows, each with the sample id a lab would send (its row number)."""
    return data.assign(sample_id=[f"S{i:04d}" for i in range(len(data))])


def _score(capsys, root, name: str, rows: pd.DataFrame, tmp_path) -> str:
    src = root / "pipelines" / "data" / f"{name}.csv"
    rows.drop(columns=["diagnosis"]).to_csv(src, index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / f"{name}.parquet")
    )
    assert code == 0 and f"scored {len(rows)} of {len(rows)} rows" in out, out + err
    return out


def test_outcomes_are_joined_once_and_a_shifted_world_raises_live_drop(
    example_project, alert_receivers, capsys, tmp_path, monkeypatch
):
    root, spec, data = example_project
    web, _, posts, _, _ = alert_receivers
    cells = _cells_with_ids(data)
    # trained on 400 rows; the other 169 arrive later as two scoring batches the model never saw
    held = cells.sample(frac=1, random_state=11)
    train, first, second = held.iloc[:400], held.iloc[400:485], held.iloc[485:]
    suite = root / "expectations" / "my_cells.json"
    suite.write_text(suite.read_text().replace('"diagnosis"', '"diagnosis", "sample_id"', 1))
    write_example_spec(
        root,
        spec,
        train,
        roles={"id": "sample_id"},
        monitoring={"live_drop": 0.05},
        notify={"urls": [f"{web}/hook"], "events": ["live_drop"]},
    )
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    monday_out = _score(capsys, root, "monday", first, tmp_path)
    _score(capsys, root, "tuesday", second, tmp_path)
    # before any outcome: the champion is calibrated, so each batch's AUC is estimated (CBPE)
    assert "roc_auc expected on this batch once its outcomes arrive (CBPE)" in monday_out, monday_out

    # Monday's truth, as a team would send it: every row, two of them twice, three ids never
    # scored, and one of Tuesday's rows whose outcome is not known yet (blank)
    truth = first[["sample_id", "diagnosis"]]
    pending = second[["sample_id"]].head(1).assign(diagnosis="")
    strangers = pd.DataFrame({"sample_id": ["X0001", "X0002", "X0003"], "diagnosis": "benign"})
    sent = pd.concat([truth, truth.head(2), strangers, pending])
    f1 = root / "pipelines" / "data" / "outcomes-1.csv"
    sent.to_csv(f1, index=False)
    code, out, err = run_cli(capsys, "outcomes", "my_cells", "--input", str(f1))
    assert code == 0, out + err
    assert f"85 of {len(sent)} outcomes joined to scored rows" in out
    assert "2 sent before (counted once)" in out and "3 name rows no kept batch scored" in out
    assert "1 have no value, or one that is not a label of the model" in out
    unknown = pd.read_parquet(out.split("unknown keys: ")[1].split()[0])
    assert sorted(unknown["row_key"]) == ["X0001", "X0002", "X0003"]
    assert not posts  # Monday's rows are like the training data: no alert
    realized, low, high = map(
        float, re.search(r"roc_auc ([\d.]+) .* estimated when scored [\d.]+ \(([\d.]+)-([\d.]+)\)", out).groups()
    )
    assert low <= realized <= high  # the estimate made when Monday was scored held its realized AUC

    # Tuesday: the world moved (most labels the other way round), and five of Monday's
    # outcomes are sent again, one of them changed
    flipped = second[["sample_id", "diagnosis"]].copy()
    rng = np.random.default_rng(5)
    turn = rng.random(len(flipped)) < 0.7
    flipped.loc[turn, "diagnosis"] = flipped.loc[turn, "diagnosis"].map({"malignant": "benign", "benign": "malignant"})
    again = truth.head(5).copy()
    again.iloc[0, 1] = {"malignant": "benign", "benign": "malignant"}[again.iloc[0, 1]]
    f2 = root / "pipelines" / "data" / "outcomes-2.csv"
    pd.concat([flipped, again]).to_csv(f2, index=False)
    code, out, err = run_cli(capsys, "outcomes", "my_cells", "--input", str(f2))
    assert code == 0, out + err
    assert f"84 of {len(flipped) + 5} outcomes joined" in out and "5 sent before (counted once)" in out
    assert "1 of those sent before changed value; the value first received is kept" in out
    assert "live_drop: v1, batch" in out
    (alert,) = posts
    assert alert[1]["title"].endswith("live drop") and "over monitoring.live_drop 0.05" in alert[1]["message"]

    # the same outcomes again, now from the lab's database (the spec's outcomes query): nothing
    # new is joined, nothing is measured twice
    import sqlite3

    with sqlite3.connect(tmp_path / "lab.db") as conn:
        pd.read_csv(f2).to_sql("outcomes", conn, index=False)
    monkeypatch.setenv("LAB_DB", f"sqlite:///{tmp_path / 'lab.db'}")
    write_example_spec(
        root,
        spec,
        roles={"id": "sample_id"},
        monitoring={"live_drop": 0.05},
        notify={"urls": [f"{web}/hook"], "events": ["live_drop"]},
        outcomes={"sql": {"url_env": "LAB_DB", "query": "SELECT sample_id, diagnosis FROM outcomes"}},
    )
    code, out, err = run_cli(capsys, "outcomes", "my_cells")
    assert code == 0 and f"0 of {len(flipped) + 5} outcomes joined" in out and "live_drop" not in out, out + err
    assert f"{len(flipped) + 5} sent before (counted once)" in out
    assert len(posts) == 1

    # MLflow: the version's run holds the live series beside its test figures
    settings = Settings()
    client = mlflow_client(settings)
    version = client.get_model_version_by_alias("modelmill-my_cells", "champion")
    run = client.get_run(version.run_id)
    test_auc = run.data.metrics["_primary/roc_auc"]
    history = client.get_metric_history(version.run_id, "live/roc_auc")
    assert len(history) == 2  # one point per batch, logged when its outcomes arrived
    assert len(client.get_metric_history(version.run_id, "estimated/roc_auc")) == 2  # one per batch, when scored
    monday, tuesday = sorted(history, key=lambda m: m.timestamp)
    lows = {m.timestamp: m.value for m in client.get_metric_history(version.run_id, "live/roc_auc_low")}
    highs = {m.timestamp: m.value for m in client.get_metric_history(version.run_id, "live/roc_auc_high")}
    assert lows[monday.timestamp] <= monday.value <= highs[monday.timestamp]
    assert highs[monday.timestamp] >= test_auc - 0.05  # Monday is like the test split
    assert highs[tuesday.timestamp] < test_auc - 0.05 and tuesday.value < 0.5  # Tuesday is not
    local = client.download_artifacts(version.run_id, "live/batches.csv", str(tmp_path))
    batches = pd.read_csv(local)
    assert list(batches["rows"]) == [85, 84]

    # the ledger: each scored row once, with what was predicted and what happened
    from modelmill.pipeline.outcomes import read_ledger

    ledger = read_ledger(settings, "my_cells")
    assert len(ledger) == 169 and ledger["row_key"].is_unique
    joined = ledger.set_index("row_key")
    expected = pd.concat([truth, flipped]).set_index("sample_id")["diagnosis"]
    assert (joined["outcome"] == expected.reindex(joined.index)).all()  # Monday's changed resend was not taken
    scores = pd.read_parquet(tmp_path / "tuesday.parquet").set_index("sample_id")
    tuesday_rows = joined[joined["batch"] == joined["batch"].max()]
    assert (tuesday_rows["prediction"] == scores["prediction"].reindex(tuesday_rows.index)).all()
    (outcome_runs) = client.search_runs(
        [client.get_experiment_by_name("modelmill/my_cells/scoring").experiment_id],
        "tags.`modelmill.outcomes` != ''",
    )
    assert sorted(r.data.metrics["outcomes/joined"] for r in outcome_runs) == [0, 84, 85]
    (from_sql,) = [r for r in outcome_runs if r.data.metrics["outcomes/joined"] == 0]
    assert from_sql.data.params["input"].startswith(f"sqlite:///{tmp_path / 'lab.db'}#query-")

    # status shows the champion's live figure and its age; history shows it beside the test figure
    import json

    code, out, err = run_cli(capsys, "status", "--json")
    (row,) = [r for r in json.loads(out) if r["pipeline"] == "my_cells"]
    assert row["live"] == tuesday.value and 0 <= row["live_age_days"] < 0.1, out + err
    code, out, err = run_cli(capsys, "history", "my_cells", "--out", str(tmp_path / "history.png"))
    head = out.splitlines()[0].split()
    assert code == 0 and "live" in head and "estimated" in head and f"{tuesday.value:.4f}" in out, out + err


@pytest.mark.server
def test_a_live_drop_under_serve_runs_the_pipeline_again_with_its_cause_on_the_card(tmp_path, example_project):
    """``monitoring.retrain_on: [live_drop]``: the outcomes that show the drop make ``modelmill
    serve`` run the pipeline again as a triggered flow; the run and its model card say why."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import mlflow

    from conftest import command_env, free_port

    root, spec, data = example_project
    cells = _cells_with_ids(data).sample(frac=1, random_state=11)
    train, batch = cells.iloc[:400], cells.iloc[400:]
    suite = root / "expectations" / "my_cells.json"
    suite.write_text(suite.read_text().replace('"diagnosis"', '"diagnosis", "sample_id"', 1))
    write_example_spec(
        root,
        spec | {"schedule": {"cron": "0 6 * * 1", "active": False}},  # only the retrain runs it here
        train,
        roles={"id": "sample_id"},
        monitoring={"live_drop": 0.05, "retrain_on": ["live_drop"]},
    )
    modelmill = str(Path(sys.executable).with_name("modelmill"))
    home, pport, mport = root / "home", free_port(), free_port()
    env = command_env(PREFECT_HOME=str(tmp_path / "prefect-client"))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [modelmill, "serve", "--prefect-port", str(pport), "--mlflow-port", str(mport)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        deadline = time.time() + 300
        while "Serving;" not in log.read_text():
            assert serve.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        creds = dict(
            ln.split("=", 1) for ln in (home / "credentials.env").read_text().splitlines() if "=" in ln and ln[0] != "#"
        )
        client_env = env | {
            "PREFECT_API_URL": f"http://127.0.0.1:{pport}/api",
            "PREFECT_API_AUTH_STRING": creds["PREFECT_SERVER_API_AUTH_STRING"],
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mport}",
            "MLFLOW_TRACKING_USERNAME": creds["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_TRACKING_PASSWORD": creds["MLFLOW_TRACKING_PASSWORD"],
        }

        def mm(*argv: str) -> str:
            done = subprocess.run([modelmill, *argv], env=client_env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-3000:]
            return done.stdout + done.stderr

        mm("trigger", "my_cells", "--timeout", "500")
        src = root / "pipelines" / "data" / "batch.csv"
        batch.drop(columns=["diagnosis"]).to_csv(src, index=False)
        mm("score", "my_cells", "--input", str(src), "--output", str(tmp_path / "batch.parquet"))
        # the world moved: most outcomes go the other way, and they join the training data
        flipped = batch.assign(diagnosis=batch["diagnosis"].map({"malignant": "benign", "benign": "malignant"}))
        pd.concat([train, flipped]).to_csv(root / "pipelines" / "data" / "cells.csv", index=False)
        sent = root / "pipelines" / "data" / "outcomes.csv"
        flipped[["sample_id", "diagnosis"]].to_csv(sent, index=False)
        out = mm("outcomes", "my_cells", "--input", str(sent))
        assert "live_drop: v1, batch" in out and "retrain after live_drop (monitoring.retrain_on)" in out, out

        mlflow.set_tracking_uri(client_env["MLFLOW_TRACKING_URI"])
        os.environ.update({k: client_env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")})
        try:
            uri = client_env["MLFLOW_TRACKING_URI"]  # its registry too: not one an earlier test left set
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            experiment = client.get_experiment_by_name("modelmill/my_cells")
            deadline = time.time() + 600
            while True:
                runs = client.search_runs(
                    [experiment.experiment_id],
                    "tags.`modelmill.trigger` = 'live_drop' and attributes.status = 'FINISHED'",
                )
                if runs:
                    break
                assert time.time() < deadline and serve.poll() is None, log.read_text()[-3000:]
                time.sleep(2)
            (run,) = runs
            assert run.data.tags.get("modelmill.status") != "skipped", run.data.tags  # the new rows were learnt from
            reason = run.data.tags["modelmill.trigger_reason"]
            assert reason.startswith("v1, batch ") and "over monitoring.live_drop 0.05" in reason
            (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
            assert version.version == "2"
            assert f"**Trained because.** `monitoring.retrain_on: live_drop`: {reason}" in version.description
        finally:
            mlflow.set_tracking_uri(None)
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(k, None)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(240)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            raise


def test_the_join_counts_every_outcome_it_does_not_take():
    """Without servers: each way an outcome is not joined is counted, and nothing else is lost."""
    from types import SimpleNamespace

    from modelmill.pipeline.outcomes import join

    labels = '["benign", "malignant"]'
    scored = pd.DataFrame(
        {
            "row_key": ["a", "b", "c", "a"],
            "batch": ["1", "1", "1", "2"],
            "scored_at": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-01", "2026-02-01"], utc=True),
            "prediction": ["benign", "malignant", "benign", "malignant"],
            "labels": labels,
        }
    )
    binary = SimpleNamespace(problem="tabular_classification")
    keys = pd.Series(["a", "b", "b", "c", "c", "x", "a"], dtype="string")
    truth = pd.Series(["malignant", "benign", "benign", "benign", "malignant", "benign", None], dtype="string")
    new, unknown, counts = join(binary, keys, truth, scored, None)
    # "a" joins its latest scoring (batch 2); "b" twice with one value: once; "c" with two: neither
    assert sorted(zip(new["row_key"], new["batch"], strict=True)) == [("a", "2"), ("b", "1")]
    assert counts == {"unlabelled": 1, "conflicting": 2, "resent": 1, "changed": 0, "unknown": 1}
    assert list(unknown["row_key"]) == ["x"]

    # against the ledger: a re-sent outcome is counted, a changed one too, the first kept
    again, _, counts = join(
        binary, pd.Series(["a", "b"], dtype="string"), pd.Series(["benign", "benign"], dtype="string"), scored, new
    )
    assert again.empty and counts["resent"] == 2 and counts["changed"] == 1

    # only unknown rows, and a label the model does not know
    none, unknown, counts = join(
        binary, pd.Series(["y", "c"], dtype="string"), pd.Series(["benign", "maybe"], dtype="string"), scored, None
    )
    assert none.empty and counts["unknown"] == 1 and counts["unlabelled"] == 1

    # a batch scored under the spec's names for the labels takes an outcome by either
    named = scored.assign(label_names='["benign", "cancer"]')
    new, _, counts = join(
        binary, pd.Series(["a", "b"], dtype="string"), pd.Series(["cancer", "benign"], dtype="string"), named, None
    )
    assert list(new["outcome"]) == ["malignant", "benign"] and counts["unlabelled"] == 0

    # a regression's outcome is any number
    amounts = scored.assign(labels="", prediction=[1.0, 2.0, 3.0, 4.0])
    regression = SimpleNamespace(problem="tabular_regression")
    new, _, counts = join(
        regression, pd.Series(["a", "b"], dtype="string"), pd.Series(["12.5", "n/a"], dtype="string"), amounts, None
    )
    assert list(new["row_key"]) == ["a"] and counts["unlabelled"] == 1


def test_a_drifting_batch_asks_the_served_deployment_for_one_retrain(example_project, capsys, tmp_path):
    """``monitoring.retrain_on: [drift]``: a scoring batch whose PSI is over ``psi_alert`` creates
    one flow run of the pipeline's deployment through the Prefect API, with the event and its
    cause; a second drifting batch while that run waits creates no other. The ``outcomes:``
    section's schedule is a deployment of its own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from modelmill.config.spec import load_spec
    from modelmill_flows.deployments import build_deployments

    root, spec, data = example_project
    write_example_spec(
        root,
        spec,
        data,
        monitoring={"psi_alert": 0.5, "retrain_on": ["drift"]},
        outcomes={"input": "data/outcomes.csv", "schedule": {"cron": "0 8 * * *"}},
    )
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    joins, pipeline = build_deployments([load_spec("my_cells", Settings())])
    assert joins.name == "my_cells-outcomes" and joins.entrypoint == "modelmill_flows.scoring.outcomes_flow"
    assert [s.schedule.cron for s in joins.schedules] == ["0 8 * * *"] and joins.parameters == {"pipeline": "my_cells"}
    deployment_id = pipeline.apply()  # registered, not served: its runs wait in the API
    try:
        drifted = data.drop(columns=["diagnosis"]).head(120)
        drifted = drifted.assign(mean_radius=drifted["mean_radius"] * 1.8, worst_area=drifted["worst_area"] * 1.8)
        src = root / "pipelines" / "data" / "drifted.csv"
        drifted.to_csv(src, index=False)
        for attempt in range(2):
            code, out, err = run_cli(
                capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / f"s{attempt}.parquet")
            )
            assert code == 0, out + err
        assert "a run is already on its way" in err, err
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["my_cells"]))
            )
            (run,) = runs
            assert run.parameters["trigger"] == "drift" and run.state.is_scheduled()
            assert (
                "largest PSI" in run.parameters["reason"]
                and "over monitoring.psi_alert 0.5" in run.parameters["reason"]
            )
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)  # the session's API: no later test finds it


def test_an_interaction_joins_the_latest_batch_that_recommended_to_the_user_before_it():
    """Without servers: a dated interaction counts for the batch that came before it, never a
    later one; one before any batch is unknown; the same (user, item) again is counted once."""
    from modelmill.pipeline.outcomes import _join_interactions

    at = pd.to_datetime(["2026-03-01", "2026-03-01", "2026-04-01"], utc=True)
    scored = pd.DataFrame(
        {"row_key": ["u1", "u1", "u1"], "rank": [1, 2, 1], "item": ["A", "B", "C"], "batch": ["march", "march", "april"],
         "scored_at": at, "model_version": ["1", "1", "2"], "model_run": ["r1", "r1", "r2"]}
    )  # fmt: skip
    incoming = pd.DataFrame(
        {"row_key": ["u1", "u1", "u1", "u1", "u2"], "outcome": ["A", "C", "C", "B", "A"],
         "occurred_at": pd.to_datetime(["2026-02-20", "2026-03-15", "2026-03-15", "2026-04-02", "2026-04-02"], utc=True)}
    )  # fmt: skip
    new, unknown, counts = _join_interactions(incoming, 3, scored, None)
    assert sorted(zip(new["outcome"], new["batch"], strict=True)) == [("B", "april"), ("C", "march")]
    assert sorted(unknown["outcome"]) == ["A", "A"]  # before any batch, and a user never recommended to
    assert counts == {"unlabelled": 3, "conflicting": 0, "changed": 0, "resent": 1, "unknown": 2}
    again, _, counts = _join_interactions(incoming.tail(2), 0, scored, new)
    assert again.empty and counts["resent"] == 1 and counts["unknown"] == 1
