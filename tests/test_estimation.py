"""Performance estimated before the outcomes arrive (CBPE), tested where the answer is known: a
simulated world whose outcomes are drawn from a known logistic model, scored by a model fitted to
it, on batches whose inputs narrow, widen and move away from the training data (covariate shift;
``scripts/cbpe_simulation.py`` prints the same figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from modelmill.learn.estimation import calibrated_enough
from modelmill.learn.evaluation import binary_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from cbpe_simulation import simulate, world  # noqa: E402


def test_the_estimate_tracks_the_realized_metric_under_covariate_shift():
    for metric, f in simulate().items():
        assert f["realized_max"] - f["realized_min"] > 0.3, (
            metric
        )  # the shift moves the metric: tracking it proves something
        assert f["correlation"] > 0.95, (metric, f)  # the estimate follows the metric as the inputs move
        assert f["mean_abs_error"] < 0.03, (metric, f)
        assert f["coverage"] >= 0.85, (
            metric,
            f,
        )  # the 95 % interval holds the realized figure about as often as it says


def test_uncalibrated_probabilities_are_not_estimated_and_the_reason_is_said():
    rng = np.random.default_rng(1)
    X, y = world(rng, 4000)
    Xt, yt = world(rng, 2000)
    calibrated = LogisticRegression().fit(X, y)
    weighted = LogisticRegression(class_weight={0: 1, 1: 6}).fit(X, y)  # weights move probabilities off the rate

    def figures(model):
        p = model.predict_proba(Xt)[:, 1]
        return binary_metrics(yt, p, model.predict(Xt)) | {"mean_probability": p.mean(), "positive_rate": yt.mean()}

    assert calibrated_enough(figures(calibrated)) is None
    reason = calibrated_enough(figures(weighted))
    assert reason is not None and "from the test positive rate" in reason
    assert "do not say" in calibrated_enough({"brier": 0.1})
