"""Tabular binary classification (credit risk, breast cytology, any user CSV of that shape)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.metrics import make_scorer
from sklearn.model_selection import TunedThresholdClassifierCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.evaluation import binary_metrics, binary_plots, expected_cost
from modelmill.learn.kinds.base import KindOptions, Prepared, ProblemKind, Trained
from modelmill.learn.kinds.encoders import CategoryEncoder
from modelmill.learn.kinds.estimators import pick
from modelmill.learn.kinds.selection import fit_rows, grid_select, selection_cv

SCORERS = {"roc_auc": "roc_auc", "pr_auc": "average_precision", "log_loss": "neg_log_loss", "brier": "neg_brier_score"}


class Cost(KindOptions):
    false_negative: float = Field(gt=0, description="cost of a positive predicted negative")
    false_positive: float = Field(gt=0, description="cost of a negative predicted positive")


def negative_cost(y, yhat, false_negative: float, false_positive: float) -> float:
    """The expected cost as a score to maximise (a named function: the tuned threshold keeps it,
    and a stored model may hold only functions on the allow-list of :mod:`modelmill.registry.model_files`)."""
    return -expected_cost(y, yhat, false_negative, false_positive)


class FeatureOptions(KindOptions):
    """How the tabular featurizer turns text and categories into features (every tabular kind)."""

    text_max_features: int = Field(2000, ge=10, le=50_000, description="TF-IDF terms kept from features.text")
    text_features: Literal["tfidf", "sentences", "both"] = Field(
        "tfidf",
        description="how features.text becomes features: TF-IDF terms, frozen sentence embeddings (the `text` extra's all-MiniLM-L6-v2, or MODELMILL_TEXT_ENCODER), or both",
        examples=["both"],
    )
    encoder_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="the digest of every file of the sentence encoder's folder when MODELMILL_TEXT_ENCODER names your own (an unpinned folder is a spec error that prints it; the shipped all-MiniLM-L6-v2 is pinned already)",
        examples=["59c8239675df4af602eecc13ecd09f966b2fbb8263dba7a3ea1edd3dde10ed07"],
    )
    categorical_encoding: Literal["onehot", "native"] = Field(
        "onehot",
        description="onehot: a 0/1 column per category (any estimator); native: one code per column, split on "
        "natively by hist_gradient_boosting, missing and unseen values left to its missing-value branches (a "
        "tenth of the memory on wide categorical data; for tree models; at most 255 categories per column)",
    )


class TabularOptions(FeatureOptions):
    threshold: Literal["cost", "balanced_accuracy", "f1", "fixed"] = Field(
        "balanced_accuracy", description="how the decision threshold is tuned by CV on the training split (fixed: 0.5)"
    )
    cost: Cost | None = Field(
        None, description="the cost matrix for `threshold: cost`", examples=[{"false_negative": 5, "false_positive": 1}]
    )
    negative_label_name: str | None = Field(
        None, description="name of the negative class in plots, scores and answers (default: its label in the data)"
    )
    positive_label_name: str | None = Field(
        None, description="name of the positive class in plots, scores and answers (default: its label in the data)"
    )
    calibration: Literal["auto", "sigmoid", "isotonic", "none"] = Field(
        "auto",
        description="auto: a model that weights its classes (class_weight) gets the calibration step (none, sigmoid or "
        "isotonic) with the best out-of-fold Brier score on the training rows; sigmoid/isotonic: always that step",
    )


class TabularClassification(ProblemKind):
    name = "tabular_classification"
    Options = TabularOptions
    METRICS = {"roc_auc": "maximize", "pr_auc": "maximize", "log_loss": "minimize", "brier": "minimize"}
    HEADLINE = ("expected_cost", "accuracy", "sensitivity")
    #: the scikit-learn scorer of each primary metric (selection and permutation importance)
    SCORERS = SCORERS
    EXAMPLE_ROWS = True
    ROW_MODEL = True
    IMPUTES = True
    FEATURES = ("numeric", "categorical", "text")
    ESTIMATORS = pick(
        "dummy_prior", "logistic_regression", "hist_gradient_boosting", "random_forest", "logit_forest_vote"
    )

    def check_spec(self, spec: PipelineSpec) -> None:
        super().check_spec(spec)
        opts = self.options(spec)
        if spec.target is None or spec.positive_label is None:
            raise SpecError(f"pipeline {spec.name}: tabular classification needs `target` and `positive_label`")
        self.require_split(spec, "stratified", "predefined")
        if opts.threshold == "cost" and opts.cost is None:
            raise SpecError(f"pipeline {spec.name}: options.threshold=cost needs options.cost")
        self.check_features(spec)

    def check_features(self, spec: PipelineSpec) -> None:
        """Features declared, and a pinned encoder for sentence features."""
        opts = self.options(spec)
        if not (spec.features.numeric or spec.features.categorical or spec.features.text):
            raise SpecError(
                f"pipeline {spec.name}: declare features.numeric, features.categorical and/or features.text"
            )
        if opts.text_features != "tfidf":
            if not spec.features.text:
                raise SpecError(f"pipeline {spec.name}: options.text_features {opts.text_features} needs features.text")
            from modelmill.learn.kinds.sentences import encoder_folder

            encoder_folder(opts.encoder_sha256)

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        X = self.model_input(spec, df)
        y = (df[spec.target].astype("str") == str(spec.positive_label)).astype(int).to_numpy()
        random_split = None
        if spec.split.method != "predefined":
            random_split = train_test_split(
                np.arange(len(df)), test_size=spec.split.test_size, random_state=spec.split.seed, stratify=y
            )
        tr, te, fold = fit_rows(spec, df, random_split)
        y_tr, y_te = y[tr], y[te]
        n_val = int((fold == 0).sum()) if fold is not None else 0
        info = {
            "train_rows": len(y_tr) - n_val,
            "val_rows": n_val,
            "test_rows": len(y_te),
            "positive_rate_train": float(y_tr.mean()),
            "positive_rate_test": float(y_te.mean()),
        }
        return Prepared(
            (X.iloc[tr].reset_index(drop=True), y_tr, fold),
            (X.iloc[te].reset_index(drop=True), y_te),
            info,
            self.label_names(spec, df[spec.target]),
            self.test_keys(spec, df, te),
        )

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
                fill = (
                    {"strategy": "most_frequent"}
                    if imp.categorical == "most_frequent"
                    else {"strategy": "constant", "fill_value": "missing"}
                )
                categorical.insert(0, SimpleImputer(**fill, add_indicator=imp.indicator))
            parts = [numbers, ("categorical", make_pipeline(*categorical), spec.features.categorical)]
        opts = self.options(spec)
        if spec.features.text and opts.text_features != "sentences":
            tfidf = TfidfVectorizer(
                ngram_range=(1, 2), min_df=2, max_features=opts.text_max_features, sublinear_tf=True
            )
            parts.append(("text", tfidf, spec.features.text))  # a column name, not a list: TF-IDF takes 1-D text
        if spec.features.text and opts.text_features != "tfidf":
            from modelmill.learn.kinds.sentences import SentenceEncoder

            parts.append(("sentences", SentenceEncoder(opts.encoder_sha256), [spec.features.text]))
        return ColumnTransformer(parts, sparse_threshold=0.0)

    def build(self, c, spec: PipelineSpec):
        model = super().build(c, spec)
        cats = spec.features.categorical
        if (
            self.options(spec).categorical_encoding == "native"
            and c.estimator == "hist_gradient_boosting"
            and cats
            and "categorical_features" not in c.params
        ):
            model.set_params(categorical_features=list(range(len(cats))))  # the featurizer puts them first
        return model

    def _threshold_scorer(self, spec: PipelineSpec):
        opts = self.options(spec)
        if opts.threshold == "cost":
            fn, fp = opts.cost.false_negative, opts.cost.false_positive
            return make_scorer(negative_cost, response_method="predict", false_negative=fn, false_positive=fp)
        return opts.threshold

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        X, y, fold = data.train
        cv = selection_cv(spec, fold)

        def build(c):
            return Pipeline([("features", self.featurizer(spec)), ("model", self.build(c, spec))])

        opts = self.options(spec)
        fixed = opts.threshold == "fixed"
        best_name, model, table, chosen = grid_select(
            spec, build, X, y, cv=cv, scoring=self.SCORERS[spec.metric.name], fit=fixed
        )
        weighted = model.named_steps["model"].get_params().get("class_weight") is not None
        if opts.calibration != "none" and (weighted or opts.calibration != "auto"):
            # Class weights move the probabilities off the base rate: calibrated on held-out rows of training.
            model = Calibrated(model, opts.calibration, cv, spec.split.seed)
            if fixed:
                model.fit(X, y)
        if not fixed:
            # Decision threshold chosen on the same validation rows (or CV folds) as the model, never on test;
            # the tuner fits the model on all training rows itself.
            model = TunedThresholdClassifierCV(
                model, scoring=self._threshold_scorer(spec), cv=cv, random_state=spec.split.seed
            )
            model.fit(X, y)
        baseline = self.fit_baseline(spec, build, X, y)
        threshold = float(getattr(model, "best_threshold_", 0.5))
        calibrated = model if isinstance(model, Calibrated) else getattr(model, "estimator_", None)
        params = {"decision_threshold": round(threshold, 6), "calibration": getattr(calibrated, "method_", "none")}
        params |= {f"calibration.oof_brier.{k}": round(v, 6) for k, v in getattr(calibrated, "briers_", {}).items()}
        return Trained(model, baseline, best_name, table, params, chosen)

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        X, y = data.test
        p = model.predict_proba(X)[:, 1]
        yhat = model.predict(X)
        opts = self.options(spec)
        cost = (opts.cost.false_negative, opts.cost.false_positive) if opts.cost else None
        out = binary_metrics(y, p, yhat, cost)
        out["decision_threshold"] = float(getattr(model, "best_threshold_", 0.5))
        out["mean_probability"], out["positive_rate"] = float(p.mean()), float(np.mean(y))
        return out

    def warnings(self, spec: PipelineSpec, metrics: dict[str, float]) -> list[str]:
        """Said plainly when the probabilities are scores, not probabilities: worse Brier than the
        base rate's, or a mean far from it (class weights without calibration do that)."""
        rate, mean, brier = metrics.get("positive_rate"), metrics.get("mean_probability"), metrics.get("brier")
        if rate is None or mean is None or brier is None:
            return []
        prior = rate * (1 - rate)  # the Brier score of always answering the base rate
        if brier <= prior and abs(mean - rate) <= 0.1:
            return []
        return [
            f"the probabilities are scores, not probabilities: their test mean is {mean:.2f} against a base rate of {rate:.2f}, "
            f"Brier {brier:.3f} against the base rate's {prior:.3f}; rank and threshold with them, do not read them as chances "
            "(options.calibration: sigmoid or isotonic calibrates them)"
        ]

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        X, y = data.test
        p = trained.model.predict_proba(X)[:, 1]
        figs = binary_plots(y, p, trained.model.predict(X), self.label_display(spec, data.labels), spec.name)
        scored = pd.DataFrame({"y_true": y, "p_positive": np.round(p, 6), "y_pred": trained.model.predict(X)})
        if data.test_keys is not None:  # which row each prediction is of
            scored = pd.concat([data.test_keys.reset_index(drop=True), scored], axis=1)
        return figs, {"test_predictions.csv": scored}

    SHAP = True

    def importance_input(self, spec: PipelineSpec, data: Prepared):
        X, y = data.test
        return X, y, self.SCORERS[spec.metric.name], None

    def examples(self, model, data: Prepared):
        X = data.test[0].head(5)
        return X, model.predict_proba(X)


