"""Why a model decides, and how it does on each group: permutation importance and SHAP values
per source column, reason codes per row, and per-slice metrics. Pure core (no prefect, no MLflow).

Every figure here is per *source* column (``age``, ``purpose``), never per encoded column: a
one-hot or TF-IDF expansion happens inside the model, so permuting a source column moves all of
its encoded columns at once, and SHAP values of encoded columns are summed per source column
(SHAP values add up, so the sum is the column's contribution).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if


def sample_rows(n: int, rows: int, seed: int) -> np.ndarray:
    """At most ``rows`` row positions of ``n``, in order, the same ones for the same seed."""
    if n <= rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))


def _take(X, idx):
    return X.iloc[idx].reset_index(drop=True) if hasattr(X, "iloc") else X[idx]


def distinct_rows(X):
    """A frame's distinct rows, and for each of its rows the position of its copy among them
    (``None``, and ``X`` itself, when no row repeats or ``X`` is not a frame). A text column
    shuffled among the rows holds the same texts: a model predicts each once."""
    if not hasattr(X, "iloc") or len(X) < 2:
        return X, None
    try:
        keys = pd.util.hash_pandas_object(X, index=False).to_numpy()
    except TypeError:  # a cell pandas cannot hash (a list, say): predict every row
        return X, None
    _, first, back = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == len(X):
        return X, None
    return X.iloc[first].reset_index(drop=True), back.ravel()


# -- permutation importance ----------------------------------------------------------------------
class Replay(ClassifierMixin, BaseEstimator):
    """A fitted classifier's answers on a set of rows, replayed for any subset of them given by
    row numbers: scorers and metrics computed on many subsets (slices, shuffled copies) cost one
    prediction, not one each. Each way of answering (labels, probabilities, decision values) is
    asked of the model when first needed, and of repeated rows only one is predicted."""

    def __init__(self, model=None, X=None):
        self.model, self.X = model, X

    def fit(self, X=None, y=None):
        self.rows_, self.back_ = distinct_rows(self.X)
        self.answers_ = {}
        self.classes_ = getattr(self.model, "classes_", None)
        if self.classes_ is None:
            self.classes_ = np.unique(self._answer("predict", slice(None)))
        if hasattr(self.model, "best_threshold_"):
            self.best_threshold_ = self.model.best_threshold_
        return self

    def _answer(self, method: str, rows):
        if method not in self.answers_:
            answers = np.asarray(getattr(self.model, method)(self.rows_))
            self.answers_[method] = answers if self.back_ is None else answers[self.back_]
        return self.answers_[method][rows if isinstance(rows, slice) else np.asarray(rows)]

    def _answers(self, method: str) -> bool:
        """Whether the model answers this way (a linear SVM has no probabilities; a forest no
        decision values; some models only say so when asked)."""
        if not hasattr(self.model, method):
            return False
        try:
            self._answer(method, slice(0, 0))
        except AttributeError:
            return False
        return True

    def predict(self, rows):
        return self._answer("predict", rows)

    @available_if(lambda self: self._answers("predict_proba"))
    def predict_proba(self, rows):
        return self._answer("predict_proba", rows)

    @available_if(lambda self: self._answers("decision_function"))
    def decision_function(self, rows):
        return self._answer("decision_function", rows)


def permutation_table(
    model, X, y, scoring, groups: dict[str, list] | None = None, *, rows: int, repeats: int, seed: int
) -> pd.DataFrame:
    """Permutation importance on at most ``rows`` test rows, as scikit-learn's
    ``permutation_importance`` measures it and with its scorers: the drop in ``scoring`` when a
    column's values (or a group's columns together: an image's region of pixels) are shuffled
    among the rows, mean and spread over ``repeats`` shuffles. Every column of a frame is its own
    group (a source column: its one-hot or TF-IDF expansion happens inside the model). All the
    shuffled copies are predicted in one batch. Most important first."""
    from sklearn.metrics import check_scoring

    pick = sample_rows(len(X), rows, seed)
    X, y = _take(X, pick), np.asarray(y)[pick]
    n, frame = len(X), hasattr(X, "iloc")
    groups = groups or {str(c): [c] for c in X.columns}
    # block 0: the rows as they are; block 1 + r * len(groups) + g: group g shuffled (repeat r)
    rng = np.random.default_rng(seed)
    blocks = 1 + repeats * len(groups)
    shuffles = [
        (1 + r * len(groups) + g, cols, rng.permutation(n))
        for r in range(repeats)
        for g, cols in enumerate(groups.values())
    ]
    if frame:
        rows_of = {c: np.tile(np.arange(n), blocks) for c in X.columns}  # which row each stacked cell takes, per column
        for block, cols, order in shuffles:
            for c in cols:
                rows_of[c][block * n : (block + 1) * n] = order
        stacked = pd.DataFrame({c: X[c].take(rows_of[c]).reset_index(drop=True) for c in X.columns})
    else:
        stacked = np.tile(X, (blocks, 1))
        for block, cols, order in shuffles:
            stacked[block * n : (block + 1) * n, cols] = X[order][:, cols]
    replay = Replay(model, stacked).fit()
    scorer = check_scoring(model, scoring=scoring)
    reference = scorer(replay, np.arange(n), y)
    drops = np.array(
        [reference - scorer(replay, np.arange(block * n, (block + 1) * n), y) for block, _, _ in shuffles]
    ).reshape(repeats, len(groups))
    table = pd.DataFrame(
        {
            "feature": list(groups),
            "importance_mean": drops.mean(axis=0),
            "importance_std": drops.std(axis=0),
            "rows": n,
            "repeats": repeats,
        }
    )
    return table.sort_values("importance_mean", ascending=False, ignore_index=True)


def image_regions(height: int, width: int, grid: int = 4, channels: int = 1) -> dict[str, np.ndarray]:
    """A ``grid`` x ``grid`` partition of a flattened height x width (x ``channels``) image into
    named regions (each with every channel of its pixels)."""
    rows, cols = np.array_split(np.arange(height), grid), np.array_split(np.arange(width), grid)
    return {
        f"rows {r[0]}-{r[-1]}, cols {c[0]}-{c[-1]}": (
            (r[:, None] * width + c[None, :]).ravel()[:, None] * channels + np.arange(channels)
        ).ravel()
        for r in rows
        for c in cols
    }


def importance_figure(table: pd.DataFrame, metric: str, title: str, top: int = 20):
    from modelmill.learn.evaluation import figure

    shown = table.head(top).iloc[::-1]
    fig, ax = figure(7, 0.32 * len(shown) + 1.6)
    ax.barh(shown["feature"].astype(str), shown["importance_mean"], xerr=shown["importance_std"], color="#4878a8")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"drop in test {metric} when the column is shuffled")
    ax.set_title(f"{title}: permutation importance ({int(table['rows'].iloc[0])} test rows)")
    fig.tight_layout()
    return fig


# -- SHAP ---------------------------------------------------------------------------------------
@dataclass
class ShapValues:
    """SHAP values of explained rows per source column, towards the positive class."""

    values: pd.DataFrame  # one row per explained row, one column per source column
    base: float  # the expected output: values of a row plus base = the model's output for it
    output: str  # "log-odds" (tree and linear explainers) or "probability" (permutation); "value" for a regressor
    method: str  # tree | linear | permutation
    rows: pd.DataFrame  # the explained rows, as the model takes them

    def mean_abs(self) -> pd.DataFrame:
        m = self.values.abs().mean()
        return pd.DataFrame({"feature": m.index, "mean_abs_shap": m.to_numpy()}).sort_values(
            "mean_abs_shap", ascending=False, ignore_index=True
        )


def fitted_core(model):
    """The fitted featurizer + estimator pipeline inside a model's wrappers: the registered
    model's raw-rows step, a tuned decision threshold and a calibration step are peeled off
    (SHAP explains the score before calibration and threshold, which only rescale it
    monotonically: the direction of every reason stays the same)."""
    from sklearn.pipeline import Pipeline

    while True:
        if isinstance(model, Pipeline) and "raw_rows" in model.named_steps:
            model = model.steps[-1][1]
        elif hasattr(model, "estimator_") and not isinstance(model, Pipeline):
            model = model.estimator_
        else:
            return model


def source_groups(features, columns: list[str], width: int) -> list[str] | None:
    """Which source column each encoded column of the tabular featurizer comes from, or None
    when that cannot be told exactly (then SHAP works on the source columns directly)."""
    from sklearn.pipeline import Pipeline

    out: list[str] = []
    for name, transformer, cols in features.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        cols = [cols] if isinstance(cols, str) else list(cols)
        part = features.output_indices_[name]
        n = part.stop - part.start
        if n == 0:
            continue
        if len(cols) == 1:
            out += cols * n
            continue
        steps = transformer.steps if isinstance(transformer, Pipeline) else [(name, transformer)]
        mapped = _through(steps, cols)
        if mapped is None or len(mapped) != n:
            return None
        out += mapped
    return out if len(out) == width else None


def _through(steps, cols: list[str]) -> list[str] | None:
    """The source column of each output column of a featurizer's steps over ``cols``: an imputer
    keeps its columns (but those it found empty) and appends one indicator per column it saw
    missing values in, a one-hot encoder gives one column per category, an ordinal one and a
    scaler keep them; any other step: None (not told here)."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    src = list(cols)
    for _, step in steps:
        if isinstance(step, SimpleImputer):
            empty = step.strategy != "constant" and not step.keep_empty_features
            kept = [c for c, stat in zip(src, step.statistics_, strict=True) if not (empty and _missing(stat))]
            flags = [src[i] for i in step.indicator_.features_] if step.indicator_ is not None else []
            src = kept + flags
        elif hasattr(step, "categories_") and getattr(step, "output", "") == "onehot":
            src = [c for c, cats in zip(src, step.categories_, strict=True) for _ in cats]
        elif hasattr(step, "categories_") and getattr(step, "output", "") == "ordinal":
            continue  # one code per column
        elif not isinstance(step, StandardScaler):
            return None
    return src


