"""Tabular regression: a continuous target (an amount, a price, a demand) from the same features
as tabular classification, with a prediction interval for every row.

Candidates (regularised linear models to gradient boosting) are selected by k-fold CV on the
training rows, as for classification. The chosen model is wrapped in :class:`Conformal`: its
out-of-fold absolute residuals on the training rows give the half-width of a prediction interval
at the spec's ``options.interval`` level (split-conformal on cross-validation residuals), and
its coverage is measured on the test split, never assumed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import ElasticNet, Ridge
from sklearn.metrics import mean_absolute_error, median_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import KFold, PredefinedSplit, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.kinds.base import Prepared, ProblemKind, Trained
from modelmill.learn.kinds.selection import fit_rows, grid_select
from modelmill.learn.kinds.tabular import FeatureOptions, TabularClassification

SCORERS = {"rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error", "r2": "r2"}


class Conformal(RegressorMixin, BaseEstimator):
    """A regressor with a prediction interval: ``predict`` is the wrapped model's, fitted on every
    row; :meth:`predict_interval` adds and subtracts the ``level`` quantile of its out-of-fold
    absolute residuals (each ``cv`` split's held-out rows predicted by a copy fitted on the rest;
    the finite-sample quantile ceil((n+1) level) / n of split-conformal prediction)."""

    def __init__(self, estimator, level: float = 0.9, cv=5):
        self.estimator, self.level, self.cv = estimator, level, cv

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags = get_tags(self.estimator).input_tags  # it takes what the wrapped model takes
        return tags

    def fit(self, X, y):
        from sklearn.model_selection import check_cv

        y = column_or_1d(y, warn=True).astype(float)
        if not hasattr(X, "iloc"):
            X = check_array(X, accept_sparse="csr", dtype=None, ensure_all_finite=False)
        held = np.full(len(y), np.nan)
        for tr, te in check_cv(self.cv, y, classifier=False).split(X, y):
            held[te] = clone(self.estimator).fit(_safe_indexing(X, tr), y[tr]).predict(_safe_indexing(X, te))
        residuals = np.abs(y - held)[~np.isnan(held)]
        n = len(residuals)
        rank = min(int(np.ceil((n + 1) * self.level)), n)
        self.half_width_ = float(np.sort(residuals)[rank - 1]) if n else float("nan")
        self.estimator_ = clone(self.estimator).fit(X, y)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict(self, X):
        check_is_fitted(self)
        return self.estimator_.predict(X)

    def predict_interval(self, X) -> tuple[np.ndarray, np.ndarray]:
        p = self.predict(X)
        return p - self.half_width_, p + self.half_width_


def has_interval(model) -> bool:
    """Whether a fitted model (or the last step of a pipeline, as registered: raw rows, then
    :class:`Conformal`) gives prediction intervals."""
    return hasattr(model.steps[-1][1] if isinstance(model, Pipeline) else model, "predict_interval")


def predict_interval(model, X) -> tuple[np.ndarray, np.ndarray] | None:
    """The (lower, upper) interval of a fitted model (see :func:`has_interval`), or None."""
    if not has_interval(model):
        return None
    last = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if isinstance(model, Pipeline):
        for _, step in model.steps[:-1]:  # step by step: a slice of a pipeline counts as unfitted
            X = step.transform(X)
    return last.predict_interval(X)


def prediction_frame(model, X) -> pd.DataFrame:
    """What a regression model answers for rows ``X``: ``prediction`` and, for a model with
    intervals, ``lower`` and ``upper`` (the registered model's pyfunc answer, and its example)."""
    out = pd.DataFrame({"prediction": np.asarray(model.predict(X), dtype=float)})
    interval = predict_interval(model, X)
    if interval is not None:
        out["lower"], out["upper"] = interval
    return out


class RegressionOptions(FeatureOptions):
    interval: float = Field(
        0.9, gt=0.5, lt=1, description="the nominal coverage of each prediction's interval", examples=[0.8]
    )


REGRESSORS = {
    "dummy_mean": lambda seed, **p: DummyRegressor(strategy="mean", **p),
    "dummy_median": lambda seed, **p: DummyRegressor(strategy="median", **p),
    "ridge": lambda seed, **p: Ridge(**p),
    "elastic_net": lambda seed, **p: ElasticNet(**{"max_iter": 10000, **p}),
    "hist_gradient_boosting": lambda seed, **p: HistGradientBoostingRegressor(random_state=seed, **p),
    "random_forest": lambda seed, **p: RandomForestRegressor(random_state=seed, **{"n_jobs": 1, **p}),
}


class TabularRegression(TabularClassification):
    """The tabular kind's featurizer and row model with a continuous target."""

    name = "tabular_regression"
    Options = RegressionOptions
    METRICS = {"rmse": "minimize", "mae": "minimize", "r2": "maximize"}
    HEADLINE = ("mae", "r2", "interval_coverage")
    SCORERS = SCORERS
    TARGET_CLASSES = False
    ESTIMATORS = REGRESSORS

    def check_spec(self, spec: PipelineSpec) -> None:
        ProblemKind.check_spec(self, spec)
        if spec.target is None:
            raise SpecError(f"pipeline {spec.name}: tabular regression needs `target`")
        if spec.positive_label is not None:
            raise SpecError(f"pipeline {spec.name}: positive_label is for classification; a regression target has none")
        self.require_split(spec, "random", "predefined")
        self.check_features(spec)

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        X = self.model_input(spec, df)
        y = pd.to_numeric(df[spec.target], errors="coerce").to_numpy(dtype=float)
        if np.isnan(y).any():
            raise SpecError(
                f"pipeline {spec.name}: target {spec.target} has {int(np.isnan(y).sum())} values that are not numbers"
            )
        random_split = None
        if spec.split.method != "predefined":
            random_split = train_test_split(
                np.arange(len(df)), test_size=spec.split.test_size, random_state=spec.split.seed
            )
        tr, te, fold = fit_rows(spec, df, random_split)
        n_val = int((fold == 0).sum()) if fold is not None else 0
        info = {
            "train_rows": len(tr) - n_val,
            "val_rows": n_val,
            "test_rows": len(te),
            "target_mean_train": float(y[tr].mean()),
            "target_mean_test": float(y[te].mean()),
        }
        return Prepared(
            (X.iloc[tr].reset_index(drop=True), y[tr], fold),
            (X.iloc[te].reset_index(drop=True), y[te]),
            info,
            (),
            self.test_keys(spec, df, te),
        )

    def _cv(self, spec: PipelineSpec, fold):
        if fold is not None:
            return PredefinedSplit(fold)
        return KFold(spec.split.folds, shuffle=True, random_state=spec.split.seed)

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        X, y, fold = data.train
        cv = self._cv(spec, fold)

        def build(c):
            return Pipeline([("features", self.featurizer(spec)), ("model", self.build(c, spec))])

        best_name, model, table, chosen = grid_select(spec, build, X, y, cv=cv, scoring=self.SCORERS[spec.metric.name])
        level = self.options(spec).interval
        model = Conformal(model, level, cv).fit(X, y)
        baseline = self.fit_baseline(spec, build, X, y)
        params = {"interval_level": level, "interval_half_width": round(model.half_width_, 6)}
        return Trained(model, baseline, best_name, table, params, chosen)

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        X, y = data.test
        p = model.predict(X)
        out = {
            "rmse": root_mean_squared_error(y, p),
            "mae": mean_absolute_error(y, p),
            "median_ae": median_absolute_error(y, p),
            "r2": r2_score(y, p) if len(y) > 1 else float("nan"),
            "mean_prediction": float(np.mean(p)),
            "mean_target": float(np.mean(y)),
        }
        interval = predict_interval(model, X)
        if interval is not None:
            low, high = interval
            out["interval_coverage"] = float(np.mean((y >= low) & (y <= high)))
            out["interval_width"] = float(np.mean(high - low))
        return {k: float(v) for k, v in out.items()}

    def warnings(self, spec: PipelineSpec, metrics: dict[str, float]) -> list[str]:
        level, covered = self.options(spec).interval, metrics.get("interval_coverage")
        if covered is None or abs(covered - level) <= 0.05:
            return []
        return [
            f"the {level:.0%} prediction intervals held {covered:.1%} of the test targets: "
            f"{'narrower' if covered < level else 'wider'} than they say (the test rows differ from the training rows' residuals)"
        ]

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        from modelmill.learn.evaluation import figure

        X, y = data.test
        p = trained.model.predict(X)
        low, high = predict_interval(trained.model, X)
        figs = {}
        fig, ax = figure()
        ax.errorbar(
            y, p, yerr=[p - low, high - p], fmt="o", ms=3, alpha=0.5, elinewidth=0.5, label="prediction and interval"
        )
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], c="grey", lw=1, ls="--", label="prediction = actual")
        ax.set(
            xlabel=f"actual {spec.target}",
            ylabel=f"predicted {spec.target}",
            title=f"Predicted vs actual — {spec.name}",
        )
        ax.legend(fontsize=8)
        figs["predicted_vs_actual.png"] = fig
        fig, ax = figure()
        ax.scatter(p, y - p, s=8, alpha=0.5)
        ax.axhline(0, c="grey", lw=1)
        ax.set(
            xlabel=f"predicted {spec.target}", ylabel="residual (actual - predicted)", title=f"Residuals — {spec.name}"
        )
        figs["residuals.png"] = fig
        scored = pd.DataFrame(
            {"y_true": y, "y_pred": np.round(p, 6), "lower": np.round(low, 6), "upper": np.round(high, 6)}
        )
        if data.test_keys is not None:
            scored = pd.concat([data.test_keys.reset_index(drop=True), scored], axis=1)
        return figs, {"test_predictions.csv": scored}

    def examples(self, model, data: Prepared):
        X = data.test[0].head(5)
        return X, prediction_frame(model, X)

    def label_names(self, spec: PipelineSpec, labels: pd.Series) -> tuple:
        return ()
