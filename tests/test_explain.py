"""Models that explain themselves: permutation importance and SHAP values per source column, reason
codes per scored row, per-slice metrics whose gap can block promotion, a model card per version,
and `modelmill reproduce` rebuilding a version exactly. On real data: Wisconsin (bundled with
scikit-learn) for the pure core, German Credit from the mirror end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, mlflow_client, modelmill_env, require_mirror, run_cli
from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.learn import explain
from modelmill.learn.kinds import get_kind


# -- the pure core on a small real frame --------------------------------------------------------
@pytest.fixture(scope="module")
def cells() -> pd.DataFrame:
    """Wisconsin cells: ten measurements, a categorical band of one of them, and ``leak``: the
    label plus noise, which any model should lean on first."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:, :10].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["size_band"] = pd.cut(frame["mean_area"], [0, 500, 900, 10_000], labels=["small", "medium", "large"]).astype(
        str
    )
    malignant = (data.frame["target"] == 0).astype(float)
    frame["leak"] = malignant + np.random.default_rng(0).normal(0, 0.35, len(frame))
    frame["diagnosis"] = np.where(malignant == 1, "malignant", "benign")
    return frame


def _spec(estimator: str, params: dict | None = None) -> PipelineSpec:
    numeric = [
        "mean_radius",
        "mean_texture",
        "mean_perimeter",
        "mean_smoothness",
        "mean_compactness",
        "mean_concavity",
        "leak",
    ]
    return PipelineSpec(
        name="cells", domain="healthcare", description="cells", source={"path": "cells.csv"}, target="diagnosis", positive_label="malignant",
        features={"numeric": numeric, "categorical": ["size_band"]}, suite="x.json", problem="tabular_classification",
        baseline={"name": "prior", "estimator": "dummy_prior"}, candidates=[{"name": estimator, "estimator": estimator, "params": params or {}}],
        metric={"name": "roc_auc"}, schedule={"cron": "0 3 * * 1"}, options={"threshold": "fixed"}, split={"seed": 7},
    )  # fmt: skip


@pytest.mark.parametrize(("estimator", "params", "method"), [
    ("logistic_regression", {"C": 1.0}, "linear"),
    ("hist_gradient_boosting", {"max_iter": 60}, "tree"),
    ("logit_forest_vote", {"n_estimators": 60}, "vote of linear + tree"),
    ("random_forest", {"n_estimators": 60}, "tree"),
])  # fmt: skip
def test_a_column_that_is_the_target_plus_noise_ranks_first(cells, estimator, params, method):
    kind = get_kind("tabular_classification")
    spec = _spec(estimator, params)
    data = kind.prepare(spec, cells)
    trained = kind.train(spec, data)
    X, y = data.test
    table = explain.permutation_table(trained.model, X, y, "roc_auc", rows=1000, repeats=3, seed=1)
    assert table["feature"].iloc[0] == "leak" and set(table["feature"]) == set(
        X.columns
    )  # source columns, not one-hot ones
    assert table["importance_mean"].iloc[0] > 3 * max(table["importance_mean"].iloc[1], 1e-3)

    background = data.train[0].iloc[explain.sample_rows(len(data.train[0]), 40, 2)]
    sv = explain.shap_values(trained.model, X.iloc[:60], background, seed=3)
    assert sv.method == method and list(sv.values.columns) == list(X.columns)
    assert sv.mean_abs()["feature"].iloc[0] == "leak"
    # SHAP values add up to the model's own output for each row (the explained score)
    p = explain.fitted_core(trained.model).predict_proba(X.iloc[:60])[:, 1]
    output = p if sv.output == "probability" else np.log(p / (1 - p))
    np.testing.assert_allclose(sv.values.sum(axis=1).to_numpy() + sv.base, output, atol=1e-6)
    # a row's first reason is its largest positive value, with the row's own value
    reasons = explain.reason_codes(sv, 2)
    r = int(np.argmax(sv.values["leak"].to_numpy()))
    assert reasons.loc[r, "reason_1"] == "leak" and float(reasons.loc[r, "reason_1_value"]) == pytest.approx(
        X.iloc[r]["leak"]
    )


