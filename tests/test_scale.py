"""The lean paths for large tables give the results of the plain ones: the vectorised categorical
encoder equals scikit-learn's one-hot encoder bit for bit, a snapshot's declared categorical
features load as pandas categoricals, ``categorical_encoding: native`` trains gradient boosting on
category codes (without scikit-learn encoding them a second time, to the same trees) and scores
categories it never saw, and the benchmark's generated project runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder

from conftest import REPO, last_run, mlflow_client, require_mirror, run_cli, write_spec
from modelmill.config.settings import Settings
from modelmill.config.spec import Candidate, load_spec
from modelmill.data.ingest import fetch_sources, read_source
from modelmill.learn.kinds import get_kind
from modelmill.learn.kinds.encoders import CategoryEncoder
from modelmill.learn.kinds.estimators import HistGradientBoosting


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    s = Settings(
        home=tmp_path_factory.mktemp("scale"), data_mirror=str(require_mirror()), pipelines_dir=REPO / "pipelines"
    )
    spec = load_spec("credit_risk", s)
    return spec, read_source(spec, fetch_sources(spec, s))


def test_the_category_encoder_equals_onehotencoder_bit_for_bit(credit):
    spec, df = credit
    X = df[spec.features.categorical].astype("str")
    train, test = X.iloc[:700].copy(), X.iloc[700:].copy()
    train.iloc[3, 1] = None  # a missing value is a category of its own, as in OneHotEncoder
    test.iloc[0, 0], test.iloc[1, 2] = "A19", None  # unseen and missing at transform: no error
    reference = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train)
    ours = CategoryEncoder().fit(train)
    for frame in (test, test.astype("category"), test.to_numpy(dtype=object)):
        assert np.array_equal(ours.transform(frame), reference.transform(test))
    assert list(ours.get_feature_names_out()) == list(reference.get_feature_names_out())
    codes = CategoryEncoder("ordinal").fit(train).transform(test)
    assert (
        codes.dtype == np.float32
        and codes.shape == (len(test), X.shape[1])
        and np.isnan(codes[0, 0])
        and codes[2, 0] == sorted(set(train.iloc[:, 0])).index(test.iloc[2, 0])
    )


def test_boosting_on_category_codes_fits_them_as_they_are_to_the_same_model(credit):
    from sklearn.ensemble import HistGradientBoostingClassifier

    spec, df = credit
    spec = spec.model_copy(update={"options": {**spec.options, "categorical_encoding": "native"}})
    kind, cats = get_kind(spec.problem), list(range(len(spec.features.categorical)))
    X, y = kind.model_input(spec, df), (df[spec.target].astype("str") == str(spec.positive_label)).to_numpy()
    later = X.iloc[700:].copy()
    first, third = spec.features.categorical[0], spec.features.categorical[2]
    later.loc[later.index[0], first], later.loc[later.index[1], third] = (
        "A19",
        None,
    )  # a category never seen, and a missing one
    featurizer = kind.featurizer(spec).fit(X.iloc[:700])
    codes, scored = featurizer.transform(X.iloc[:700]), featurizer.transform(later)
    params = {"categorical_features": cats, "max_iter": 30, "random_state": 0}
    ours, stock = (
        HistGradientBoosting(**params).fit(codes, y[:700]),
        HistGradientBoostingClassifier(**params).fit(codes, y[:700]),
    )
    assert ours._preprocessor is None and stock._preprocessor is not None  # scikit-learn's own encoder skipped
    assert np.array_equal(ours.predict_proba(scored), stock.predict_proba(scored))
    gap = codes.copy()
    gap[gap[:, 0] == 1, 0] = 0  # category 1 of the first column never occurs: not what the encoder gives
    for odd, features in ((gap, cats), (codes, cats[1:]), (np.c_[codes[:, -1:], codes], [c + 1 for c in cats])):
        params |= {"categorical_features": features}
        model = HistGradientBoosting(**params).fit(odd, y[:700])
        assert model._preprocessor is not None  # anything else goes through scikit-learn's encoder, as before
        assert np.array_equal(
            model.predict_proba(odd), HistGradientBoostingClassifier(**params).fit(odd, y[:700]).predict_proba(odd)
        )
    # the rows are not copied through an encoder: fitting allocates well under the rows' size (scikit-learn's: 2.5x)
    import tracemalloc

    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.integers(0, 10, (200_000, 13)).astype(float), rng.normal(size=(200_000, 7))])
    tracemalloc.start()
    try:
        HistGradientBoosting(categorical_features=list(range(13)), max_iter=3, early_stopping=False).fit(
            rows, rng.random(200_000) < 0.3
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < rows.nbytes


def test_a_prior_baseline_is_fitted_without_featurizing_the_rows(credit):
    from sklearn.pipeline import Pipeline

    spec, df = credit
    spec = spec.model_copy(
        update={"candidates": spec.candidates[:1], "options": {**spec.options, "threshold": "fixed"}}
    )
    kind = get_kind(spec.problem)
    data = kind.prepare(spec, df)
    X, y, _ = data.train
    baseline = kind.train(spec, data).baseline
    assert list(baseline.named_steps) == ["model"]  # the prior reads the labels only
    featurized = Pipeline([("features", kind.featurizer(spec)), ("model", kind.build(spec.baseline, spec))]).fit(X, y)
    assert kind.metrics(spec, baseline, data) == kind.metrics(spec, featurized, data)
    spec = spec.model_copy(update={"baseline": Candidate(name="logit", estimator="logistic_regression")})
    assert list(kind.train(spec, data).baseline.named_steps) == [
        "features",
        "model",
    ]  # a real model still gets its features


def test_declared_categorical_features_load_as_categories(env, capsys):
    code, _, err = run_cli(capsys, "run", "credit_risk")
    assert code == 0, err
    from modelmill.data.ingest import Snapshot

    path = last_run(env, "credit_risk").data.tags["modelmill.snapshot"]
    snap = Snapshot("german-credit", Path(path), "", 0, [])
    spec = load_spec("credit_risk", env)
    frame = snap.load(categorical=[*spec.features.categorical, "age"])  # a numeric column stays numeric
    assert all(isinstance(frame[c].dtype, pd.CategoricalDtype) for c in spec.features.categorical)
    assert frame["age"].dtype == "int64"
    snap.release()
    assert snap.load()["purpose"].dtype == "str"
    # min/max statistics for numbers only: text statistics cost 40% of the Parquet write at 1M rows
    import pyarrow.parquet as pq

    group = pq.ParquetFile(path).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(group.num_columns)}
    assert stats["age"] and stats["credit_amount"] and not stats["purpose"] and not stats["checking_status"]


def test_native_categorical_encoding_trains_on_codes_and_scores_unseen_categories(env, capsys, tmp_path):
    hgb = [{"name": "hist_gradient_boosting", "estimator": "hist_gradient_boosting", "params": {"max_iter": 50}}]
    options = {**load_spec("credit_risk", env).options, "categorical_encoding": "native"}
    spec_path = write_spec(tmp_path, "credit_risk", candidates=hgb, options=options)
    code, _, err = run_cli(capsys, "run", str(spec_path))
    assert code == 0, err
    run = last_run(env, "credit_risk")
    assert run.data.params["model.candidate"] == "hist_gradient_boosting" and run.data.metrics["test/roc_auc"] > 0.7
    import mlflow

    version = mlflow_client(env).get_model_version("modelmill-credit_risk", run.data.tags["modelmill.model_version"])
    model = mlflow.sklearn.load_model(version.source)
    trained = model.named_steps["model"]  # after the raw_rows step every registered row model starts with
    booster = (
        trained.estimator_.named_steps["model"] if hasattr(trained, "estimator_") else trained.named_steps["model"]
    )
    assert int(booster.is_categorical_.sum()) == len(load_spec("credit_risk", env).features.categorical)
    spec = load_spec(str(spec_path), env)
    rows = pd.DataFrame([{c: "A11" for c in spec.features.categorical} | {c: 30 for c in spec.features.numeric}])
    rows["purpose"] = "A499"  # a purpose code never seen in training: scored as if it were missing
    missing = rows.assign(purpose=None)
    unseen, blank = (model.predict_proba(r[spec.features.columns()])[0, 1] for r in (rows, missing))
    assert unseen == pytest.approx(blank)


def test_the_benchmarks_generated_project_runs(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    from large_credit import write_project

    from conftest import modelmill_env

    modelmill_env(monkeypatch, tmp_path / "home", require_mirror(), tmp_path / "pipelines")
    write_project(tmp_path, 20_000)
    from modelmill.data.ingest import Snapshot
    from modelmill.learn.kinds.tabular import TabularClassification

    events: list[str] = []

    def spy(original, name):
        def recorded(*a, **k):
            events.append(name)
            return original(*a, **k)

        return recorded

    for cls, name in ((Snapshot, "release"), (TabularClassification, "prepare")):
        monkeypatch.setattr(cls, name, spy(getattr(cls, name), name))
    code, out, err = run_cli(capsys, "run", "big_credit")
    assert code == 0, err
    run = last_run(Settings(home=tmp_path / "home"), "big_credit")
    assert run.data.params["data.rows"] == "20000" and run.data.metrics["test/roc_auc"] > 0.6
    assert events[:2] == ["release", "prepare"]  # training holds the rows once: the snapshot lets go of them first
