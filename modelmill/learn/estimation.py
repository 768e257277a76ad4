"""Performance estimated before the truth arrives: confidence-based performance estimation (CBPE,
the method NannyML publishes) for a calibrated binary classifier.

If the champion's probabilities are calibrated, each scored row's outcome is a draw from its own
probability: a row scored 0.8 turns out positive four times in five. The metric the batch will
show once its outcomes arrive is then a random variable whose distribution needs no labels: draw
every row's outcome from its probability, measure, repeat. The estimate is the mean of
:data:`DRAWS` such draws, its interval their 2.5 and 97.5 percentiles: the sampling error the
realized figure will carry on a batch of this size. Under covariate shift (new inputs, the same
relation to the outcome) the estimate follows the realized figure; a change of the relation
itself (concept shift) is invisible to it, which is why the realized figures still matter.

The method holds only for calibrated probabilities. :func:`calibrated_enough` reads the version's
test figures: a mean probability within :data:`TOLERANCE` of the positive rate, and a Brier
score no worse than always answering that rate. Otherwise no estimate is made, and the reason
is said.

NannyML itself is not a dependency: its requirements add LightGBM, FLAML, plotly, kaleido, cloud
file systems and a usage-analytics client to every installation for the one estimator used here.
"""

from __future__ import annotations

import numpy as np

#: Monte-Carlo draws of the batch's outcomes
DRAWS = 1000
#: how far a version's mean test probability may lie from its test positive rate
TOLERANCE = 0.05


def calibrated_enough(test: dict[str, float]) -> str | None:
    """None when the version's test figures (``mean_probability``, ``positive_rate``, ``brier``)
    say its probabilities are calibrated enough to estimate with, else why not."""
    mean, rate, brier = test.get("mean_probability"), test.get("positive_rate"), test.get("brier")
    if mean is None or rate is None or brier is None:
        return "its test figures do not say how calibrated its probabilities are"
    if abs(mean - rate) > TOLERANCE:
        return f"its mean test probability {mean:.3f} is {abs(mean - rate):.3f} from the test positive rate {rate:.3f} (more than {TOLERANCE})"
    if brier > rate * (1 - rate):
        return f"its test Brier score {brier:.3f} is worse than always answering the positive rate ({rate * (1 - rate):.3f})"
    return None


def cbpe(p, yhat, metrics: dict[str, object], *, draws: int = DRAWS, seed: int = 0) -> dict[str, float]:
    """Each metric's estimate and 95 % interval (``<name>``, ``<name>_low``, ``<name>_high``) for
    rows scored ``p`` (calibrated probability of the positive class) and decided ``yhat`` (0/1).
    ``metrics`` maps a name to ``fn(y, p, yhat)``; ``roc_auc`` is computed from ranks taken once."""
    from scipy.stats import rankdata

    p, yhat = np.asarray(p, dtype=float), np.asarray(yhat).astype(int)
    n = len(p)
    if n < 2:
        return {}
    ranks = rankdata(p)

    def auc(y, _p, _yhat):
        pos = int(y.sum())
        return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (n - pos))) if 0 < pos < n else float("nan")

    fns = {name: (auc if name == "roc_auc" else fn) for name, fn in metrics.items()}
    rng = np.random.default_rng(seed)
    values = {name: np.empty(draws) for name in fns}
    for i in range(draws):
        y = (rng.random(n) < p).astype(int)
        for name, fn in fns.items():
            values[name][i] = fn(y, p, yhat)
    out = {}
    for name, v in values.items():
        v = v[np.isfinite(v)]
        if len(v) < draws / 2:
            continue
        out[name] = float(v.mean())
        out[f"{name}_low"], out[f"{name}_high"] = (float(x) for x in np.percentile(v, [2.5, 97.5]))
    return out
