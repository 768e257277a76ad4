"""The champion served the way MLflow users serve models (``mlflow models serve``): raw rows in,
per row the data's label, every class's probability and the decision threshold out, and a row
that breaks one of the gate's row rules refused with the rule's name, exactly as ``modelmill
score`` refuses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import free_port, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _batch(data: pd.DataFrame) -> pd.DataFrame:
    """Twelve real rows as a lab would send them, four of them broken."""
    batch = data.drop(columns=["diagnosis"]).sample(12, random_state=4).reset_index(drop=True).astype(object)
    batch.loc[1, "mean_radius"] = -4.0  # outside the suite's range
    batch.loc[4, "worst_area"] = "lots"  # not a number
    batch.loc[6, "mean_radius"] = None  # the suite's not-null rule
    batch.loc[9, "mean_radius"] = 250.0  # above it
    return batch


@pytest.mark.server
def test_mlflow_models_serve_answers_with_labels_and_refuses_what_the_gate_refuses(example_project, capsys, tmp_path):
    root, spec, data = example_project
    # the spec names the positive class ("malignant" in the data) "cancer": every answer says so
    write_example_spec(root, spec, data, options={**spec.get("options", {}), "positive_label_name": "cancer"})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    batch = _batch(data)
    src = root / "pipelines" / "data" / "batch.csv"
    batch.to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / "s.parquet"))
    assert code == 0, out + err
    scored = pd.read_parquet(tmp_path / "s.parquet")
    refused = pd.read_parquet(tmp_path / "s.rejected.parquet")
    assert set(scored["prediction"]) == {"benign", "cancer"}
    from modelmill.data import scored_rows

    kept = scored_rows.read_batches(Settings(), "my_cells")  # kept as the data writes it, for the outcomes
    assert list(kept["prediction"]) == list(scored["prediction"].replace({"cancer": "malignant"}))

    with served("modelmill-my_cells", tmp_path) as post:

        def ask(frame: pd.DataFrame) -> pd.DataFrame:
            status, answer = post({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
            assert status == 200, answer
            return pd.DataFrame(answer["predictions"])

        answer = ask(batch)
        rejected = answer["rejected_because"].notna()
        assert int(rejected.sum()) == len(refused) == 4
        # the same rows refused for the same rules as `modelmill score` refused them
        assert sorted(answer.loc[rejected, "rejected_because"]) == sorted(refused["rejected_because"])
        assert answer.loc[rejected, "prediction"].isna().all()
        ok = answer[~rejected].reset_index(drop=True)
        assert list(ok["prediction"]) == list(scored["prediction"])  # the spec's names, not 0/1
        np.testing.assert_allclose(ok["probability_cancer"], scored["probability"], atol=1e-6)
        np.testing.assert_allclose(ok["probability_benign"] + ok["probability_cancer"], 1, atol=1e-9)
        assert ok["threshold"].nunique() == 1 and 0 < ok["threshold"].iloc[0] < 1  # the tuned decision threshold

        # a row without a column the model needs: named, not a stack trace
        partial = ask(batch.drop(columns=["worst_area"]).head(2))
        assert list(partial["rejected_because"]) == ["column worst_area is missing"] * 2


@contextmanager
def served(model: str, tmp_path: Path):
    """``mlflow models serve`` of the model's champion on a loopback port, as a user runs it (the
    venv's ``bin`` on PATH); yields ``post(payload) -> (HTTP status, answer)``."""
    settings = Settings()
    port = free_port()
    venv_bin = Path(sys.executable).parent  # as with the environment activated: MLflow runs `uvicorn` from PATH
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
    }
    log = tmp_path / f"serve-{model}.log"
    with open(log, "wb") as out_file:
        server = subprocess.Popen(
            [str(venv_bin / "mlflow"), "models", "serve", "-m", f"models:/{model}@champion", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port)],
            env=env, stdout=out_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                assert server.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(1)

        def post(payload: dict) -> tuple[int, dict]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        yield post
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


@pytest.mark.server
def test_text_and_image_champions_answer_over_rest_with_their_labels(tmp_path, monkeypatch, capsys, prefect_api):
    """A text champion (review sentences) and an image champion (BreastMNIST scans), each served
    by ``mlflow models serve``: raw sentences / pixel rows in, the labels' names and every class's
    probability out, as the registered model answers in-process; a sentence the suite refuses
    (empty) and a missing column are named, an image of the wrong size is refused with its size."""
    import mlflow

    from conftest import mlflow_client, modelmill_env, require_mirror, write_spec

    mirror = require_mirror()
    (tmp_path / "t").mkdir()
    (tmp_path / "i").mkdir()
    text = write_spec(
        tmp_path / "t",
        "review_sentiment",
        candidates=[{"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [10.0]}}],
    )
    image = write_spec(
        tmp_path / "i",
        "breast_ultrasound",
        candidates=[{"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [0.01]}}],
    )
    modelmill_env(monkeypatch, tmp_path / "home", mirror)
    for spec in (text, image):
        code, out, err = run_cli(capsys, "run", str(spec))
        assert code == 0, out + err
    mlflow_client(Settings())

    sentences = pd.DataFrame(
        {"sentence": ["The food was wonderful and the staff were kind.", "Worst service ever, never again.", ""]}
    )
    with served("modelmill-review_sentiment", tmp_path) as post:
        status, answer = post({"dataframe_split": json.loads(sentences.to_json(orient="split", index=False))})
        assert status == 200, answer
        rows = pd.DataFrame(answer["predictions"])
        assert list(rows["prediction"][:2]) == [1, 0]  # the data's labels
        assert rows["rejected_because"][:2].isna().all() and "sentence" in rows["rejected_because"][2]
        local = mlflow.pyfunc.load_model("models:/modelmill-review_sentiment@champion").predict(sentences[:2])
        np.testing.assert_allclose(rows["probability_1"][:2], local["probability_1"], atol=1e-6)
        status, answer = post({"dataframe_split": {"columns": ["text"], "data": [["a sentence in the wrong column"]]}})
        assert status == 400 and "sentence" in answer["message"], answer  # the one column it reads, named

    with np.load(mirror / "breastmnist" / "breastmnist.npz") as z:
        scans, truth = z["test_images"][:8].reshape(8, -1).astype(np.float32), z["test_labels"][:8, 0]
    with served("modelmill-breast_ultrasound", tmp_path) as post:
        status, answer = post({"inputs": scans.tolist()})  # grey levels, as the scans are
        assert status == 200, answer
        rows = pd.DataFrame(answer["predictions"])
        assert set(rows["prediction"]) <= {"malignant", "benign"}  # the spec's names for 0 and 1
        np.testing.assert_allclose(rows["probability_malignant"] + rows["probability_benign"], 1, atol=1e-9)
        local = mlflow.pyfunc.load_model("models:/modelmill-breast_ultrasound@champion").predict(scans)
        assert list(rows["prediction"]) == list(local["prediction"]) and len(truth) == 8
        status, answer = post({"inputs": scans[:2, :100].tolist()})
        assert status != 200 and "28 x 28" in json.dumps(answer), answer
