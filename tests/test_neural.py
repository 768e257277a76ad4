"""The neural estimators (PyTorch via skorch) on the real mirrored data, with few epochs: the
scikit-learn contract, seeded determinism, early-stopping rows, epoch logs, the epoch cap, and a
neural champion loaded back through MLflow's pyfunc."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from conftest import (
    artifacts,
    last_run,
    mlflow_client,
    modelmill_env,
    require_mirror,
    run_cli,
    write_spec,
)
from modelmill.config.settings import Settings
from modelmill.errors import SpecError
from modelmill.learn.kinds.neural import (
    CNNClassifier,
    GRUTextClassifier,
    MLPRegressor,
    epochs_cap,
    training_curves,
)
from modelmill.learn.kinds.text import TfidfGRUEnsemble

torch = pytest.importorskip("torch")  # the `neural` extra, which make test installs


@pytest.fixture(scope="module")
def images():
    with np.load(require_mirror() / "breastmnist" / "breastmnist.npz") as z:
        X, y = z["train_images"], z["train_labels"].ravel()
        return X[:240].reshape(240, -1), y[:240]


@pytest.fixture(scope="module")
def queries():
    frame = pd.read_csv(require_mirror() / "banking77" / "train.csv")
    top = frame["category"].value_counts().index[:6]
    part = frame[frame["category"].isin(top)].reset_index(drop=True)
    return part["text"].to_numpy(dtype=object), part["category"].to_numpy()


def _fit_twice(make, X, y):
    a, b = make().fit(X, y), make().fit(X, y)
    return a, b


def test_cnn_follows_the_estimator_contract_and_is_seeded(images, caplog, monkeypatch):
    X, y = images

    def make():
        return CNNClassifier(max_epochs=2, batch_size=32, seed=7, threads=1)

    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        a, b = _fit_twice(make, X, y)
    p = a.predict_proba(X[:50])
    assert p.shape == (50, 2) and np.allclose(p.sum(1), 1) and set(a.predict(X[:50])) <= {0, 1}
    np.testing.assert_array_equal(p, b.predict_proba(X[:50]))  # same seed, same network
    assert not np.allclose(p, make().set_params(seed=8).fit(X, y).predict_proba(X[:50]))
    assert any(m.startswith("cnn epoch 2/2: train_loss") and "valid_auc" in m for m in caplog.messages)
    assert len(a.history_) == 2 and training_curves(a, "t") is not None
    assert clone(a).get_params() == a.get_params()
    import builtins

    monkeypatch.setattr(builtins, "print", lambda *args, **kw: None)  # as Prefect's log_prints does in a flow
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict_proba(X[:50]), p)
    # early stopping holds out a stratified, seeded share of the rows it was given
    assert len(a.valid_index_) == round(0.15 * len(X)) and abs(y[a.valid_index_].mean() - y.mean()) < 0.05


def test_a_cnn_of_several_networks_averages_them(images, caplog):
    X, y = images
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        net = CNNClassifier(n_models=2, tta=False, max_epochs=1, batch_size=32, seed=4, threads=1).fit(X, y)
    assert len(net.nets_) == 2 and "cnn: network 2 of 2 (seed 5)" in caplog.messages
    members = [m.predict_proba((X[:10] / 255.0).astype(np.float32)) for m in net.nets_]
    assert not np.allclose(*members)  # two seeds, two networks
    np.testing.assert_allclose(net.predict_proba(X[:10]), np.mean(members, axis=0), rtol=1e-6)


def test_gru_reads_raw_texts_and_returns_their_labels(queries, caplog):
    X, y = queries

    def make():
        return GRUTextClassifier(max_epochs=3, embed_dim=32, hidden=32, seed=3, threads=1)

    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        a, b = _fit_twice(make, X, y)
    unseen = np.array(["zzkq wibble 12345?!", ""], dtype=object)  # unknown tokens and an empty text
    p = a.predict_proba(np.r_[X[:20], unseen])
    assert p.shape == (22, 6) and np.allclose(p.sum(1), 1)
    assert set(a.classes_) == set(y) and set(a.predict(X[:20])) <= set(y)
    np.testing.assert_array_equal(p, b.predict_proba(np.r_[X[:20], unseen]))
    assert (a.predict(X) == y).mean() > 0.6  # three epochs already separate six intents
    assert any(m.startswith("gru epoch 3/3") and "valid_acc" in m for m in caplog.messages)


def test_the_ensemble_picks_its_weight_on_rows_none_of_its_models_trained_on(queries, caplog):
    X, y = queries
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        e = TfidfGRUEnsemble(
            weights=(0.0, 0.5, 1.0),
            min_df=1,
            gru={"max_epochs": 2, "embed_dim": 32, "hidden": 32, "threads": 1},
            seed=5,
        ).fit(X, y)
    assert e.weight_ in (0.0, 0.5, 1.0)
    line = next(m for m in caplog.messages if m.startswith("tfidf+gru: GRU weight"))
    assert "0: " in line and "0.5: " in line and "1: " in line
    p = e.predict_proba(X[:10])
    expected = (1 - e.weight_) * e.tfidf_.predict_proba(X[:10]) + e.weight_ * e.gru_.predict_proba(X[:10])
    np.testing.assert_allclose(p, expected)
    assert (e.predict(X) == y).mean() > 0.8


def test_the_ensemble_refits_tf_idf_from_the_held_out_weights_to_the_same_model(queries):
    """The refit on every row starts from the held-out model's weights (n-gram by n-gram): far
    fewer solver iterations than from zeros, and the same model within the solver's tolerance."""
    X, y = queries
    e = TfidfGRUEnsemble(
        weights=(0.5,), gru={"max_epochs": 1, "embed_dim": 16, "hidden": 16, "threads": 1}, seed=5
    ).fit(X, y)
    cold = e._tfidf(X, y)
    warm = e.tfidf_.named_steps["model"]
    assert warm.n_iter_.max() < 0.6 * cold.named_steps["model"].n_iter_.max()
    assert not warm.warm_start  # the logged model's parameters are the usual ones
    assert (e.tfidf_.predict(X) == cold.predict(X)).mean() > 0.995
    np.testing.assert_allclose(e.tfidf_.predict_proba(X), cold.predict_proba(X), atol=0.05)
    # the start: every n-gram of the held-out vocabulary at its own column, the new ones at 0
    from modelmill.learn.kinds.text import _weights_on, featurizer

    part = e._tfidf(X[: len(X) // 2], y[: len(X) // 2])
    features = featurizer(min_df=2).fit(X)
    start = _weights_on(part, features)
    names, old = list(features.get_feature_names_out()), list(part.named_steps["features"].get_feature_names_out())
    assert set(old) < set(names)
    j = names.index(old[7])
    np.testing.assert_array_equal(start[:, j], part.named_steps["model"].coef_[:, 7])
    assert (start[:, [names.index(n) for n in set(names) - set(old)]] == 0).all()


def test_the_mlp_stops_early_on_the_latest_rows_and_predicts_on_the_target_scale():
    prices = pd.read_csv(require_mirror() / "stooq-daily" / "aapl.us.csv")
    close = prices.iloc[:, 4].astype(float).to_numpy()  # Date,Open,High,Low,Close,Volume
    ret = close[1:] / close[:-1] - 1
    X = np.column_stack([ret[i : len(ret) - 10 + i] for i in range(10)])  # the last ten returns
    y = ret[10:]

    def make():
        return MLPRegressor(hidden=(16,), max_epochs=3, seed=2, threads=1)

    a, b = _fit_twice(make, X, y)
    assert (a.valid_index_ == np.arange(len(y) - round(0.15 * len(y)), len(y))).all()
    pred = a.predict(X)
    np.testing.assert_array_equal(pred, b.predict(X))
    assert pred.shape == y.shape and np.isfinite(pred).all() and abs(pred.mean()) < 0.01  # daily returns, not z-scores


def test_the_epoch_cap_bounds_every_network(images, monkeypatch, caplog):
    X, y = images
    monkeypatch.setenv("MODELMILL_MAX_EPOCHS", "1")
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        net = CNNClassifier(max_epochs=40, seed=0, threads=1).fit(X, y)
    assert len(net.history_) == 1 and "cnn: 1 epochs at most (MODELMILL_MAX_EPOCHS), not 40" in caplog.messages
    monkeypatch.setenv("MODELMILL_MAX_EPOCHS", "ten")
    with pytest.raises(SpecError, match="MODELMILL_MAX_EPOCHS must be a positive whole number"):
        epochs_cap()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: cuda is used, not refused")
def test_asking_for_cuda_without_a_gpu_trains_on_the_cpu_and_says_so(images, caplog):
    X, y = images
    with caplog.at_level(logging.WARNING, logger="modelmill.train"):
        net = CNNClassifier(max_epochs=1, seed=0, threads=1, device="cuda").fit(X, y)
    assert net.predict_proba(X[:3]).shape == (3, 2)
    assert "cnn: device cuda asked for but none is present; training on the CPU" in caplog.messages


@pytest.fixture
def neural_env(tmp_path, monkeypatch, prefect_api):
    def make(base: str, candidates: list[dict]) -> tuple[Settings, str]:
        spec = write_spec(tmp_path, base, candidates=candidates)
        modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
        return Settings(), str(spec)

    return make


def test_a_cnn_champion_is_logged_with_its_curves_and_loads_through_pyfunc(neural_env, capsys, images):
    import mlflow
    import mlflow.sklearn

    settings, spec = neural_env(
        "breast_ultrasound", [{"name": "resnet_cnn", "estimator": "cnn", "params": {"channels": 8}}]
    )
    code, out, err = run_cli(capsys, "run", spec)
    assert code == 0, out + err
    run = last_run(settings, "breast_ultrasound")
    assert run.data.params["model.candidate"] == "resnet_cnn" and run.data.tags["modelmill.decision"] == "promoted"
    assert "plots/training_curves.png" in artifacts(settings, run, "plots")
    assert "cnn epoch 2/2" in out + err  # the epochs reach the run's log
    mlflow_client(settings)  # points mlflow at the run's store
    model = mlflow.pyfunc.load_model("models:/modelmill-breast_ultrasound@champion")
    X, _ = images
    served = model.predict(X[:5].astype(np.float32))
    assert set(served["prediction"]) <= {"benign", "malignant"} and np.allclose(
        served[["probability_benign", "probability_malignant"]].sum(axis=1), 1
    )  # BreastMNIST's labels are 0/1: the answer calls them by the spec's names
    reqs = mlflow.pyfunc.get_model_dependencies("models:/modelmill-breast_ultrasound@champion")
    assert {"torch==2.13.0", "skorch==1.4.0"} <= set(open(reqs).read().split())
    p = mlflow.sklearn.load_model("models:/modelmill-breast_ultrasound@champion").predict_proba(X[:5])
    assert p.shape == (5, 2) and np.allclose(p.sum(1), 1)


def test_a_recurrent_champion_scores_raw_sentences_through_pyfunc(neural_env, capsys):
    import mlflow

    settings, spec = neural_env(
        "review_sentiment", [{"name": "bigru", "estimator": "gru", "params": {"embed_dim": 32, "hidden": 32}}]
    )
    code, out, err = run_cli(capsys, "run", spec)
    assert code == 0, out + err
    run = last_run(settings, "review_sentiment")
    assert run.data.params["model.candidate"] == "bigru"
    assert "plots/training_curves.png" in artifacts(settings, run, "plots")
    mlflow_client(settings)  # points mlflow at the run's store
    model = mlflow.pyfunc.load_model("models:/modelmill-review_sentiment@champion")
    out = model.predict(
        pd.DataFrame({"sentence": ["The food was wonderful and the staff were kind.", "Terrible. Broke after a day."]})
    )
    assert set(out["prediction"]) <= {0, 1} and out["probability_1"].between(0, 1).all()
