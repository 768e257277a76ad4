"""Candidate selection by cross-validated grid search (shared by the scikit-learn kinds)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd
from sklearn.model_selection import GridSearchCV

from modelmill.spec import PipelineSpec

log = logging.getLogger("modelmill.train")


def grid_select(spec: PipelineSpec, build: Callable, X, y, *, cv, scoring, step: str = "model"):
    """Grid-search every candidate on the training split; return the best refit estimator.

    Returns ``(best candidate name, refit estimator, selection table, chosen hyperparameters)``,
    the last being the candidate's fixed params merged with its best grid point.

    ``build(candidate)`` returns an unfitted pipeline whose model step is named ``step``; grid
    keys in the spec are the model's own parameter names.
    """
    rows, best, best_score, best_name, chosen = [], None, float("-inf"), None, {}
    for c in spec.candidates:
        grid = {f"{step}__{k}": v for k, v in c.grid.items()} or {}
        search = GridSearchCV(build(c), grid or [{}], scoring=scoring, cv=cv, refit=True, n_jobs=1, error_score="raise")
        search.fit(X, y)
        params = {k.removeprefix(f"{step}__"): v for k, v in search.best_params_.items()}
        std = float(search.cv_results_["std_test_score"][search.best_index_])
        rows.append({"candidate": c.name, "estimator": c.estimator, "cv_score": float(search.best_score_), "cv_std": std, "best_params": str(params), "grid_points": len(search.cv_results_["params"])})
        log.info("%s: candidate %s cv %s = %.4f ± %.4f %s", spec.name, c.name, scoring if isinstance(scoring, str) else "score", search.best_score_, std, params)
        if search.best_score_ > best_score:
            best, best_score, best_name, chosen = search.best_estimator_, search.best_score_, c.name, {**c.params, **params}
    table = pd.DataFrame(rows).sort_values("cv_score", ascending=False, ignore_index=True)
    return best_name, best, table, chosen
