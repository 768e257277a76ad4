"""Code per problem kind, not per domain: each kind owns its split, featurizers, candidates and
evaluator, and serves every spec of that kind."""

from __future__ import annotations

import importlib

from modelmill.learn.kinds.base import ProblemKind

_MODULES = {
    "tabular_classification": ("modelmill.learn.kinds.tabular", "TabularClassification"),
    "tabular_regression": ("modelmill.learn.kinds.regression", "TabularRegression"),
    "tabular_multiclass": ("modelmill.learn.kinds.multiclass", "TabularMulticlass"),
    "forecasting": ("modelmill.learn.kinds.forecasting", "Forecasting"),
    "image_classification": ("modelmill.learn.kinds.image", "ImageClassification"),
    "text_classification": ("modelmill.learn.kinds.text", "TextClassification"),
    "recommendation": ("modelmill.learn.kinds.recommendation", "Recommendation"),
}


def kind_module(name: str) -> str:
    """The module that holds the code of problem kind ``name``."""
    return _MODULES[name][0]


def get_kind(name: str) -> ProblemKind:
    module, cls = _MODULES[name]
    return getattr(importlib.import_module(module), cls)()
