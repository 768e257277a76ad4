"""Text classification: word + character TF-IDF with linear models.

One code path for multiclass intents (banking77) and binary sentiment; binary specs (with a
``positive_label``) also get ROC AUC, and ``options.slices`` names a column whose values get
their own slice metrics (e.g. the review's source site).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn import metrics as skm
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.evaluation import binary_plots, confusion_figure, figure, multiclass_tables
from modelmill.learn.kinds.base import Evaluation, KindOptions, Prepared, ProblemKind, Trained
from modelmill.learn.kinds.estimators import pick
from modelmill.learn.kinds.neural import GRUTextClassifier, training_curves
from modelmill.learn.kinds.selection import fit_rows, grid_select, selection_cv
from modelmill.learn.kinds.sentences import FineTunedSentenceClassifier, SentenceTfidfClassifier
from modelmill.learn.kinds.text_features import TextColumn, featurizer

log = logging.getLogger("modelmill.train")


class TextOptions(KindOptions):
    slices: str | None = Field(None, description="column whose values get slice metrics")
    char_ngrams: tuple[int, int] = Field((2, 5), description="shortest and longest character n-grams of the TF-IDF")
    word_ngrams: tuple[int, int] = Field((1, 2), description="shortest and longest word n-grams of the TF-IDF")
    min_df: int = Field(2, ge=1, description="a term in fewer training texts than this is left out")
    encoder_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="the digest of every file of the sentence encoder's folder when MODELMILL_TEXT_ENCODER names your own (an unpinned folder is a spec error that prints it; the shipped all-MiniLM-L6-v2 is pinned already)",
        examples=["59c8239675df4af602eecc13ecd09f966b2fbb8263dba7a3ea1edd3dde10ed07"],
    )


class TfidfGRUEnsemble(ClassifierMixin, BaseEstimator):
    """Soft vote of two views of the raw texts: word+char TF-IDF with logistic regression, and
    the bi-GRU. The GRU's share of the averaged class probabilities is chosen among ``weights``
    on the GRU's own early-stopping rows, with a TF-IDF model fitted without them; the TF-IDF
    model is then refit on every row, starting from the held-out model's weights."""

    consumes = "text"
    label = "tfidf+gru"
    holds_a_network = True  # its GRU (see TorchEstimator)

    def __init__(
        self,
        weights=(0.2, 0.3, 0.4, 0.5, 0.6),
        C=10.0,
        word_ngrams=(1, 2),
        char_ngrams=(2, 5),
        min_df=2,
        gru=None,
        seed=0,
    ):
        self.weights, self.C, self.word_ngrams, self.char_ngrams, self.min_df, self.gru, self.seed = (
            weights,
            C,
            word_ngrams,
            char_ngrams,
            min_df,
            gru,
            seed,
        )

    def _tfidf(self, X, y, start: Pipeline | None = None) -> Pipeline:
        """TF-IDF + logistic regression on ``X``; with ``start`` (the same model fitted on part of
        these rows), the solver starts from its weights: same optimum, a third of the iterations."""
        features = featurizer(self.word_ngrams, self.char_ngrams, self.min_df)
        Z = features.fit_transform(X)
        model = LogisticRegression(C=self.C, max_iter=5000)
        if start is not None and np.array_equal(start.named_steps["model"].classes_, np.unique(y)):
            model.set_params(warm_start=True)
            model.coef_, model.intercept_ = _weights_on(start, features), start.named_steps["model"].intercept_.copy()
        model.fit(Z, y).set_params(warm_start=False)
        return Pipeline([("features", features), ("model", model)])

    def fit(self, X, y):
        X, y = np.asarray(X, dtype=object), np.asarray(y)
        check_classification_targets(y)
        self.gru_ = GRUTextClassifier(**{"seed": self.seed, **(self.gru or {})}).fit(X, y)
        va = self.gru_.valid_index_
        rest = np.setdiff1d(np.arange(len(y)), va)
        held_out = self._tfidf(X[rest], y[rest])
        p_tfidf, p_gru = held_out.predict_proba(X[va]), self.gru_.predict_proba(X[va])
        accuracy = {
            w: float(np.mean(self.gru_.classes_[((1 - w) * p_tfidf + w * p_gru).argmax(1)] == y[va]))
            for w in self.weights
        }
        self.weight_ = max(accuracy, key=lambda w: (accuracy[w], -w))
        log.info(
            "tfidf+gru: GRU weight %.2f (validation accuracy %s)",
            self.weight_,
            ", ".join(f"{w:g}: {a:.4f}" for w, a in accuracy.items()),
        )
        self.tfidf_ = self._tfidf(X, y, start=held_out)
        self.classes_ = self.tfidf_.classes_
        self.history_ = self.gru_.history_
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return (1 - self.weight_) * self.tfidf_.predict_proba(X) + self.weight_ * self.gru_.predict_proba(X)

    def predict(self, X):
        best = self.predict_proba(X).argmax(1)
        return self.classes_[best]


