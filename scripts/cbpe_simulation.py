"""How well modelmill's performance estimate before outcomes (CBPE) tracks the realized figures,
where the answer is known: outcomes drawn from a known logistic model, scored by a model fitted
to it, on batches whose inputs narrow, widen and move (covariate shift).

    python scripts/cbpe_simulation.py      # one row per metric: realized range, correlation,
                                           # mean absolute error, interval coverage

``tests/test_estimation.py`` runs :func:`simulate` and holds its figures to bounds.
"""

from __future__ import annotations

import numpy as np

WEIGHTS, BIAS = np.array([1.6, -1.0]), -0.3
METRICS = ("roc_auc", "accuracy", "f1")


def world(rng, n: int, shift: float = 0.0, spread: float = 1.0):
    """Inputs centred at ``shift`` along the first axis with ``spread`` times the training data's
    spread, and outcomes drawn from the true model."""
    X = rng.normal(size=(n, 2)) * spread + np.array([shift, 0.0])
    p = 1 / (1 + np.exp(-(X @ WEIGHTS + BIAS)))
    return X, (rng.random(n) < p).astype(int)


def simulate(batches: int = 26, rows: int = 400, draws: int = 500, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per metric: the realized figures' range, the correlation of estimate and realized figure,
    their mean absolute difference, and how many batches' intervals held the realized figure."""
    from sklearn.linear_model import LogisticRegression

    from modelmill.learn.estimation import cbpe
    from modelmill.learn.evaluation import binary_metric, binary_metrics

    rng = np.random.default_rng(seed)
    model = LogisticRegression().fit(*world(rng, 5000))
    metrics = {m: binary_metric(m) for m in METRICS}
    estimated, realized, inside = {m: [] for m in METRICS}, {m: [] for m in METRICS}, dict.fromkeys(METRICS, 0)
    spreads, shifts = np.linspace(0.2, 2.0, batches), np.resize([-1.5, 0.0, 1.5], batches)
    for i, (spread, shift) in enumerate(zip(spreads, shifts, strict=True)):
        X, y = world(rng, rows, shift, spread)
        p, yhat = model.predict_proba(X)[:, 1], model.predict(X)
        est, real = cbpe(p, yhat, metrics, draws=draws, seed=i), binary_metrics(y, p, yhat)
        for m in METRICS:
            estimated[m].append(est[m])
            realized[m].append(real[m])
            inside[m] += est[f"{m}_low"] <= real[m] <= est[f"{m}_high"]
    out = {}
    for m in METRICS:
        e, r = np.array(estimated[m]), np.array(realized[m])
        out[m] = {
            "realized_min": float(r.min()),
            "realized_max": float(r.max()),
            "correlation": float(np.corrcoef(e, r)[0, 1]),
            "mean_abs_error": float(np.mean(np.abs(e - r))),
            "coverage": inside[m] / batches,
            "batches": batches,
        }
    return out


if __name__ == "__main__":
    print("metric    realized range  correlation  mean |error|  interval held")
    for m, f in simulate().items():
        print(
            f"{m:<9} {f['realized_min']:.3f}-{f['realized_max']:.3f}    {f['correlation']:.3f}        "
            f"{f['mean_abs_error']:.4f}        {round(f['coverage'] * f['batches'])} of {f['batches']}"
        )
