"""Tabular regression on real data: a continuous target goes init -> check -> run -> score with no
edits; the champion beats its mean baseline; each prediction's interval covers about as often as
it says, measured on the test split; the registered model answers with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import mlflow_client, modelmill_env, run_cli
from modelmill.config.settings import Settings


@pytest.fixture
def diabetes_project(tmp_path, monkeypatch, prefect_api):
    """The real diabetes study (442 patients, scikit-learn's copy of Efron et al. 2004): ten
    baseline measurements and the disease's progression a year later; 40 patients arrive later."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame.insert(0, "patient_id", [f"P{i:04d}" for i in range(len(frame))])
    data = tmp_path / "pipelines" / "data"
    data.mkdir(parents=True)
    later = frame.sample(40, random_state=3)
    frame.drop(index=later.index).to_csv(data / "diabetes.csv", index=False)
    later.drop(columns=["progression"]).to_csv(data / "next_patients.csv", index=False)
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    return tmp_path, later


def test_a_continuous_target_goes_from_init_to_scores_with_intervals(diabetes_project, capsys, tmp_path):
    import mlflow

    root, later = diabetes_project
    code, out, err = run_cli(
        capsys, "init", "progression", "--from", "pipelines/data/diabetes.csv", "--target", "progression"
    )
    assert code == 0, out + err
    assert "a regression, each prediction with a 90 % interval" in out
    spec = yaml.safe_load((root / "pipelines" / "progression.yaml").read_text())
    assert spec["problem"] == "tabular_regression" and spec["metric"] == {"name": "rmse", "direction": "minimize"}
    assert spec["roles"] == {"id": "patient_id"} and "positive_label" not in spec
    code, out, err = run_cli(capsys, "check", "progression")
    assert code == 0 and "the gate passes" in out, out + err

    code, out, err = run_cli(capsys, "run", "progression")
    assert code == 0 and "champion" in out, out + err
    settings = Settings()
    client = mlflow_client(settings)
    version = client.get_model_version_by_alias("modelmill-progression", "champion")
    m = client.get_run(version.run_id).data.metrics
    assert m["test/rmse"] < m["test/baseline_rmse"]  # better than predicting the mean
    assert m["test/r2"] > 0.3  # the published linear fits on these ten measurements explain about half
    assert abs(m["test/interval_coverage"] - 0.9) <= 0.08  # measured on 101 test patients, nominal 90 %
    assert m["test/interval_width"] > 0
    arts = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert {"plots/predicted_vs_actual.png", "plots/residuals.png"} <= arts
    card = client.get_model_version("modelmill-progression", version.version).description
    assert "interval_coverage" in card

    out_path = tmp_path / "scores.parquet"
    code, out, err = run_cli(
        capsys, "score", "progression", "--input", "pipelines/data/next_patients.csv", "--output", str(out_path)
    )
    assert code == 0 and "scored 40 of 40 rows" in out, out + err
    scores = pd.read_parquet(out_path)
    assert (scores["lower"] < scores["prediction"]).all() and (scores["prediction"] < scores["upper"]).all()
    truth = later.set_index("patient_id")["progression"].reindex(scores["patient_id"]).to_numpy()
    # 40 patients the model never saw: most of them inside their interval
    assert np.mean((truth >= scores["lower"]) & (truth <= scores["upper"])) >= 0.75

    # the registered model, as `mlflow models serve` loads it, answers the same with its interval
    champion = mlflow.pyfunc.load_model("models:/modelmill-progression@champion")
    served = champion.predict(pd.read_csv(root / "pipelines" / "data" / "next_patients.csv").astype(object))
    np.testing.assert_allclose(served["prediction"], scores["prediction"], atol=1e-5)
    np.testing.assert_allclose(served["upper"] - served["lower"], scores["upper"] - scores["lower"], atol=1e-5)
