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
    return _project(tmp_path, monkeypatch, frame, "progression", 40, "diabetes.csv", "next_patients.csv")


def _project(tmp_path, monkeypatch, frame, target: str, n_later: int, name: str, later_name: str):
    """A project whose data folder holds ``frame`` but ``n_later`` rows, which come later as a
    batch without ``target``; returns (its root, those rows)."""
    data = tmp_path / "pipelines" / "data"
    data.mkdir(parents=True)
    later = frame.sample(n_later, random_state=3)
    frame.drop(index=later.index).to_csv(data / name, index=False)
    later.drop(columns=[target]).to_csv(data / later_name, index=False)
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
    selection = pd.read_csv(client.download_artifacts(version.run_id, "tables/model_selection.csv", str(tmp_path)))
    # the CV error as an RMSE reads (scikit-learn's scorer negates it), lowest first
    assert (selection["metric"] == "rmse").all() and (selection["score"] > 0).all()
    assert selection["score"].is_monotonic_increasing and selection["selected_on"][0] == "5-fold cross-validation"
    arts = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert {"plots/predicted_vs_actual.png", "plots/residuals.png", "plots/shap_summary.png"} <= arts
    assert client.get_run(version.run_id).data.params["explain.shap_output"] == "value"  # in the target's units
    card = client.get_model_version("modelmill-progression", version.version).description
    assert "interval_coverage" in card

    out_path = tmp_path / "scores.parquet"
    code, out, err = run_cli(
        capsys, "score", "progression", "--input", "pipelines/data/next_patients.csv", "--output", str(out_path),
        "--reasons", "2",
    )  # fmt: skip
    assert code == 0 and "scored 40 of 40 rows" in out, out + err
    scores = pd.read_parquet(out_path)
    assert (scores["lower"] < scores["prediction"]).all() and (scores["prediction"] < scores["upper"]).all()
    # why each prediction is high: the columns that pushed it up most, in the target's units
    assert scores["reason_1"].notna().all() and (scores["reason_1_shap"] >= scores["reason_2_shap"].fillna(0)).all()
    assert set(scores["reason_1"]) <= set(spec["features"]["numeric"]) | set(spec["features"].get("categorical", []))
    truth = later.set_index("patient_id")["progression"].reindex(scores["patient_id"]).to_numpy()
    # 40 patients the model never saw: most of them inside their interval
    assert np.mean((truth >= scores["lower"]) & (truth <= scores["upper"])) >= 0.75

    # the registered model, as `mlflow models serve` loads it, answers the same with its interval
    champion = mlflow.pyfunc.load_model("models:/modelmill-progression@champion")
    served = champion.predict(pd.read_csv(root / "pipelines" / "data" / "next_patients.csv").astype(object))
    np.testing.assert_allclose(served["prediction"], scores["prediction"], atol=1e-5)
    np.testing.assert_allclose(served["upper"] - served["lower"], scores["upper"] - scores["lower"], atol=1e-5)

    # a year later the progression is known: the champion's realized RMSE on these patients
    live = _outcomes_after_scoring(capsys, root, "progression", later[["patient_id", "progression"]], "rmse")
    expected = float(np.sqrt(np.mean((truth - scores["prediction"].to_numpy()) ** 2)))
    assert live["joined"] == 40 and abs(live["value"] - expected) < 1e-3 and live["low"] < expected < live["high"]
    history = client.get_metric_history(version.run_id, "live/interval_coverage")
    assert len(history) == 1 and history[0].value >= 0.75


