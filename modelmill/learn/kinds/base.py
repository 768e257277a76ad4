"""The contract every problem kind fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from modelmill.config.spec import Candidate, PipelineSpec
from modelmill.errors import SpecError


class KindOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Prepared:
    """The data a kind trains and evaluates on: its own train/test representation."""

    train: Any
    test: Any
    info: dict[str, Any] = field(default_factory=dict)
    #: a binary classifier's (negative, positive) labels as the data writes them (its 0 and 1)
    labels: tuple = ()
    #: which rows are the test split: their row in the snapshot (and roles.id), or their keys
    test_keys: pd.DataFrame | None = None
    #: the test rows' slice of each spec ``slices`` column (filled by the train stage)
    test_slices: pd.DataFrame | None = None
    #: the test rows as the snapshot holds them, every column (filled by the train stage for kinds
    #: of example rows): what promotion matches against the champion's training rows
    test_rows: pd.DataFrame | None = None


@dataclass
class Trained:
    model: Any
    baseline: Any
    best: str
    selection: pd.DataFrame  # one row per candidate: name, best params, CV score
    params: dict[str, Any] = field(default_factory=dict)
    #: the chosen candidate's hyperparameters: its fixed params merged with the best grid point
    hyperparams: dict[str, Any] = field(default_factory=dict)
    #: wall seconds the kind took to train (selection, refit and baseline)
    seconds: float = 0.0


@dataclass
class Evaluation:
    metric: str
    primary: float
    baseline_primary: float
    metrics: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: the kind's other headline figures (e.g. skill and DM p for forecasts), shown beside the metric
    headline: dict[str, float] = field(default_factory=dict)
    #: what a reader of the figures must not miss, one sentence each (the run summary says them)
    warnings: list[str] = field(default_factory=list)
    #: per-slice test metrics (spec ``slices``) and each slice column's largest gap of the primary metric
    slices: pd.DataFrame | None = None
    slice_gaps: dict[str, float] = field(default_factory=dict)
    #: permutation importance and mean |SHAP| per source column (explain stage)
    importance: pd.DataFrame | None = None
    shap_importance: pd.DataFrame | None = None

    @property
    def lift(self) -> float:
        return self.metrics["lift_over_baseline"]


class ProblemKind(ABC):
    name: ClassVar[str]
    Options: ClassVar[type[KindOptions]] = KindOptions
    #: metric name -> direction; the spec's primary metric must be one of them.
    METRICS: ClassVar[dict[str, str]] = {}
    #: test metrics worth a glance beside the primary one (summary table, run name, MLflow's
    #: ``_primary/`` metrics); those a run does not produce are left out.
    HEADLINE: ClassVar[tuple[str, ...]] = ()
    #: one row is one labelled example: the gate checks the target's classes, and repeated rows
    #: are de-duplicated (or rejected) before the split so none sits on both sides of it.
    EXAMPLE_ROWS: ClassVar[bool] = False
    #: the target holds classes: the gate checks there are two or more, each with enough rows
    TARGET_CLASSES: ClassVar[bool] = True
    #: the kind's featurizer fills missing values as the spec's ``impute`` says
    IMPUTES: ClassVar[bool] = False
    #: estimator name -> factory(seed, **params) of an unfitted estimator.
    ESTIMATORS: ClassVar[dict[str, Any]] = {}
    #: the feature groups (``features.<group>``) the kind reads; declaring another is a spec error
    FEATURES: ClassVar[tuple[str, ...]] = ()

    def options(self, spec: PipelineSpec) -> KindOptions:
        try:
            return self.Options(**spec.options)
        except ValidationError as e:
            first = e.errors()[0]
            raise SpecError(f"pipeline {spec.name}: options.{'.'.join(map(str, first['loc']))}: {first['msg']}") from e

    def check_spec(self, spec: PipelineSpec) -> None:
        """Kind-level checks of a spec (metric, estimators, options), before any data is read."""
        if spec.metric.name not in self.METRICS:
            raise SpecError(f"pipeline {spec.name}: metric {spec.metric.name!r} is not one of {sorted(self.METRICS)}")
        if self.METRICS[spec.metric.name] != spec.metric.direction:
            raise SpecError(
                f"pipeline {spec.name}: metric {spec.metric.name} is to {self.METRICS[spec.metric.name]}, not {spec.metric.direction}"
            )
        for c in [spec.baseline, *spec.candidates]:
            if c.estimator not in self.ESTIMATORS:
                raise SpecError(
                    f"pipeline {spec.name}: unknown estimator {c.estimator!r} for {self.name} (known: {sorted(self.ESTIMATORS)})"
                )
        self.options(spec)
        unused = [
            g
            for g in ("numeric", "categorical", "text", "image")
            if getattr(spec.features, g) and g not in self.FEATURES
        ]
        if unused:
            raise SpecError(
                f"pipeline {spec.name}: {self.name} cannot use features.{', features.'.join(unused)} (it reads {', '.join(f'features.{g}' for g in self.FEATURES) or 'no declared features'})"
            )
        if spec.impute != type(spec.impute)() and not self.IMPUTES:
            raise SpecError(f"pipeline {spec.name}: `impute` is for tabular features; {self.name} cannot use it")

    def require_split(self, spec: PipelineSpec, *methods: str) -> None:
        """The split methods this kind honours; any other is a spec error, never ignored."""
        if spec.split.method not in methods:
            raise SpecError(
                f"pipeline {spec.name}: {self.name} splits by {' or '.join(methods)}, not {spec.split.method}"
            )
        if spec.split.method == "predefined" and not spec.split.column:
            raise SpecError(
                f"pipeline {spec.name}: split.method predefined needs split.column (values train / val / test)"
            )

    def build(self, c: Candidate, spec: PipelineSpec):
        """An unfitted estimator for a candidate (scikit-learn contract: params in __init__)."""
        try:
            return self.ESTIMATORS[c.estimator](spec.split.seed, **c.params)
        except TypeError as e:
            raise SpecError(f"pipeline {spec.name}: candidate {c.name}: {e}") from e

    def may_hold_a_network(self, spec: PipelineSpec) -> bool:
        """Whether a model of this spec (its baseline or any candidate) can hold a PyTorch network,
        the one thing its stored model may be a pickle for."""
        for c in [spec.baseline, *spec.candidates]:
            model = self.build(c, spec)
            parts = [model, *model.get_params(deep=True).values()] if hasattr(model, "get_params") else [model]
            if any(getattr(p, "holds_a_network", False) is True for p in parts):
                return True
        return False

    def fit_baseline(self, spec: PipelineSpec, pipeline, X, y):
        """The spec's baseline, fitted. ``pipeline(candidate)`` is the kind's featurizer and model;
        a baseline that predicts from the labels alone (scikit-learn's dummies) is fitted without
        the featurizer, which would only turn every training row into features it never reads."""
        from sklearn.dummy import DummyClassifier, DummyRegressor
        from sklearn.pipeline import Pipeline

        model = self.build(spec.baseline, spec)
        if isinstance(model, DummyClassifier | DummyRegressor):
            return Pipeline([("model", model)]).fit(X, y)
        return pipeline(spec.baseline).fit(X, y)

    def grid_points(self, spec: PipelineSpec):
        """Every (candidate, grid point, unfitted estimator) of the spec, for kinds that cannot
        use GridSearchCV (walk-forward or temporal validation)."""
        from sklearn.model_selection import ParameterGrid

        for c in spec.candidates:
            for params in ParameterGrid(c.grid or {}):
                yield c, params, self.build(c.model_copy(update={"params": {**c.params, **params}}), spec)

    #: the kind's models are explained with SHAP values per source column
    SHAP: ClassVar[bool] = False

    def shap_applies(self, spec: PipelineSpec) -> bool:
        """Whether the explain stage computes SHAP values for this spec's model."""
        return self.SHAP

    def importance_input(self, spec: PipelineSpec, data: Prepared):
        """``(X, y, scoring, groups)``: the test rows as the model takes them, the scikit-learn
        scorer permutation importance measures the drop of, and None (each source column of a
        frame shuffled on its own) or named groups of a matrix's columns shuffled together (an
        image's regions); None when the kind's model has no columns to shuffle (a recommender, a
        forecaster's own lags)."""
        return None

    def slice_metrics(self, spec: PipelineSpec, model, data: Prepared, mask: np.ndarray) -> dict[str, float]:
        """The kind's test metrics on the test rows in ``mask``."""
        idx = np.flatnonzero(mask)
        part = tuple(
            p.iloc[idx].reset_index(drop=True) if hasattr(p, "iloc") else np.asarray(p)[idx] for p in data.test
        )
        return self.metrics(spec, model, Prepared(data.train, part, data.info, data.labels))

    def trained_and_tested(self, data: Prepared) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """For a kind whose test set is not rows of the snapshot: what the model trains on and
        what it is tested on, as frames of the same columns (promotion then compares two models
        only on the test rows the champion did not train on, through :meth:`slice_metrics`).
        None for kinds that test on snapshot rows, and for kinds whose test refits each model on
        the past alone (a walk-forward backtest), where no model is ever graded on its training rows."""
        return None

    #: the kind's model scores one row at a time, from the feature columns
    ROW_MODEL: ClassVar[bool] = False

    def raw_rows(self, spec: PipelineSpec):
        """The step that types raw source rows as training did (:class:`RawRows`)."""
        from modelmill.learn.kinds.encoders import RawRows

        f = spec.features
        return RawRows(tuple(f.numeric), tuple(f.categorical), f.text, spec.source.thousands, spec.source.decimal)

    def model_input(self, spec: PipelineSpec, df: pd.DataFrame) -> pd.DataFrame:
        """The rows as the model takes them (typed as at training), for kinds whose model scores
        one row at a time; used by ``prepare`` and ``modelmill score``."""
        if not self.ROW_MODEL:
            raise NotImplementedError(f"{self.name} models are not scored row by row")
        return self.raw_rows(spec).transform(df)

    @staticmethod
    def test_keys(spec: PipelineSpec, df: pd.DataFrame, test) -> pd.DataFrame:
        """The test rows' keys: ``row``, the row in the run's snapshot (duplicates dropped before
        the split keep their snapshot row numbers), and the ``roles.id`` column when there is one."""
        source = df.attrs.get("source_rows")
        rows = source.rows if source is not None else np.arange(len(df))
        keys = pd.DataFrame({"row": rows[np.asarray(test)]})
        if (ident := spec.roles.get("id")) in df.columns:
            keys.insert(0, ident, df[ident].to_numpy()[np.asarray(test)])
        return keys

    def label_names(self, spec: PipelineSpec, labels: pd.Series) -> tuple:
        """(negative, positive) as the data writes them: the positive label, and the one other
        label of the training data (else the options' negative name)."""
        values = [v.item() if hasattr(v, "item") else v for v in pd.unique(labels.dropna())]
        others = [v for v in values if str(v) != str(spec.positive_label)]
        positive = next((v for v in values if str(v) == str(spec.positive_label)), spec.positive_label)
        return (
            others[0]
            if len(others) == 1
            else getattr(self.options(spec), "negative_label_name", None) or f"not {positive}"
        ), positive

    @staticmethod
    def label_display(spec: PipelineSpec, labels: tuple | list) -> tuple:
        """What a binary model's (negative, positive) labels are called in its answers: the spec's
        ``options.negative_label_name`` / ``positive_label_name`` where it gives them (``good`` and
        ``bad`` for German Credit's 1 and 2), else the labels as the data writes them; plots and
        the card use the same names. Other models' labels as they are."""
        labels = tuple(labels)
        if spec.positive_label is None or len(labels) != 2:
            return labels
        given = (spec.options.get("negative_label_name"), spec.options.get("positive_label_name"))
        return tuple(str(name) if name is not None else label for name, label in zip(given, labels, strict=True))

    def servable(self, spec: PipelineSpec, model):
        """The model as it is registered: for row models, with :meth:`raw_rows` as its first step,
        so both MLflow flavours take rows as they come from the source."""
        if not self.ROW_MODEL:
            return model
        from sklearn.pipeline import Pipeline

        return Pipeline([("raw_rows", self.raw_rows(spec)), ("model", model)])

    @abstractmethod
    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared: ...

    @abstractmethod
    def train(self, spec: PipelineSpec, data: Prepared) -> Trained: ...

    @abstractmethod
    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        """Test-split metrics of any fitted model of this kind (also used to score the champion)."""

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared) -> tuple[dict, dict]:
        """Figures and tables for the chosen model: ``({name.png: fig}, {name.csv: frame})``."""
        return {}, {}

    @abstractmethod
    def examples(self, model, data: Prepared) -> tuple[Any, Any]:
        """A model input example and the matching output, for the MLflow signature."""

    def score(self, spec: PipelineSpec, model, data: Prepared) -> float:
        return self.metrics(spec, model, data)[spec.metric.name]

    def warnings(self, spec: PipelineSpec, metrics: dict[str, float]) -> list[str]:
        """Plain-language warnings about the chosen model's test figures (none by default)."""
        return []

    def evaluate(self, spec: PipelineSpec, trained: Trained, data: Prepared) -> Evaluation:
        m = self.metrics(spec, trained.model, data)
        b = self.metrics(spec, trained.baseline, data)
        key = spec.metric.name
        lift = m[key] - b[key] if spec.metric.direction == "maximize" else b[key] - m[key]
        figures, tables = self.report(spec, trained, data)
        tables = {**tables, "model_selection.csv": trained.selection}
        merged = {**m, **{f"baseline_{k}": v for k, v in b.items()}, "lift_over_baseline": lift}
        headline = {h: m[h] for h in self.HEADLINE if h in m and h != key}
        return Evaluation(key, m[key], b[key], merged, figures, tables, headline, self.warnings(spec, m))