def shap_values(model, X: pd.DataFrame, background: pd.DataFrame, *, seed: int = 0) -> ShapValues:
    """SHAP values of the rows ``X`` for a fitted binary classifier (or regressor: its values are
    in the target's own units, ``value``) that takes source columns.

    Behind the tabular featurizer: gradient boosting gets shap's exact TreeExplainer (log-odds),
    a random forest too (probability), a logistic regression the LinearExplainer over the
    ``background`` rows (log-odds), a soft vote the weighted mean of its members' values in
    probability (SHAP values add up); any other estimator, shap's permutation explainer over the
    encoded columns grouped by source column. A model without that featurizer: the permutation
    explainer over the source columns themselves. ``background`` rows are the reference a
    masked column takes its values from (their number bounds the cost)."""
    from sklearn.base import is_regressor

    core = fitted_core(model)
    columns = [str(c) for c in X.columns]
    steps = getattr(core, "named_steps", {})
    features, est = steps.get("features"), steps.get("model")
    if features is not None and est is not None and (hasattr(est, "predict_proba") or is_regressor(est)):
        Z, Zb = np.asarray(features.transform(X), dtype=float), np.asarray(features.transform(background), dtype=float)
        groups = source_groups(features, columns, Z.shape[1])
        if groups is not None:
            raw, base, output, method = _encoded(est, Z, Zb, groups, seed)
            summed = pd.DataFrame(raw, columns=groups).T.groupby(level=0, sort=False).sum().T
            return ShapValues(
                summed.reindex(columns=columns, fill_value=0.0), base, output, method, X.reset_index(drop=True)
            )
    return _permutation_shap(model, X, background, seed)