class Calibrated(ClassifierMixin, BaseEstimator):
    """A binary classifier whose positive-class probability is mapped by a calibrator fitted on
    its held-out probabilities on the training rows (each ``cv`` split's test rows, predicted by
    a copy fitted on the rest), as scikit-learn's ``CalibratedClassifierCV(ensemble=False)``
    does; ``method="auto"`` picks none, sigmoid or isotonic by the held-out Brier score (a
    nested 5-fold split of those rows). The estimator itself is then fitted on every row."""

    def __init__(self, estimator, method: str = "auto", cv=5, random_state: int | None = None):
        self.estimator, self.method, self.cv, self.random_state = estimator, method, cv, random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags = get_tags(self.estimator).input_tags  # it takes what the wrapped model takes
        return tags

    def fit(self, X, y):
        from sklearn.base import clone
        from sklearn.metrics import brier_score_loss
        from sklearn.model_selection import StratifiedKFold, check_cv, cross_val_predict

        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if type_of_target(y) != "binary":
            raise ValueError(
                f"Only binary classification is supported; Calibrated got a {type_of_target(y)} ({len(np.unique(y))} classes)"
            )
        if not hasattr(X, "iloc"):  # a frame goes to the wrapped model as it is; anything else as rows it can index
            X = check_array(X, accept_sparse="csr", dtype=None, ensure_all_finite=False)
        held = np.full(len(y), np.nan)
        for tr, te in check_cv(self.cv, y, classifier=True).split(X, y):
            held[te] = (
                clone(self.estimator).fit(_safe_indexing(X, tr), y[tr]).predict_proba(_safe_indexing(X, te))[:, 1]
            )
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        tested = ~np.isnan(held)
        p, t = held[tested].reshape(-1, 1), (y[tested] == self.classes_[1]).astype(int)
        inner = StratifiedKFold(5, shuffle=True, random_state=self.random_state)
        methods = ["none", "sigmoid", "isotonic"] if self.method == "auto" else [self.method]
        self.briers_ = {
            m: float(
                brier_score_loss(
                    t,
                    p[:, 0]
                    if m == "none"
                    else cross_val_predict(_calibrator(m), p, t, cv=inner, method="predict_proba")[:, 1],
                )
            )
            for m in methods
        }
        self.method_ = min(self.briers_, key=self.briers_.get)
        self.calibrator_ = None if self.method_ == "none" else _calibrator(self.method_).fit(p, t)
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        p = self.estimator_.predict_proba(X)[:, 1]
        if self.calibrator_ is not None:
            p = self.calibrator_.predict_proba(p.reshape(-1, 1))[:, 1]
        return np.column_stack([1 - p, p])

    def predict(self, X):
        positive = self.predict_proba(X)[:, 1] >= 0.5
        return self.classes_[positive.astype(int)]


