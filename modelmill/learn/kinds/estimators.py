"""The scikit-learn classifiers the spec's ``estimator`` names refer to, shared by the kinds.

Each factory takes the spec's seed and the candidate's params and returns an unfitted estimator;
a kind offers the subset that suits its problem (``pick``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

Factory = Callable[..., Any]


def _leading_codes(X, mask) -> list[np.ndarray] | None:
    """The known categories of ``X``'s categorical columns (``mask``) when they are already what
    scikit-learn's own encoder would make of them, else None: a leading block of columns each
    holding the codes 0..k-1 of its k categories, every one present, missing values NaN."""
    k = int(mask.sum())
    if not (
        isinstance(X, np.ndarray)
        and X.dtype.kind == "f"
        and X.ndim == 2
        and k
        and mask[:k].all()
        and not mask[k:].any()
    ):
        return None
    known = []
    for j in range(k):
        col = X[:, j]
        codes = col[~np.isnan(col)]
        if codes.size == 0 or codes.min() < 0 or not np.array_equal(codes, np.floor(codes)):
            return None
        counts = np.bincount(codes.astype(np.intp))
        if not counts.all():
            return None
        known.append(np.arange(len(counts), dtype=np.float64))
    return known


class HistGradientBoosting(HistGradientBoostingClassifier):
    """``HistGradientBoostingClassifier`` without a second encoding of categories that arrive
    encoded.

    Given ``categorical_features``, scikit-learn runs its own ``OrdinalEncoder`` inside ``fit``
    (a ``ColumnTransformer``): it copies the rows two or three times over (at 8M rows x 20 columns,
    gigabytes on top of the data; the peak of a 10M-row run). When the categorical columns are a
    leading block of codes 0..k-1 (what :class:`~modelmill.learn.kinds.encoders.CategoryEncoder` gives
    with ``output="ordinal"``), that encoder maps each code to itself: this class then fits on the
    rows as they are, with the same known categories, and so the same trees and predictions (a
    test compares them). Any other input goes through scikit-learn's encoder as before."""

    def _preprocess_X(self, X, *, reset):
        if not reset or self.categorical_features is None:
            return super()._preprocess_X(X, reset=reset)
        from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import _check_categorical_features
        from sklearn.utils.validation import validate_data

        mask = _check_categorical_features(X, self.categorical_features)
        known = None if mask is None else _leading_codes(X, mask)
        if known is None:
            return super()._preprocess_X(X, reset=reset)
        for j, cats in enumerate(known):
            if cats.size > self.max_bins:
                raise ValueError(
                    f"Categorical feature at index {j} is expected to have a cardinality <= {self.max_bins} but actually has a cardinality of {cats.size}."
                )
        self.is_categorical_, self._preprocessor, self._is_categorical_remapped = mask, None, mask
        X = validate_data(self, X, dtype=[np.float64], ensure_all_finite=False)
        return X, [*known, *[None] * (X.shape[1] - len(known))]


def logit_forest_vote(seed, C=0.1, n_estimators=500, min_samples_leaf=3, **p):
    """Soft vote (mean probability) of a logistic regression and a random forest: a linear and a
    tree view of the same features. Grid keys reach the members as ``logit__C``, ``forest__...``."""
    members = [
        ("logit", LogisticRegression(C=C, max_iter=5000)),
        (
            "forest",
            RandomForestClassifier(n_estimators, min_samples_leaf=min_samples_leaf, random_state=seed, n_jobs=1),
        ),
    ]
    return VotingClassifier(members, voting="soft", **p)


CLASSIFIERS: dict[str, Factory] = {
    "dummy_prior": lambda seed, **p: DummyClassifier(strategy="prior", **p),
    "dummy_most_frequent": lambda seed, **p: DummyClassifier(strategy="most_frequent", **p),
    "logistic_regression": lambda seed, **p: LogisticRegression(**{"max_iter": 5000, **p}),
    "hist_gradient_boosting": lambda seed, **p: HistGradientBoosting(random_state=seed, **p),
    "random_forest": lambda seed, **p: RandomForestClassifier(random_state=seed, **{"n_jobs": 1, **p}),
    "linear_svc": lambda seed, **p: LinearSVC(random_state=seed, **p),
    "sgd": lambda seed, **p: SGDClassifier(random_state=seed, **p),
    "complement_nb": lambda seed, **p: ComplementNB(**p),
    "logit_forest_vote": logit_forest_vote,
}


def pick(*names: str, **extra: Factory) -> dict[str, Factory]:
    """The named shared classifiers, plus kind-specific ones."""
    return {n: CLASSIFIERS[n] for n in names} | extra