def _positive(values, expected) -> tuple[np.ndarray, float]:
    """The positive class's slab of a (per-class) SHAP result and its expected value."""
    v, e = np.asarray(values, dtype=float), np.asarray(expected, dtype=float).ravel()
    if v.ndim == 3:
        v = v[:, :, -1]
    return v, float(e[-1])


def _encoded(est, Z, Zb, groups, seed) -> tuple[np.ndarray, float, str, str]:
    """SHAP values of the encoded columns: (values, expected value, output, method)."""
    import shap
    from sklearn.base import is_regressor
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression

    if is_regressor(est):
        return _regression(est, Z, Zb, groups, seed)
    if isinstance(est, HistGradientBoostingClassifier | GradientBoostingClassifier):
        ex = shap.TreeExplainer(est)
        return (*_positive(ex.shap_values(Z, check_additivity=False), ex.expected_value), "log-odds", "tree")
    if isinstance(est, LogisticRegression) and len(est.classes_) == 2:
        return (*_linear(est, Z, Zb), "log-odds", "linear")
    if isinstance(est, VotingClassifier) and est.voting == "soft":
        weights = np.ones(len(est.estimators_)) if est.weights is None else np.asarray(est.weights, dtype=float)
        weights = weights / weights.sum()
        parts = [_in_probability(m, Z, Zb, groups, seed) for m in est.estimators_]
        values = sum(w * v for w, (v, _, _) in zip(weights, parts, strict=True))
        base = float(sum(w * b for w, (_, b, _) in zip(weights, parts, strict=True)))
        return values, base, "probability", "vote of " + " + ".join(sorted({m for _, _, m in parts}))
    v, b, m = _in_probability(est, Z, Zb, groups, seed)  # forests (exact) and any other estimator
    return v, b, "probability", m