class _Calibrator(ClassifierMixin, BaseEstimator):
    """A score -> probability map, as a classifier (for ``cross_val_predict``): the scores are
    the first column, the target binary."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _fit_scores(self, p, y):
        """The score column and the target as 0/1 (``classes_`` holds the labels), checked."""
        p, y = validate_data(self, p, y)
        check_classification_targets(y)
        if type_of_target(y) != "binary":
            raise ValueError(f"Only binary classification is supported; a calibrator got a {type_of_target(y)} target")
        self.classes_, y01 = np.unique(y, return_inverse=True)
        return p[:, 0], y01

    def _scores(self, p):
        check_is_fitted(self)
        return validate_data(self, p, reset=False)[:, 0]

    def predict(self, p):
        positive = self.predict_proba(p)[:, 1] >= 0.5
        return self.classes_[positive.astype(int)]


class _Isotonic(_Calibrator):
    """Isotonic regression of the label on the score."""

    def fit(self, p, y):
        from sklearn.isotonic import IsotonicRegression

        s, y01 = self._fit_scores(p, y)
        self.iso_ = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y01)
        return self

    def predict_proba(self, p):
        s = self._scores(p)
        q = self.iso_.predict(s)
        return np.column_stack([1 - q, q])


class _Sigmoid(_Calibrator):
    """Platt scaling: a logistic regression of the label on the score's log-odds."""

    def fit(self, p, y):
        from sklearn.linear_model import LogisticRegression

        s, y01 = self._fit_scores(p, y)
        self.lr_ = LogisticRegression(C=1e6).fit(_logit(s).reshape(-1, 1), y01)
        return self

    def predict_proba(self, p):
        s = self._scores(p)
        return self.lr_.predict_proba(_logit(s).reshape(-1, 1))


def _logit(p):
    q = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def _calibrator(method: str):
    return {"sigmoid": _Sigmoid, "isotonic": _Isotonic}[method]()
