"""Metrics and plots shared by the kinds that end in a binary or multiclass decision.

Everything comes from scikit-learn / scipy; plots are matplotlib figures (Agg backend), logged
by the tracking adapter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn import metrics as skm


def figure(width: float = 5.5, height: float = 4.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def expected_cost(y: np.ndarray, yhat: np.ndarray, fn_cost: float, fp_cost: float) -> float:
    """Mean cost per case: a positive predicted negative costs ``fn_cost``, the reverse ``fp_cost``."""
    y, yhat = np.asarray(y), np.asarray(yhat)
    fn = np.sum((y == 1) & (yhat == 0))
    fp = np.sum((y == 0) & (yhat == 1))
    return float((fn * fn_cost + fp * fp_cost) / max(len(y), 1))


def binary_metrics(y, p, yhat, cost: tuple[float, float] | None = None) -> dict[str, float]:
    """Ranking, calibration and decision metrics for a binary problem (positive class = 1)."""
    y, p, yhat = np.asarray(y).astype(int), np.asarray(p, dtype=float), np.asarray(yhat).astype(int)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = skm.confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    out = {
        "roc_auc": skm.roc_auc_score(y, p) if both else float("nan"),
        "pr_auc": skm.average_precision_score(y, p) if both else float("nan"),
        "ks": ks_2samp(p[y == 1], p[y == 0]).statistic if both else float("nan"),
        "brier": skm.brier_score_loss(y, p),
        "log_loss": skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]),
        "accuracy": skm.accuracy_score(y, yhat),
        "balanced_accuracy": skm.balanced_accuracy_score(y, yhat),
        "f1": skm.f1_score(y, yhat, zero_division=0),
        "precision": skm.precision_score(y, yhat, zero_division=0),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
    }
    if cost is not None:
        out["expected_cost"] = expected_cost(y, yhat, *cost)
    return {k: float(v) for k, v in out.items()}


def binary_plots(
    y, p, yhat, labels: tuple[str, str], title: str, *, calibration: bool = True, pr: bool = True
) -> dict[str, object]:
    """ROC, precision-recall, calibration (for probabilities) and confusion-matrix figures."""
    from sklearn.calibration import CalibrationDisplay

    y = np.asarray(y).astype(int)
    figs = {}
    fig, ax = figure()
    skm.RocCurveDisplay.from_predictions(y, p, ax=ax, name=title, plot_chance_level=True)
    ax.set_title(f"ROC — {title}")
    figs["roc_curve.png"] = fig
    if pr:
        fig, ax = figure()
        skm.PrecisionRecallDisplay.from_predictions(y, p, ax=ax, name=title, plot_chance_level=True)
        ax.set_title(f"Precision-recall — {title}")
        figs["precision_recall.png"] = fig
    if calibration:
        fig, ax = figure()
        CalibrationDisplay.from_predictions(y, p, n_bins=10, strategy="quantile", ax=ax, name=title)
        ax.set_title(f"Calibration — {title}")
        figs["calibration.png"] = fig
    figs["confusion_matrix.png"] = confusion_figure(y, np.asarray(yhat).astype(int), [0, 1], list(labels), title)
    return figs


def confusion_figure(y, yhat, label_ids, label_names, title: str):
    fig, ax = figure(5.5 if len(label_ids) <= 4 else 12, 4.5 if len(label_ids) <= 4 else 11)
    cm = skm.confusion_matrix(y, yhat, labels=label_ids)
    skm.ConfusionMatrixDisplay(cm, display_labels=label_names).plot(
        ax=ax, colorbar=False, include_values=len(label_ids) <= 10, xticks_rotation="vertical"
    )
    ax.set_title(f"Confusion matrix — {title}")
    fig.tight_layout()
    return fig


def multiclass_tables(y, yhat, top: int = 15) -> dict[str, pd.DataFrame]:
    """Per-class precision/recall/F1 and the most confused (true, predicted) pairs."""
    y, yhat = np.asarray(y).astype(str), np.asarray(yhat).astype(str)
    labels = sorted(set(y) | set(yhat))
    p, r, f, s = skm.precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
    per_class = pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "support": s}).sort_values("f1")
    wrong = pd.DataFrame({"true": y, "predicted": yhat})
    wrong = wrong[wrong.true != wrong.predicted]
    pairs = wrong.value_counts().rename("count").reset_index().head(top)
    return {"per_class_f1.csv": per_class, "confused_pairs.csv": pairs}


def bootstrap_interval(fn, n: int, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of a metric over ``n`` rows: ``fn(index)`` measures the
    metric on the rows ``index`` picks. Resamples on which the metric is undefined (one class
    only, for a ranking metric) are left out; (nan, nan) when fewer than half remain."""
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([fn(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < resamples / 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def binary_metric(name: str, cost: tuple[float, float] | None = None):
    """One of :func:`binary_metrics` as ``fn(y, p, yhat)``, computed directly for the metrics a
    bootstrap resamples a thousand times (the rest through :func:`binary_metrics`)."""
    from scipy.stats import rankdata

    def roc_auc(y, p, yhat):
        pos = int(y.sum())
        neg = len(y) - pos
        if not pos or not neg:
            return float("nan")
        return float((rankdata(p)[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))

    def f1(y, p, yhat):
        tp, fp, fn = np.sum((y == 1) & (yhat == 1)), np.sum((y == 0) & (yhat == 1)), np.sum((y == 1) & (yhat == 0))
        return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0

    direct = {
        "roc_auc": roc_auc,
        "accuracy": lambda y, p, yhat: float(np.mean(y == yhat)),
        "brier": lambda y, p, yhat: float(np.mean((p - y) ** 2)),
        "f1": f1,
    }
    if cost is not None:
        direct["expected_cost"] = lambda y, p, yhat: expected_cost(y, yhat, *cost)
    return direct.get(name) or (lambda y, p, yhat: binary_metrics(y, p, yhat, cost)[name])
