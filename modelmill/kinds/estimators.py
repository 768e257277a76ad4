"""The scikit-learn classifiers the spec's ``estimator`` names refer to, shared by the kinds.

Each factory takes the spec's seed and the candidate's params and returns an unfitted estimator;
a kind offers the subset that suits its problem (``pick``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

def logit_forest_vote(seed, C=0.1, n_estimators=500, min_samples_leaf=3, **p):
    """Soft vote (mean probability) of a logistic regression and a random forest: a linear and a
    tree view of the same features. Grid keys reach the members as ``logit__C``, ``forest__...``."""
    members = [("logit", LogisticRegression(C=C, max_iter=5000)), ("forest", RandomForestClassifier(n_estimators, min_samples_leaf=min_samples_leaf, random_state=seed, n_jobs=1))]
    return VotingClassifier(members, voting="soft", **p)


CLASSIFIERS: dict[str, Factory] = {
    "dummy_prior": lambda seed, **p: DummyClassifier(strategy="prior", **p),
    "dummy_most_frequent": lambda seed, **p: DummyClassifier(strategy="most_frequent", **p),
    "logistic_regression": lambda seed, **p: LogisticRegression(**{"max_iter": 5000, **p}),
    "hist_gradient_boosting": lambda seed, **p: HistGradientBoostingClassifier(random_state=seed, **p),
    "random_forest": lambda seed, **p: RandomForestClassifier(random_state=seed, **{"n_jobs": 1, **p}),
    "linear_svc": lambda seed, **p: LinearSVC(random_state=seed, **p),
    "sgd": lambda seed, **p: SGDClassifier(random_state=seed, **p),
    "complement_nb": lambda seed, **p: ComplementNB(**p),
    "logit_forest_vote": logit_forest_vote,
}


def pick(*names: str, **extra: Factory) -> dict[str, Factory]:
    """The named shared classifiers, plus kind-specific ones."""
    return {n: CLASSIFIERS[n] for n in names} | extra