def test_the_permutation_explainer_serves_any_model_on_its_source_columns(cells):
    """A model without the tabular featurizer (here a text pipeline's shape: any estimator over
    raw columns) is explained over the source columns themselves, additive in probability."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = cells[["leak", "mean_radius", "size_band"]]
    y = (cells["diagnosis"] == "malignant").astype(int)
    model = make_pipeline(
        make_column_transformer((StandardScaler(), ["leak", "mean_radius"]), (OneHotEncoder(), ["size_band"])),
        LogisticRegression(),
    ).fit(X, y)
    sv = explain.shap_values(model, X.iloc[:30], X.iloc[100:140], seed=0)
    assert sv.method == "permutation" and sv.output == "probability" and sv.mean_abs()["feature"].iloc[0] == "leak"
    np.testing.assert_allclose(
        sv.values.sum(axis=1).to_numpy() + sv.base, model.predict_proba(X.iloc[:30])[:, 1], atol=1e-6
    )


def test_slice_labels_and_gaps():
    ages = pd.Series([19, 25, 34.9, 35, 50, 70, None])
    assert list(explain.slice_labels(ages, [25, 35, 50])) == [
        "<25",
        "25-35",
        "25-35",
        "35-50",
        ">=50",
        ">=50",
        "(missing)",
    ]
    table = pd.DataFrame(
        {
            "column": ["age"] * 3 + ["sex"] * 2,
            "slice": ["a", "b", "c", "f", "m"],
            "rows": [50, 40, 5, 60, 70],
            "roc_auc": [0.8, 0.7, 0.1, 0.75, np.nan],
        }
    )
    gaps = explain.slice_gaps(table, "roc_auc", {"age": 30, "sex": 30})
    assert gaps["age"] == pytest.approx(0.1)  # the 5-row slice is reported, not judged
    assert np.isnan(gaps["sex"])  # one judged slice: no gap


# -- end to end on German Credit ----------------------------------------------------------------
def _credit_spec(folder, **changes) -> None:
    spec = yaml.safe_load((REPO / "pipelines" / "credit_risk.yaml").read_text())
    spec["candidates"] = [
        {
            "name": "hist_gradient_boosting",
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 80, "early_stopping": False},
            "grid": {"max_depth": [2, 3]},
        }
    ]
    spec |= changes
    (folder / "pipelines").mkdir(parents=True, exist_ok=True)
    (folder / "pipelines" / "credit_risk.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture
def credit_project(tmp_path, monkeypatch, prefect_api):
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror(), tmp_path / "pipelines")
    monkeypatch.setenv("MODELMILL_EXPECTATIONS_DIR", str(REPO / "expectations"))
    return tmp_path


def _grouped_tree_shap(model, X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """SHAP values of the champion's gradient boosting computed here, independently: shap's
    TreeExplainer on the encoded columns, summed by the source column each name starts with."""
    import shap

    core = model.named_steps["model"].estimator_  # raw_rows -> tuned threshold -> featurizer + model
    features, hgb = core.named_steps["features"], core.named_steps["model"]
    names = [n.split("__", 1)[1] for n in features.get_feature_names_out()]
    source = [max((c for c in columns if n == c or n.startswith(c + "_")), key=len) for n in names]
    values = shap.TreeExplainer(hgb).shap_values(features.transform(X))
    return pd.DataFrame(values, columns=source).T.groupby(level=0).sum().T[columns]


def test_a_credit_run_explains_itself_scores_with_reasons_and_is_reproduced(credit_project, capsys, tmp_path):
    import mlflow

    _credit_spec(credit_project)
    code, out, err = run_cli(capsys, "run", "credit_risk")
    assert code == 0, out + err
    settings = Settings()
    client = mlflow_client(settings)
    mv = client.get_model_version("modelmill-credit_risk", "1")
    run = client.get_run(mv.run_id)
    listed = {a.path for folder in ("tables", "plots", "card") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"tables/permutation_importance.csv", "tables/shap_values.csv", "tables/shap_importance.csv", "tables/slices.csv",
            "plots/permutation_importance.png", "plots/shap_summary.png", "card/model_card.md", "card/model_card.html"} <= listed  # fmt: skip
    m, p = run.data.metrics, run.data.params
    assert (
        m["time/explain_seconds"] > 0
        and m["time/train_seconds"] > 0
        and m["time/explain_to_train"] == pytest.approx(m["time/explain_seconds"] / m["time/train_seconds"])
    )
    assert (
        p["explain.shap_method"] == "tree" and p["explain.shap_output"] == "log-odds" and p["explain.shap_rows"] == "50"
    )

    importance = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="tables/permutation_importance.csv", dst_path=str(tmp_path)
        )
    )
    spec_columns = [
        *yaml.safe_load((credit_project / "pipelines" / "credit_risk.yaml").read_text())["features"]["numeric"],
        *yaml.safe_load((credit_project / "pipelines" / "credit_risk.yaml").read_text())["features"]["categorical"],
    ]
    assert (
        sorted(importance["feature"]) == sorted(spec_columns) and importance["feature"].iloc[0] == "checking_status"
    )  # German Credit's strongest column

    slices = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="tables/slices.csv", dst_path=str(tmp_path)
        )
    )
    assert set(slices.loc[slices["column"] == "age", "slice"]) == {"<25", "25-35", "35-50", ">=50"}
    assert set(slices.loc[slices["column"] == "personal_status_sex", "slice"]) <= {"A91", "A92", "A93", "A94", "A95"}
    assert slices.groupby("column")["rows"].sum().eq(300).all()  # every test row in one slice of each column
    judged = slices[(slices["column"] == "age") & (slices["rows"] >= 30)]["roc_auc"]
    assert m["slices/age.gap"] == pytest.approx(judged.max() - judged.min())

    # the card says what it claims, and is the version's description in the registry
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/card/model_card.md")
    assert text == mv.description
    for claim in ("# credit_risk v1: model card", "CC BY 4.0", run.data.tags["modelmill.data_digest"], "1000 rows", "45 checks, 0 failed",
                  "`hist_gradient_boosting`", f"`max_depth={p['model.max_depth']}`", f"**{m['test/roc_auc']:.4f}**", "| age | <25 |",
                  "checking_status", "## Known limits", "modelmill score credit_risk", "models:/modelmill-credit_risk/1", "cost-matrix policies"):  # fmt: skip
        assert claim in text, claim

    # reason codes: each row's top 3 columns by SHAP value, as shap itself gives them
    snapshot = pd.read_parquet(run.data.tags["modelmill.snapshot"])
    batch = snapshot.drop(columns=["class"]).sample(12, random_state=5).reset_index(drop=True)
    src, dst = tmp_path / "batch.csv", tmp_path / "scores.parquet"
    batch.to_csv(src, index=False)
    code, out, err = run_cli(
        capsys, "score", "credit_risk", "--input", str(src), "--output", str(dst), "--reasons", "3"
    )
    assert code == 0, out + err
    scored = pd.read_parquet(dst)
    model = mlflow.sklearn.load_model("models:/modelmill-credit_risk/1")
    X = get_kind("tabular_classification").model_input(
        PipelineSpec(**yaml.safe_load((credit_project / "pipelines" / "credit_risk.yaml").read_text())), batch
    )
    expected = _grouped_tree_shap(model, X, spec_columns)
    for i in range(len(batch)):
        row = expected.iloc[i]
        top = row[row > 0].sort_values(ascending=False).head(3)
        assert [scored.loc[i, f"reason_{k + 1}"] for k in range(len(top))] == list(top.index)
        np.testing.assert_allclose(
            [scored.loc[i, f"reason_{k + 1}_shap"] for k in range(len(top))], top.to_numpy(), atol=1e-5
        )
        assert scored.loc[i, "reason_1_value"] == str(X.iloc[i][top.index[0]])

    code, out, err = run_cli(
        capsys, "score", "credit_risk", "--input", str(src), "--output", str(dst), "--reasons", "99"
    )
    assert code != 0 and "1 to 50 reasons" in err

    # reproduce: the version rebuilt from its recorded snapshot, spec and suite in a scratch store
    code, out, err = run_cli(capsys, "reproduce", "credit_risk", "1")
    assert code == 0, out + err
    assert (
        "credit_risk v1" in out
        and ": identical" in out
        and "selection: recorded hist_gradient_boosting, rebuilt hist_gradient_boosting (same)" in out
    )
    assert "input differs" not in out and "<- differs" not in out
    assert (
        len(client.search_runs([client.get_experiment_by_name("modelmill/credit_risk").experiment_id])) == 1
    )  # the rebuild ran elsewhere
    snapshot = Path(run.data.tags["modelmill.snapshot"])
    snapshot.unlink()
    code, out, err = run_cli(capsys, "reproduce", "credit_risk", "1")
    assert code == 1 and "not rebuilt" in out and f"input differs: the snapshot is missing: {snapshot}" in out
    code, out, err = run_cli(capsys, "reproduce", "credit_risk", "7")
    assert code != 0 and "has no version 7" in err


def test_a_slice_gap_over_the_limit_blocks_promotion(credit_project, capsys):
    _credit_spec(credit_project, promotion={"margin": 0.005, "max_slice_gap": 0.01})
    code, out, err = run_cli(capsys, "run", "credit_risk")
    assert code == 0, out + err
    client = mlflow_client(Settings())
    run = client.search_runs([client.get_experiment_by_name("modelmill/credit_risk").experiment_id])[0]
    reason = run.data.tags["modelmill.decision_reason"]
    assert (
        reason.startswith("no champion yet, but its test roc_auc differs by")
        and "between slices of age, over promotion.max_slice_gap 0.01" in reason
    )
    assert run.data.tags["modelmill.decision"] == "challenger" and run.data.metrics["promotion/promoted"] == 0.0
    assert str(client.get_model_version_by_alias("modelmill-credit_risk", "challenger").version) == "1"
    assert {k: str(v) for k, v in client.get_registered_model("modelmill-credit_risk").aliases.items()} == {
        "challenger": "1"
    }  # no champion


def test_blank_cells_with_missing_indicators_keep_the_exact_linear_explainer(cells):
    """Numeric and categorical cells left blank, imputed with indicator columns, and a calibrated
    logistic regression: every encoded column is traced to its source column (the indicators
    included), so the explanation stays shap's exact LinearExplainer, additive in log-odds before
    calibration, rather than the permutation explainer over the source columns."""
    frame = cells.copy()
    blank = np.random.default_rng(4).random(len(frame)) < 0.1
    frame.loc[blank, "mean_texture"] = np.nan
    frame.loc[np.roll(blank, 7), "size_band"] = None
    kind = get_kind("tabular_classification")
    shipped = _spec("logistic_regression", {"C": 1.0}).model_dump(exclude_unset=True)
    spec = PipelineSpec.model_validate(
        shipped
        | {
            "impute": {"numeric": "median", "categorical": "missing", "indicator": True},
            "options": {"threshold": "fixed", "calibration": "sigmoid"},
        }
    )
    data = kind.prepare(spec, frame)
    trained = kind.train(spec, data)
    core = explain.fitted_core(trained.model)
    features = core.named_steps["features"]
    X = data.test[0].iloc[:80]
    width = features.transform(X.iloc[:1]).shape[1]
    groups = explain.source_groups(features, [str(c) for c in X.columns], width)
    assert groups is not None and groups.count("mean_texture") == 2  # the value and its indicator
    background = data.train[0].iloc[explain.sample_rows(len(data.train[0]), 40, 2)]
    sv = explain.shap_values(trained.model, X, background, seed=3)
    assert sv.method == "linear" and sv.output == "log-odds"
    p = core.predict_proba(X)[:, 1]
    np.testing.assert_allclose(sv.values.sum(axis=1).to_numpy() + sv.base, np.log(p / (1 - p)), atol=1e-6)
