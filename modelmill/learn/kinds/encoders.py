"""Categorical columns to numbers without a Python object per row.

scikit-learn's ``OneHotEncoder`` turns every column into an array of Python strings before it
encodes it: at 10M rows that is seconds and gigabytes per column, on every fit of a grid search.
:class:`CategoryEncoder` learns each column's sorted categories, then maps values to codes with
pandas' vectorised categorical machinery (a pandas categorical column — how a snapshot's declared
categorical columns are read — only has its small category list recoded). It outputs what
``OneHotEncoder(handle_unknown="ignore", sparse_output=False)`` outputs, bit for bit (a test
checks it), or, with ``output="ordinal"``, one code per column for trees that split on
categories natively (``HistGradientBoostingClassifier(categorical_features=...)``), as float32:
exact for up to 2^24 categories, and half the size beside the numeric features while they are
stacked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted


def _categories(values: pd.Series) -> list:
    """The sorted distinct values (missing values are a category of their own, last — as in
    ``OneHotEncoder``)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = values.cat.remove_unused_categories().cat.categories
        distinct, has_missing = list(present), bool(values.isna().any())
    else:
        uniques = pd.unique(values)
        has_missing = bool(pd.isna(uniques).any())
        distinct = [v for v in uniques if not pd.isna(v)]
    return [*sorted(distinct), *([np.nan] if has_missing else [])]


def _codes(values: pd.Series, categories: list) -> np.ndarray:
    """Each value's position in ``categories`` (missing: the NaN slot if learned; unknown: -1)."""
    known = [c for c in categories if not (isinstance(c, float) and np.isnan(c))]
    if values.dtype == "str" and all(isinstance(c, str) for c in known):  # Arrow-backed text: pyarrow's hash lookup
        import pyarrow as pa
        import pyarrow.compute as pc

        column = pa.array(values.array)  # the Arrow data itself (``__arrow_array__``), not a copy
        codes = (
            pc.index_in(column, value_set=pa.array(known, type=column.type)).fill_null(-1).to_numpy().astype(np.int32)
        )
    else:
        codes = pd.Categorical(values, categories=known).codes.astype(np.int32)
    if len(known) < len(categories):  # a learned missing-value category
        codes[np.asarray(values.isna())] = len(known)
    return codes


class CategoryEncoder(TransformerMixin, BaseEstimator):
    """One-hot (default) or ordinal codes of categorical columns; unknown values encode as all
    zeros (one-hot) or NaN (ordinal), so scoring never fails on a category it has not seen."""

    def __init__(self, output: str = "onehot"):
        self.output = output

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value is its own category (no code)
        tags.input_tags.string = tags.input_tags.categorical = True
        return tags

    def fit(self, X, y=None):
        X = self._frame(X)
        if len(X) == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required by CategoryEncoder."
            )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.categories_ = [_categories(X[c]) for c in X.columns]
        return self

    def transform(self, X):
        check_is_fitted(self, "categories_")
        X = self._frame(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but CategoryEncoder is expecting {self.n_features_in_} features as input."
            )
        codes = [_codes(X[c], cats) for c, cats in zip(X.columns, self.categories_, strict=True)]
        n = len(X)
        if self.output == "ordinal":  # float32 holds every code exactly, in half the memory of float64
            out = np.empty((n, len(codes)), dtype=np.float32)
            for j, code in enumerate(codes):
                out[:, j] = np.where(code >= 0, code, np.nan)
            return out
        widths = [len(c) for c in self.categories_]
        out = np.zeros((n, sum(widths)), dtype=np.float64)
        rows = np.arange(n)
        offset = 0
        for code, width in zip(codes, widths, strict=True):
            seen = code >= 0
            out[rows[seen], offset + code[seen]] = 1.0
            offset += width
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "categories_")
        if self.output == "ordinal":
            return np.asarray(self.feature_names_in_, dtype=object)
        return np.asarray(
            [
                f"{col}_{cat}"
                for col, cats in zip(self.feature_names_in_, self.categories_, strict=True)
                for cat in cats
            ],
            dtype=object,
        )

    def _frame(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X  # as it is: a copy of millions of rows as objects would cost more than the codes
        X = pd.DataFrame(check_array(X, dtype=None, ensure_all_finite=False, ensure_min_samples=0).astype(object))
        fitted = getattr(self, "feature_names_in_", None)
        X.columns = list(fitted) if fitted is not None and len(fitted) == X.shape[1] else [str(c) for c in X.columns]
        return X


class RawRows(TransformerMixin, BaseEstimator):
    """The first step of every registered tabular and text model: rows as they come from the
    source (numbers written as text with thousands separators or currency signs, integer codes,
    missing values) typed as training typed them, so the MLflow pyfunc and the scikit-learn
    flavour give the same answers on raw rows. Typed rows pass through unchanged."""

    def __init__(self, numeric=(), categorical=(), text=None, thousands=None, decimal="."):
        self.numeric, self.categorical, self.text = numeric, categorical, text
        self.thousands, self.decimal = thousands, decimal

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        from modelmill.data.ingest import coerce_numbers

        X = pd.DataFrame(X)[
            [*self.numeric, *self.categorical, *([self.text] if self.text else [])]
        ]  # pandas 3: columns copied only when replaced
        for c in self.numeric:
            number = coerce_numbers(X[c], self.thousands, self.decimal)
            X[c] = pd.to_numeric(number, errors="coerce").astype("float64")  # integers cannot carry missing values
        for c in self.categorical:
            if not (isinstance(X[c].dtype, pd.CategoricalDtype) and X[c].cat.categories.dtype == "str"):
                X[c] = X[c].astype(
                    "str"
                )  # pandas 3: missing values stay missing (a snapshot's text categories stay compact)
        if self.text:
            X[self.text] = X[self.text].fillna("").astype("str")
        return X