def _in_probability(est, Z, Zb, groups, seed) -> tuple[np.ndarray, float, str]:
    """An estimator's SHAP values on the probability of the positive class: exact for a forest
    (its trees hold class shares), else the permutation explainer over grouped encoded columns."""
    import shap
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    if isinstance(est, RandomForestClassifier | ExtraTreesClassifier | DecisionTreeClassifier):
        ex = shap.TreeExplainer(est)
        return (*_positive(ex.shap_values(Z, check_additivity=False), ex.expected_value), "tree")
    if isinstance(est, LogisticRegression) and len(est.classes_) == 2:
        # exact in log-odds; each row's values scaled by the sigmoid's secant between the
        # background's mean log-odds and the row's, so that they add up to its probability's
        # distance from the probability at that mean (signs and ratios kept; the secant is at
        # most 1/4, so no value grows)
        values, base = _linear(est, Z, Zb)
        p, p0 = est.predict_proba(Z)[:, 1], 1 / (1 + np.exp(-base))
        moved = values.sum(axis=1)
        far = np.abs(moved) > 1e-9
        slope = np.where(far, (p - p0) / np.where(far, moved, 1.0), p0 * (1 - p0))
        return values * slope[:, None], float(p0), "linear"
    values, base = _grouped_permutation(lambda Z: np.asarray(est.predict_proba(Z))[:, 1], Z, Zb, groups, seed)
    return values, base, "permutation"


def _grouped_permutation(answer, Z, Zb, groups, seed) -> tuple[np.ndarray, float]:
    """shap's permutation explainer of ``answer`` (rows of encoded columns -> one number each)
    with the encoded columns of one source column masked together."""
    names = list(dict.fromkeys(groups))
    members = [np.flatnonzero(np.asarray(groups) == g) for g in names]
    stacked = np.vstack([Zb, Z])
    nb, m = len(Zb), len(names)

    def f(codes):
        codes = np.asarray(codes, dtype=np.int64)
        out = np.empty((len(codes), stacked.shape[1]))
        for j, cols in enumerate(members):
            out[:, cols] = stacked[np.ix_(codes[:, j], cols)]
        return answer(out)

    values, base = _permute(f, nb, len(Z), m, seed)
    spread = np.zeros((len(Z), stacked.shape[1]))
    for j, cols in enumerate(members):  # the group's value on its first encoded column: summed back per group
        spread[:, cols[0]] = values[:, j]
    return spread, base


