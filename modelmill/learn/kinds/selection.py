"""Candidate selection by cross-validated grid search (shared by the scikit-learn kinds)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import GridSearchCV, ParameterGrid, PredefinedSplit, StratifiedKFold, check_cv

from modelmill.config.spec import SPLIT_NAMES, PipelineSpec
from modelmill.errors import SpecError

log = logging.getLogger("modelmill.train")

#: the columns of every kind's ``tables/model_selection.csv``, one row per candidate (its best
#: grid point) or per grid point: ``score`` is the spec's metric as it reads (an RMSE positive,
#: lower better), ``selected_on`` says on which rows, ``score_std`` its spread over ``folds``
#: (empty for one split), best row first.
SELECTION_COLUMNS = (
    "candidate",
    "estimator",
    "params",
    "metric",
    "selected_on",
    "score",
    "score_std",
    "folds",
    "grid_points",
)


def selection_table(spec: PipelineSpec, rows: list[dict]) -> pd.DataFrame:
    """The selection rows in :data:`SELECTION_COLUMNS`, best first by the spec's metric."""
    table = pd.DataFrame(rows, columns=list(SELECTION_COLUMNS))
    return table.sort_values("score", ascending=spec.metric.direction == "minimize", ignore_index=True)


def selection_row(
    candidate,
    params: dict,
    spec: PipelineSpec,
    selected_on: str,
    score: float,
    std: float = float("nan"),
    folds: int = 1,
    grid_points: int = 1,
    metric: str | None = None,
) -> dict:
    """One row of :func:`selection_table` (``score`` in the sense of ``metric``, by default the spec's)."""
    return {
        "candidate": candidate.name, "estimator": candidate.estimator, "params": str(params), "metric": metric or spec.metric.name,
        "selected_on": selected_on, "score": float(score), "score_std": std if folds > 1 else float("nan"),
        "folds": folds, "grid_points": grid_points,
    }  # fmt: skip


#: seconds between two progress lines of one candidate's search (a quick search prints none)
PROGRESS_EVERY = 20.0


class _Progress:
    """A scorer that says how a candidate's search is going: each fold fitted and scored counts
    one fit of ``total``; at most every :data:`PROGRESS_EVERY` seconds a line gives the fits done,
    the time spent and an estimate of the time left (from the mean time per fit so far)."""

    def __init__(self, scorer, total: int, label: str):
        self.scorer, self.total, self.label = scorer, total, label
        self.done = 0
        self.started = self.said = time.perf_counter()

    def __call__(self, estimator, X, y, **kwargs):
        score = self.scorer(estimator, X, y, **kwargs)
        self.done += 1
        now = time.perf_counter()
        if self.done < self.total and now - self.said >= PROGRESS_EVERY:
            spent = now - self.started
            left = spent / self.done * (self.total - self.done)
            log.info(
                "%s: fit %d of %d, %.0f s so far, about %.0f s left", self.label, self.done, self.total, spent, left
            )
            self.said = now
        return score


