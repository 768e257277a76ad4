"""Tabular multiclass classification: a target of three or more classes (at most
:data:`MAX_CLASSES`) from the tabular featurizer.

The labels are the data's own: each class is coded by its place among the sorted label texts,
and the model answers every class's probability. Candidates are selected by stratified k-fold
CV on the primary metric (macro-F1, accuracy, log loss or one-vs-rest ROC AUC); there is no
decision threshold (the most probable class is the answer). A candidate that weights its classes
(``class_weight``) moves its probabilities off the class shares, so, as for binary tables, it is
calibrated on held-out training rows (scikit-learn's ``CalibratedClassifierCV``, one model
refitted on every row), and the run says plainly when the test probabilities are scores rather
than chances.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.evaluation import confusion_figure, multiclass_tables
from modelmill.learn.kinds.base import Prepared, ProblemKind, Trained
from modelmill.learn.kinds.estimators import pick
from modelmill.learn.kinds.selection import fit_rows, grid_select, selection_cv
from modelmill.learn.kinds.tabular import FeatureOptions, TabularClassification

#: more classes than this is not a table's class column (an id, a free label): refused at the gate
MAX_CLASSES = 50
SCORERS = {"macro_f1": "f1_macro", "accuracy": "accuracy", "log_loss": "neg_log_loss", "roc_auc_ovr": "roc_auc_ovr"}


class TabularMulticlass(TabularClassification):
    """The tabular kind with three or more classes."""

    name = "tabular_multiclass"
    Options = FeatureOptions
    METRICS = {"macro_f1": "maximize", "accuracy": "maximize", "log_loss": "minimize", "roc_auc_ovr": "maximize"}
    HEADLINE = ("accuracy", "log_loss", "balanced_accuracy")
    SCORERS = SCORERS
    ESTIMATORS = pick(
        "dummy_prior",
        "dummy_most_frequent",
        "logistic_regression",
        "hist_gradient_boosting",
        "random_forest",
        "logit_forest_vote",
    )

    def check_spec(self, spec: PipelineSpec) -> None:
        ProblemKind.check_spec(self, spec)
        if spec.target is None:
            raise SpecError(f"pipeline {spec.name}: tabular multiclass classification needs `target`")
        if spec.positive_label is not None:
            raise SpecError(
                f"pipeline {spec.name}: positive_label names a binary problem's positive class; "
                "with three or more classes every class is answered (problem: tabular_classification for two)"
            )
        self.require_split(spec, "stratified", "predefined")
        self.check_features(spec)

    def shap_applies(self, spec: PipelineSpec) -> bool:
        return False  # one set of values per class: permutation importance says what drives the decision

    def label_names(self, spec: PipelineSpec, labels: pd.Series) -> tuple:
        """Every class as the data writes it, in code order (sorted by their text)."""
        values = {str(v): (v.item() if hasattr(v, "item") else v) for v in pd.unique(labels.dropna())}
        return tuple(values[k] for k in sorted(values))

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        X = self.model_input(spec, df)
        labels = self.label_names(spec, df[spec.target])
        if not 3 <= len(labels) <= MAX_CLASSES:
            raise SpecError(
                f"pipeline {spec.name}: target {spec.target} has {len(labels)} classes; the multiclass kind takes 3 to {MAX_CLASSES}"
                + (" (two: problem tabular_classification with a positive_label)" if len(labels) == 2 else "")
            )
        codes = {str(v): i for i, v in enumerate(labels)}
        y = df[spec.target].astype("str").map(codes).to_numpy(dtype=int)
        random_split = None
        if spec.split.method != "predefined":
            random_split = train_test_split(
                np.arange(len(df)), test_size=spec.split.test_size, random_state=spec.split.seed, stratify=y
            )
        tr, te, fold = fit_rows(spec, df, random_split)
        n_val = int((fold == 0).sum()) if fold is not None else 0
        info = {"train_rows": len(tr) - n_val, "val_rows": n_val, "test_rows": len(te), "classes": len(labels)}
        return Prepared(
            (X.iloc[tr].reset_index(drop=True), y[tr], fold),
            (X.iloc[te].reset_index(drop=True), y[te]),
            info,
            labels,
            self.test_keys(spec, df, te),
        )

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        X, y, fold = data.train
        cv = selection_cv(spec, fold)

        def build(c):
            return Pipeline([("features", self.featurizer(spec)), ("model", self.build(c, spec))])

        best_name, model, table, chosen = grid_select(spec, build, X, y, cv=cv, scoring=self.SCORERS[spec.metric.name])
        calibration = "none"
        if model.named_steps["model"].get_params().get("class_weight") is not None:
            # Class weights move the probabilities off the class shares: calibrated on held-out training rows.
            model = CalibratedClassifierCV(model, method="sigmoid", cv=cv, ensemble=False).fit(X, y)
            calibration = "sigmoid"
        baseline = self.fit_baseline(spec, build, X, y)
        return Trained(model, baseline, best_name, table, {"calibration": calibration}, chosen)

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        X, y = data.test
        classes = np.arange(len(data.labels)) if data.labels else np.unique(y)
        proba = np.asarray(model.predict_proba(X))
        yhat = np.asarray(model.predict(X))
        onehot = (y[:, None] == classes[None, :]).astype(float)
        out = {
            "accuracy": skm.accuracy_score(y, yhat),
            "balanced_accuracy": skm.balanced_accuracy_score(y, yhat),
            "macro_f1": skm.f1_score(y, yhat, average="macro", labels=classes, zero_division=0),
            "weighted_f1": skm.f1_score(y, yhat, average="weighted", labels=classes, zero_division=0),
            "log_loss": skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes),
            "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
            "roc_auc_ovr": skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            if len(np.unique(y)) == len(classes)
            else float("nan"),
            "max_share_gap": float(np.max(np.abs(proba.mean(axis=0) - onehot.mean(axis=0)))),
        }
        recall = skm.recall_score(y, yhat, average=None, labels=classes, zero_division=0)
        names = data.labels or tuple(classes)
        out |= {f"recall.{names[i]}": float(r) for i, r in enumerate(recall)}
        return {k: float(v) for k, v in out.items()}

    def warnings(self, spec: PipelineSpec, metrics: dict[str, float]) -> list[str]:
        """Said plainly when the probabilities are scores: a class's mean probability more than 0.1
        from its share of the test rows."""
        gap = metrics.get("max_share_gap")
        if gap is None or gap <= 0.1:
            return []
        return [
            f"the probabilities are scores, not probabilities: a class's mean test probability is {gap:.2f} from its share "
            "of the test rows; rank with them, do not read them as chances"
        ]

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        X, y = data.test
        yhat = np.asarray(trained.model.predict(X))
        names = list(data.labels)
        figs = {
            "confusion_matrix.png": confusion_figure(
                y, yhat, list(range(len(names))), [str(n) for n in names], spec.name
            )
        }
        as_names = np.asarray(names, dtype=object)
        tables = multiclass_tables(as_names[y], as_names[yhat])
        proba = np.asarray(trained.model.predict_proba(X))
        scored = pd.DataFrame({"y_true": as_names[y], "y_pred": as_names[yhat]})
        for i, n in enumerate(names):
            scored[f"p_{n}"] = np.round(proba[:, i], 6)
        if data.test_keys is not None:
            scored = pd.concat([data.test_keys.reset_index(drop=True), scored], axis=1)
        return figs, tables | {"test_predictions.csv": scored}