def _regression(est, Z, Zb, groups, seed) -> tuple[np.ndarray, float, str, str]:
    """A regressor's SHAP values in the target's units: exact for trees and linear models, else
    the permutation explainer over grouped encoded columns."""
    import shap
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model._base import LinearModel
    from sklearn.tree import DecisionTreeRegressor

    if isinstance(
        est, HistGradientBoostingRegressor | RandomForestRegressor | ExtraTreesRegressor | DecisionTreeRegressor
    ):
        ex = shap.TreeExplainer(est)
        return (*_positive(ex.shap_values(Z, check_additivity=False), ex.expected_value), "value", "tree")
    if isinstance(est, LinearModel):
        ex = shap.LinearExplainer(est, Zb)
        return (*_positive(ex.shap_values(Z), ex.expected_value), "value", "linear")
    values, base = _grouped_permutation(est.predict, Z, Zb, groups, seed)
    return values, base, "value", "permutation"


def _linear(est, Z, Zb) -> tuple[np.ndarray, float]:
    """A logistic regression's exact SHAP values in log-odds over the background ``Zb``."""
    import shap

    ex = shap.LinearExplainer(est, Zb)
    return _positive(ex.shap_values(Z), ex.expected_value)


def _permute(f, nb: int, n: int, m: int, seed: int) -> tuple[np.ndarray, float]:
    """shap's permutation explainer over ``m`` columns whose cells are coded as row numbers of a
    stack of ``nb`` background rows and then ``n`` explained rows (``f`` decodes them)."""
    import shap

    bg_codes = np.repeat(np.arange(nb)[:, None], m, axis=1)
    ex_codes = np.repeat((nb + np.arange(n))[:, None], m, axis=1)
    explainer = shap.explainers.Permutation(f, shap.maskers.Independent(bg_codes, max_samples=nb), seed=seed)
    result = explainer(ex_codes, max_evals=2 * m + 1, silent=True)
    return np.asarray(result.values, dtype=float), float(np.asarray(result.base_values).ravel()[0])


def _permutation_shap(model, X: pd.DataFrame, background: pd.DataFrame, seed: int) -> ShapValues:
    """shap's permutation explainer on the source columns: a masked cell takes a background
    row's value, so any column type (text, categories, numbers) keeps its own dtype."""
    from sklearn.base import is_regressor

    stacked = pd.concat([background, X], ignore_index=True)
    columns = list(stacked.columns)

    def f(codes):
        codes = np.asarray(codes, dtype=np.int64)
        frame = pd.DataFrame({c: stacked[c].take(codes[:, j]).reset_index(drop=True) for j, c in enumerate(columns)})
        return np.asarray(model.predict(frame)) if regression else np.asarray(model.predict_proba(frame))[:, 1]

    regression = is_regressor(model)
    values, base = _permute(f, len(background), len(X), len(columns), seed)
    return ShapValues(
        pd.DataFrame(values, columns=[str(c) for c in columns]),
        base,
        "value" if regression else "probability",
        "permutation",
        X.reset_index(drop=True),
    )