def grid_select(spec: PipelineSpec, build: Callable, X, y, *, cv, scoring, step: str = "model", fit: bool = True):
    """Grid-search every candidate on the training split; return the best, fitted on all of it.

    Returns ``(best candidate name, estimator, selection table, chosen hyperparameters)``, the
    last being the candidate's fixed params merged with its best grid point. Only the winner is
    fitted on all the training rows (scikit-learn's own refit would fit every candidate's best
    grid point there); with ``fit=False`` it is returned unfitted, for a caller that fits it
    itself (threshold tuning does).

    ``build(candidate)`` returns an unfitted pipeline whose model step is named ``step``; grid
    keys in the spec are the model's own parameter names.
    """
    rows, best, best_score, best_name, chosen = [], None, float("-inf"), None, {}
    for c in spec.candidates:
        grid = {f"{step}__{k}": v for k, v in c.grid.items()} or {}
        estimator = build(c)
        points = len(ParameterGrid(grid or [{}]))
        fits = points * check_cv(cv, y, classifier=True).get_n_splits(X, y)
        label = f"{spec.name}: candidate {c.name} ({points} grid point{'s' * (points > 1)} x {fits // points} folds)"
        progress = _Progress(check_scoring(estimator, scoring=scoring), fits, label)
        search = GridSearchCV(
            estimator, grid or [{}], scoring=progress, cv=cv, refit=False, n_jobs=1, error_score="raise"
        )
        search.fit(X, y)
        params = {k.removeprefix(f"{step}__"): v for k, v in search.best_params_.items()}
        std = float(search.cv_results_["std_test_score"][search.best_index_])
        folds = int(search.n_splits_)
        sign = (
            -1 if spec.metric.direction == "minimize" else 1
        )  # a scorer's error is negative: the metric reads positive
        on = "the val split" if isinstance(cv, PredefinedSplit) else f"{folds}-fold cross-validation"
        rows.append(
            selection_row(c, params, spec, on, sign * search.best_score_, std, folds, len(search.cv_results_["params"]))
        )
        spread = f"± {std:.4f} over {folds} folds" if folds > 1 else "on one validation split"
        log.info(
            "%s: candidate %s cv %s = %.4f %s %s",
            spec.name,
            c.name,
            scoring if isinstance(scoring, str) else "score",
            search.best_score_,
            spread,
            params,
        )
        if search.best_score_ > best_score:
            best, best_score, best_name, chosen = (
                (c, search.best_params_),
                search.best_score_,
                c.name,
                {**c.params, **params},
            )
    table = selection_table(spec, rows)
    model = build(best[0]).set_params(**clone(best[1], safe=False))  # as scikit-learn's refit does
    return best_name, model.fit(X, y) if fit else model, table, chosen


def predefined_parts(spec: PipelineSpec, df: pd.DataFrame) -> np.ndarray:
    """Each row's part of the spec's predefined split: "train", "val" or "test"."""
    col = spec.split.column
    raw = df[col].astype("str").str.strip().str.lower()
    parts = raw.map(SPLIT_NAMES)
    if parts.isna().any():
        odd = sorted(raw[parts.isna()].unique())[:3]
        raise SpecError(
            f"pipeline {spec.name}: split column {col} holds {int(parts.isna().sum())} rows that are not train/val/test (e.g. {', '.join(map(repr, odd))})"
        )
    for need in ("train", "test"):
        if not (parts == need).any():
            raise SpecError(f"pipeline {spec.name}: split column {col} has no {need} rows")
    return parts.to_numpy()


def fit_rows(
    spec: PipelineSpec, df: pd.DataFrame, random_split: tuple | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Row numbers models are fitted on and test rows, and for a predefined split with val rows
    the PredefinedSplit fold of each fitted row (-1 train, 0 val), else None. ``random_split``
    gives the (fit, test) row numbers of a random split; a predefined split ignores it."""
    if spec.split.method == "predefined":
        parts = predefined_parts(spec, df)
        fit, test = np.flatnonzero(parts != "test"), np.flatnonzero(parts == "test")
        fold = np.where(parts[fit] == "val", 0, -1)
        return fit, test, fold if (fold == 0).any() else None
    return random_split[0], random_split[1], None


def selection_cv(spec: PipelineSpec, fold: np.ndarray | None):
    """The official val split when there is one (then the chosen model is refit on train + val),
    else stratified k-fold CV on the training rows; logged either way."""
    if fold is not None:
        log.info(
            "%s: candidates selected on the val split (%d rows), then refit on train + val (%d rows)",
            spec.name,
            int((fold == 0).sum()),
            len(fold),
        )
        return PredefinedSplit(fold)
    log.info("%s: candidates selected by %d-fold cross-validation on the training rows", spec.name, spec.split.folds)
    return StratifiedKFold(spec.split.folds, shuffle=True, random_state=spec.split.seed)
