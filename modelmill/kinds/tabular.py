"""Tabular binary classification (credit risk, breast cytology, any user CSV of that shape)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import make_scorer
from sklearn.model_selection import TunedThresholdClassifierCV, train_test_split
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modelmill.errors import SpecError
from modelmill.evaluation import binary_metrics, binary_plots, expected_cost
from modelmill.kinds.base import KindOptions, Prepared, ProblemKind, Trained
from modelmill.kinds.encoders import CategoryEncoder
from modelmill.kinds.estimators import pick
from modelmill.kinds.selection import fit_rows, grid_select, selection_cv
from modelmill.spec import PipelineSpec

SCORERS = {"roc_auc": "roc_auc", "pr_auc": "average_precision", "log_loss": "neg_log_loss", "brier": "neg_brier_score"}


class Cost(KindOptions):
    false_negative: float = Field(gt=0, description="cost of a positive predicted negative")
    false_positive: float = Field(gt=0, description="cost of a negative predicted positive")


class TabularOptions(KindOptions):
    text_max_features: int = Field(2000, ge=10, le=50_000, description="TF-IDF terms kept from features.text")
    threshold: Literal["cost", "balanced_accuracy", "f1", "fixed"] = Field(
        "balanced_accuracy", description="how the decision threshold is tuned by CV on the training split (fixed: 0.5)"
    )
    cost: Cost | None = Field(None, description="the cost matrix for `threshold: cost`", examples=[{"false_negative": 5, "false_positive": 1}])
    negative_label_name: str = Field("negative", description="name of the negative class in plots")
    positive_label_name: str = Field("positive", description="name of the positive class in plots")
    categorical_encoding: Literal["onehot", "native"] = Field(
        "onehot",
        description="onehot: a 0/1 column per category (any estimator); native: one code per column, split on "
        "natively by hist_gradient_boosting, missing and unseen values left to its missing-value branches (a "
        "tenth of the memory on wide categorical data; for tree models; at most 255 categories per column)",
    )


class TabularClassification(ProblemKind):
    name = "tabular_classification"
    Options = TabularOptions
    METRICS = {"roc_auc": "maximize", "pr_auc": "maximize", "log_loss": "minimize", "brier": "minimize"}
    HEADLINE = ("expected_cost", "accuracy", "sensitivity")
    EXAMPLE_ROWS = True
    ROW_MODEL = True
    IMPUTES = True
    FEATURES = ("numeric", "categorical", "text")
    ESTIMATORS = pick("dummy_prior", "logistic_regression", "hist_gradient_boosting", "random_forest", "logit_forest_vote")

    def check_spec(self, spec: PipelineSpec) -> None:
        super().check_spec(spec)
        opts = self.options(spec)
        if spec.target is None or spec.positive_label is None:
            raise SpecError(f"pipeline {spec.name}: tabular classification needs `target` and `positive_label`")
        if not (spec.features.numeric or spec.features.categorical or spec.features.text):
            raise SpecError(f"pipeline {spec.name}: declare features.numeric, features.categorical and/or features.text")
        self.require_split(spec, "stratified", "predefined")
        if opts.threshold == "cost" and opts.cost is None:
            raise SpecError(f"pipeline {spec.name}: options.threshold=cost needs options.cost")

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        X = self.model_input(spec, df)
        y = (df[spec.target].astype("str") == str(spec.positive_label)).astype(int).to_numpy()
        random_split = None
        if spec.split.method != "predefined":
            random_split = train_test_split(np.arange(len(df)), test_size=spec.split.test_size, random_state=spec.split.seed, stratify=y)
        tr, te, fold = fit_rows(spec, df, random_split)
        y_tr, y_te = y[tr], y[te]
        n_val = int((fold == 0).sum()) if fold is not None else 0
        info = {"train_rows": len(y_tr) - n_val, "val_rows": n_val, "test_rows": len(y_te), "positive_rate_train": float(y_tr.mean()), "positive_rate_test": float(y_te.mean())}
        return Prepared((X.iloc[tr].reset_index(drop=True), y_tr, fold), (X.iloc[te].reset_index(drop=True), y_te), info, self.label_names(spec, df[spec.target]))

    def featurizer(self, spec: PipelineSpec) -> ColumnTransformer:
        """Scaled numeric and one-hot categorical features, with the spec's imputation first, and
        word uni/bigram TF-IDF of the text column (dense, so every estimator takes it).

        ``categorical_encoding: native``: the categorical columns come first, one code each (a
        missing or unseen value is NaN, which the trees route as missing: no imputation), so
        :meth:`build` can tell gradient boosting which columns they are."""
        imp = spec.impute
        numeric: list = [StandardScaler()]
        if imp.numeric != "none":
            fill = {"strategy": imp.numeric} | ({"fill_value": imp.numeric_value} if imp.numeric == "constant" else {})
            numeric.insert(0, SimpleImputer(**fill, add_indicator=imp.indicator))
        numbers = ("numeric", make_pipeline(*numeric), spec.features.numeric)
        if self.options(spec).categorical_encoding == "native":
            parts = [("categorical", CategoryEncoder("ordinal"), spec.features.categorical), numbers]
        else:
            categorical: list = [CategoryEncoder()]
            if imp.categorical != "none":
                fill = {"strategy": "most_frequent"} if imp.categorical == "most_frequent" else {"strategy": "constant", "fill_value": "missing"}
                categorical.insert(0, SimpleImputer(**fill, add_indicator=imp.indicator))
            parts = [numbers, ("categorical", make_pipeline(*categorical), spec.features.categorical)]
        if spec.features.text:
            tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=self.options(spec).text_max_features, sublinear_tf=True)
            parts.append(("text", tfidf, spec.features.text))  # a column name, not a list: TF-IDF takes 1-D text
        return ColumnTransformer(parts, sparse_threshold=0.0)

    def build(self, c, spec: PipelineSpec):
        model = super().build(c, spec)
        cats = spec.features.categorical
        if self.options(spec).categorical_encoding == "native" and c.estimator == "hist_gradient_boosting" and cats and "categorical_features" not in c.params:
            model.set_params(categorical_features=list(range(len(cats))))  # the featurizer puts them first
        return model

    def _threshold_scorer(self, spec: PipelineSpec):
        opts = self.options(spec)
        if opts.threshold == "cost":
            fn, fp = opts.cost.false_negative, opts.cost.false_positive
            return make_scorer(lambda y, yhat: -expected_cost(y, yhat, fn, fp), response_method="predict")
        return opts.threshold

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        X, y, fold = data.train
        cv = selection_cv(spec, fold)

        def build(c):
            return Pipeline([("features", self.featurizer(spec)), ("model", self.build(c, spec))])

        opts = self.options(spec)
        fixed = opts.threshold == "fixed"
        best_name, model, table, chosen = grid_select(spec, build, X, y, cv=cv, scoring=SCORERS[spec.metric.name], fit=fixed)
        if not fixed:
            # Decision threshold chosen on the same validation rows (or CV folds) as the model, never on test;
            # the tuner fits the model on all training rows itself.
            model = TunedThresholdClassifierCV(model, scoring=self._threshold_scorer(spec), cv=cv, random_state=spec.split.seed)
            model.fit(X, y)
        baseline = self.fit_baseline(spec, build, X, y)
        threshold = float(getattr(model, "best_threshold_", 0.5))
        return Trained(model, baseline, best_name, table, {"decision_threshold": round(threshold, 6)}, chosen)

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        X, y = data.test
        p = model.predict_proba(X)[:, 1]
        yhat = model.predict(X)
        opts = self.options(spec)
        cost = (opts.cost.false_negative, opts.cost.false_positive) if opts.cost else None
        out = binary_metrics(y, p, yhat, cost)
        out["decision_threshold"] = float(getattr(model, "best_threshold_", 0.5))
        return out

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        X, y = data.test
        p = trained.model.predict_proba(X)[:, 1]
        opts = self.options(spec)
        figs = binary_plots(y, p, trained.model.predict(X), (opts.negative_label_name, opts.positive_label_name), spec.name)
        scored = pd.DataFrame({"y_true": y, "p_positive": np.round(p, 6), "y_pred": trained.model.predict(X)})
        return figs, {"test_predictions.csv": scored}

    def examples(self, model, data: Prepared):
        X = data.test[0].head(5)
        return X, model.predict_proba(X)