def _weights_on(fitted: Pipeline, features: FeatureUnion) -> np.ndarray:
    """``fitted``'s coefficients laid out on ``features``' columns, by n-gram (a vocabulary built on
    more rows holds every n-gram of one built on fewer; an n-gram it lacks starts at 0)."""
    coef = fitted.named_steps["model"].coef_
    column = {name: i for i, name in enumerate(features.get_feature_names_out())}
    old = fitted.named_steps["features"].get_feature_names_out()
    kept = np.fromiter((name in column for name in old), bool, len(old))
    weights = np.zeros((coef.shape[0], len(column)), dtype=coef.dtype)
    weights[:, [column[name] for name in old[kept]]] = coef[:, kept]
    return weights


def _scores(model, X) -> np.ndarray:
    """Class scores (probabilities where the model has them, else decision values)."""
    if hasattr(model, "predict_proba"):
        try:
            return model.predict_proba(X)
        except AttributeError:
            pass
    s = model.decision_function(X)
    return s if s.ndim == 2 else np.column_stack([-s, s])


class TextClassification(ProblemKind):
    name = "text_classification"
    Options = TextOptions
    METRICS = {"accuracy": "maximize", "macro_f1": "maximize", "f1": "maximize", "roc_auc": "maximize"}
    HEADLINE = ("accuracy", "macro_f1")
    EXAMPLE_ROWS = True
    ROW_MODEL = True
    FEATURES = ("text",)
    ESTIMATORS = pick(
        "dummy_most_frequent", "dummy_prior", "logistic_regression", "linear_svc", "sgd", "complement_nb",
        gru=lambda seed, **p: GRUTextClassifier(**{"seed": seed, **p}),
        tfidf_gru_ensemble=lambda seed, **p: TfidfGRUEnsemble(**{"seed": seed, **p}),
        sentences_linear_svc=lambda seed, **p: SentenceTfidfClassifier(**{"estimator": "linear_svc", "seed": seed, **p}),
        sentences_logistic_regression=lambda seed, **p: SentenceTfidfClassifier(**{"estimator": "logistic_regression", "seed": seed, **p}),
        sentences_finetuned=lambda seed, **p: FineTunedSentenceClassifier(**{"seed": seed, **p}),
    )  # fmt: skip

    def check_spec(self, spec: PipelineSpec) -> None:
        super().check_spec(spec)
        if not spec.features.text or spec.target is None:
            raise SpecError(f"pipeline {spec.name}: text classification needs features.text and target")
        self.require_split(spec, "stratified", "predefined")
        if spec.metric.name in {"f1", "roc_auc"} and spec.positive_label is None:
            raise SpecError(f"pipeline {spec.name}: metric {spec.metric.name} needs a positive_label (binary)")
        if any(c.estimator.startswith("sentences_") for c in spec.candidates):
            from modelmill.learn.kinds.sentences import encoder_folder

            encoder_folder(
                self.options(spec).encoder_sha256
            )  # no encoder, or an unpinned one: a spec error before any data is read

    def featurizer(self, spec: PipelineSpec) -> FeatureUnion:
        o = self.options(spec)
        return featurizer(o.word_ngrams, o.char_ngrams, o.min_df)

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        opts = self.options(spec)
        text = self.model_input(spec, df)
        if spec.positive_label is not None:
            y = (df[spec.target].astype(str) == str(spec.positive_label)).astype(int).to_numpy()
        else:
            y = df[spec.target].astype(str).to_numpy()
        groups = df[opts.slices].astype(str).to_numpy() if opts.slices else np.full(len(df), "all")
        random_split = None
        if spec.split.method != "predefined":
            parts = train_test_split(
                np.arange(len(df)),
                test_size=spec.split.test_size,
                random_state=spec.split.seed,
                stratify=y,  # the label only: a reporting option (slices) never moves the split
            )
            random_split = tuple(np.sort(p) for p in parts)  # rows stay in file order
        tr, te, fold = fit_rows(spec, df, random_split)
        n_val = int((fold == 0).sum()) if fold is not None else 0
        info = {"train_rows": len(tr) - n_val, "val_rows": n_val, "test_rows": len(te), "classes": len(np.unique(y))}
        labels = self.label_names(spec, df[spec.target]) if spec.positive_label is not None else ()
        return Prepared(
            (text.iloc[tr].reset_index(drop=True), y[tr], fold),
            (text.iloc[te].reset_index(drop=True), y[te], groups[te]),
            info,
            labels,
            self.test_keys(spec, df, te),
        )

    def _scoring(self, spec: PipelineSpec) -> str:
        return {"accuracy": "accuracy", "macro_f1": "f1_macro", "f1": "f1", "roc_auc": "roc_auc"}[spec.metric.name]

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        X, y, fold = data.train
        cv = selection_cv(spec, fold)
        col, o = spec.features.text, self.options(spec)

        def build(c):
            model = self.build(c, spec)
            if isinstance(model, TfidfGRUEnsemble | SentenceTfidfClassifier):
                model.set_params(word_ngrams=tuple(o.word_ngrams), char_ngrams=tuple(o.char_ngrams), min_df=o.min_df)
            if isinstance(model, SentenceTfidfClassifier | FineTunedSentenceClassifier):
                model.set_params(encoder_sha256=o.encoder_sha256)
            if getattr(model, "consumes", None) == "text":  # networks read the raw texts
                return Pipeline([("text", TextColumn(col)), ("model", model)])
            return Pipeline([("text", TextColumn(col)), ("features", self.featurizer(spec)), ("model", model)])

        best_name, best, table, chosen = grid_select(spec, build, X, y, cv=cv, scoring=self._scoring(spec))
        baseline = self.fit_baseline(spec, build, X, y)
        return Trained(best, baseline, best_name, table, {}, chosen)

    def importance_input(self, spec: PipelineSpec, data: Prepared):
        X, y, _ = data.test
        return X, y, self._scoring(spec), None

    def _core(self, spec: PipelineSpec, model, X, y) -> dict[str, float]:
        yhat = model.predict(X)
        out = {
            "accuracy": skm.accuracy_score(y, yhat),
            "macro_f1": skm.f1_score(y, yhat, average="macro", zero_division=0),
            "weighted_f1": skm.f1_score(y, yhat, average="weighted", zero_division=0),
        }
        if spec.positive_label is not None:
            s = _scores(model, X)[:, 1]
            out["f1"] = skm.f1_score(y, yhat, zero_division=0)
            out["roc_auc"] = skm.roc_auc_score(y, s) if len(np.unique(y)) == 2 else float("nan")
        return {k: float(v) for k, v in out.items()}

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        X, y, groups = data.test
        out = self._core(spec, model, X, y)
        if self.options(spec).slices:
            for g in sorted(set(groups)):
                m = groups == g
                out |= {
                    f"{k}.{g}": v
                    for k, v in self._core(spec, model, X[m], y[m]).items()
                    if k in {"accuracy", "f1", "roc_auc", "macro_f1"}
                }
        return out

    def evaluate(self, spec: PipelineSpec, trained: Trained, data: Prepared) -> Evaluation:
        """Each test text goes through the model (and the baseline) once for each way it
        answers (labels, probabilities); the metrics, the slices and the figures replay those
        answers (a fine-tuned encoder would otherwise read the test split again for each)."""
        from modelmill.learn.explain import Replay

        X = data.test[0]
        replayed = replace(trained, model=Replay(trained.model, X).fit(), baseline=Replay(trained.baseline, X).fit())
        ev = super().evaluate(spec, replayed, replace(data, test=(np.arange(len(X)), *data.test[1:])))
        if (curves := training_curves(trained.model, spec.name)) is not None:
            ev.figures["training_curves.png"] = curves
        return ev

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        X, y, groups = data.test
        model = trained.model
        yhat = model.predict(X)
        if spec.positive_label is not None:
            s = _scores(model, X)[:, 1]
            figs = binary_plots(
                y,
                s,
                yhat,
                self.label_display(spec, data.labels),
                spec.name,
                calibration=bool(((s >= 0) & (s <= 1)).all()),
            )
            tables = {}
            if self.options(spec).slices:
                rows = [
                    {
                        "slice": g,
                        **self._core(spec, model, X[groups == g], y[groups == g]),
                        "rows": int((groups == g).sum()),
                    }
                    for g in sorted(set(groups))
                ]
                tables["slice_metrics.csv"] = pd.DataFrame(rows)
            return figs, tables
        labels = sorted(set(y))
        tables = multiclass_tables(y, yhat)
        figs = {"confusion_matrix.png": confusion_figure(y, yhat, labels, labels, spec.name)}
        per = tables["per_class_f1.csv"]
        fig, ax = figure(8, max(6, 0.16 * len(per)))
        ax.barh(per["label"], per["f1"])
        ax.set_xlabel("F1 on the test split")
        ax.set_title(f"{spec.name}: F1 per class")
        ax.tick_params(axis="y", labelsize=6)
        fig.tight_layout()
        figs["per_class_f1.png"] = fig
        return figs, tables

    def examples(self, model, data: Prepared):
        X = data.test[0].head(5)
        return X, model.predict(X)