def shap_figure(sv: ShapValues, title: str, top: int = 20):
    """Summary plot: each explained row's SHAP value per source column (a dot each), columns by
    mean |SHAP|; dots coloured by whether the row's value is above the column's median (numbers)."""
    from modelmill.learn.evaluation import figure

    order = sv.mean_abs()["feature"].head(top).tolist()[::-1]
    fig, ax = figure(7.5, 0.34 * len(order) + 1.8)
    rng = np.random.default_rng(0)
    xs, ys, highs = [], [], []
    for i, c in enumerate(order):
        v = sv.values[c].to_numpy()
        x = pd.to_numeric(sv.rows[c], errors="coerce") if c in sv.rows else pd.Series(np.nan, index=range(len(v)))
        highs.append((x > x.median()).to_numpy() if x.notna().any() else np.zeros(len(v), bool))
        xs.append(v)
        ys.append(i + rng.uniform(-0.25, 0.25, len(v)))
    high = np.concatenate(highs) if highs else np.zeros(0, bool)
    ax.scatter(
        np.concatenate(xs) if xs else [],
        np.concatenate(ys) if ys else [],
        s=6,
        c=np.where(high, "#d1495b", "#4878a8"),
        alpha=0.6,
    )
    ax.set_yticks(range(len(order)), order)
    ax.axvline(0, color="grey", lw=0.8)
    of = "of the prediction" if sv.output == "value" else "of the positive class"
    ax.set_xlabel(f"SHAP value ({sv.output} {of}; red: a number above its median)")
    ax.set_title(f"{title}: SHAP ({sv.method} explainer, {len(sv.values)} test rows)")
    fig.tight_layout()
    return fig


def reason_codes(sv: ShapValues, k: int) -> pd.DataFrame:
    """Each row's ``k`` source columns that pushed its score most towards the positive class
    (largest positive SHAP value), with the row's value: ``reason_i``, ``reason_i_value`` and
    ``reason_i_shap``; fewer than ``k`` columns pushed that way leave the rest empty."""
    values = sv.values.to_numpy(dtype=float)
    cols = np.asarray(sv.values.columns, dtype=object)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    out: dict[str, list] = {}
    for i in range(k):
        names, shown, contrib = [], [], []
        for r in range(len(values)):
            j = order[r, i] if i < order.shape[1] else None
            if j is None or values[r, j] <= 0:
                names.append(None), shown.append(None), contrib.append(np.nan)
                continue
            raw = sv.rows.iloc[r][cols[j]]
            (
                names.append(cols[j]),
                shown.append(None if _missing(raw) else str(raw)),
                contrib.append(round(float(values[r, j]), 6)),
            )
        out[f"reason_{i + 1}"], out[f"reason_{i + 1}_value"], out[f"reason_{i + 1}_shap"] = names, shown, contrib
    return pd.DataFrame(out)


def _missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


# -- slices -------------------------------------------------------------------------------------
def slice_labels(values: pd.Series, bands: list[float] | None) -> pd.Series:
    """A slice label per row: the column's value, or the band of a number (``<25``, ``25-35``,
    ``>=50`` for bands [25, 35, 50]); missing values are their own slice."""
    if not bands:
        return values.astype("object").where(values.notna(), "(missing)").astype(str)
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    edges = sorted(bands)
    names = [f"<{edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:], strict=False)] + [f">={edges[-1]:g}"]
    idx = np.searchsorted(edges, x, side="right")
    return pd.Series(
        [names[i] if not np.isnan(v) else "(missing)" for i, v in zip(idx, x, strict=True)], index=values.index
    )


def slice_gaps(table: pd.DataFrame, metric: str, min_rows: dict[str, int]) -> dict[str, float]:
    """Per slice column, the largest difference of ``metric`` between its slices with at least
    that column's ``min_rows`` test rows and a finite value (fewer rows: reported, not judged)."""
    gaps = {}
    for column, part in table.groupby("column", sort=False):
        judged = part[(part["rows"] >= min_rows.get(column, 0)) & np.isfinite(part[metric].astype(float))]
        gaps[column] = float(judged[metric].max() - judged[metric].min()) if len(judged) >= 2 else float("nan")
    return gaps


def timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and the seconds it took."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