@pytest.fixture
def wine_project(tmp_path, monkeypatch, prefect_api):
    """The real wine study (178 wines from three cultivars, Forina et al.; scikit-learn's copy):
    thirteen chemical measurements; twenty wines arrive later, unlabelled."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame.insert(0, "wine_id", [f"W{i:03d}" for i in range(len(frame))])
    return _project(tmp_path, monkeypatch, frame, "cultivar", 20, "wines.csv", "next_wines.csv")


def test_a_three_class_target_goes_from_init_to_scores_with_every_class(wine_project, capsys, tmp_path):
    import mlflow

    root, later = wine_project
    code, out, err = run_cli(capsys, "init", "cultivar", "--from", "pipelines/data/wines.csv", "--target", "cultivar")
    assert code == 0 and "cultivar has 3 classes" in out, out + err
    spec = yaml.safe_load((root / "pipelines" / "cultivar.yaml").read_text())
    assert spec["problem"] == "tabular_multiclass" and spec["metric"]["name"] == "macro_f1"
    code, out, err = run_cli(capsys, "check", "cultivar")
    assert code == 0 and "the gate passes" in out, out + err
    code, out, err = run_cli(capsys, "run", "cultivar")
    assert code == 0 and "champion" in out, out + err

    client = mlflow_client(Settings())
    version = client.get_model_version_by_alias("modelmill-cultivar", "champion")
    m = client.get_run(version.run_id).data.metrics
    assert m["test/macro_f1"] > 0.9 > m["test/baseline_macro_f1"]  # the cultivars are told apart; the prior cannot
    assert {"test/recall.barolo", "test/recall.grignolino", "test/recall.barbera", "test/log_loss"} <= set(m)
    arts = {a.path for a in client.list_artifacts(version.run_id, "plots")} | {
        a.path for a in client.list_artifacts(version.run_id, "tables")
    }
    assert {"plots/confusion_matrix.png", "tables/per_class_f1.csv"} <= arts

    out_path = tmp_path / "scores.parquet"
    code, out, err = run_cli(
        capsys, "score", "cultivar", "--input", "pipelines/data/next_wines.csv", "--output", str(out_path)
    )
    assert code == 0, out + err
    scores = pd.read_parquet(out_path)
    rejected = out_path.with_name("scores.rejected.parquet")
    set_aside = pd.read_parquet(rejected) if rejected.exists() else scores.iloc[:0]
    assert len(scores) + len(set_aside) == 20 and len(scores) >= 17  # a wine outside the suite's ranges is set aside
    classes = ["probability_barbera", "probability_barolo", "probability_grignolino"]
    np.testing.assert_allclose(scores[classes].sum(axis=1), 1, atol=1e-5)
    truth = later.set_index("wine_id")["cultivar"].reindex(scores["wine_id"]).to_numpy()
    assert (scores["prediction"].to_numpy() == truth).mean() >= 0.85  # wines it never saw

    champion = mlflow.pyfunc.load_model("models:/modelmill-cultivar@champion")
    served = champion.predict(scores[later.columns.drop("cultivar")].astype(object))
    assert list(served["prediction"]) == list(scores["prediction"])
    np.testing.assert_allclose(served[classes].to_numpy(), scores[classes].to_numpy(), atol=1e-5)

    live = _outcomes_after_scoring(capsys, root, "cultivar", later[["wine_id", "cultivar"]], "macro_f1")
    assert live["joined"] == len(scores) and live["low"] <= live["value"] <= live["high"]


def _outcomes_after_scoring(capsys, root, name: str, truth: pd.DataFrame, metric: str) -> dict[str, float]:
    """Send ``truth`` (id and target) as outcomes; the version's realized ``metric`` with its interval."""
    import re

    sent = root / "pipelines" / "data" / f"{name}-outcomes.csv"
    truth.to_csv(sent, index=False)
    code, out, err = run_cli(capsys, "outcomes", name, "--input", str(sent))
    assert code == 0, out + err
    value, low, high = re.search(rf"{metric} ([\d.]+) \(95 % interval ([\d.]+)-([\d.]+)\)", out).groups()
    return {
        "joined": int(out.split(" of ")[0].rsplit(" ", 1)[1]),
        "value": float(value),
        "low": float(low),
        "high": float(high),
    }


def test_a_class_weighted_multiclass_candidate_is_calibrated_and_says_so():
    """Without servers: weights move a model's probabilities off the class shares, so the chosen
    weighted candidate is calibrated on held-out training rows, and its test probabilities then
    keep to the class shares (no warning that they are scores)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_wine

    from modelmill.config.spec import PipelineSpec
    from modelmill.learn.kinds.multiclass import TabularMulticlass

    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    features = [c for c in frame.columns if c != "cultivar"]
    spec = PipelineSpec(
        name="cultivar", domain="food", description="Cultivar from chemistry.", source={"path": "wines.csv"},
        target="cultivar", features={"numeric": features}, suite="cultivar.json", problem="tabular_multiclass",
        split={"method": "stratified", "test_size": 0.3, "seed": 1, "folds": 3},
        baseline={"name": "prior", "estimator": "dummy_prior"},
        candidates=[{"name": "weighted", "estimator": "logistic_regression", "params": {"class_weight": {0: 1, 1: 1, 2: 4}}}],
        metric={"name": "macro_f1", "direction": "maximize"}, schedule={"cron": "0 6 * * 1"},
    )  # fmt: skip
    kind = TabularMulticlass()
    kind.check_spec(spec)
    data = kind.prepare(spec, frame)
    assert data.labels == ("barbera", "barolo", "grignolino")
    trained = kind.train(spec, data)
    assert isinstance(trained.model, CalibratedClassifierCV) and trained.params["calibration"] == "sigmoid"
    m = kind.metrics(spec, trained.model, data)
    assert m["macro_f1"] > 0.9 and m["max_share_gap"] <= 0.1 and kind.warnings(spec, m) == []
    assert kind.warnings(spec, {**m, "max_share_gap": 0.25})[0].startswith("the probabilities are scores")
