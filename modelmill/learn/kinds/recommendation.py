"""Top-k product recommendations from implicit feedback (purchases, or ratings above a threshold).

The raw log is cleaned here by the rules its roles allow (known customer; positive quantity, no
cancellations, ratings at or above the threshold, item codes matching a pattern — each only when
the spec names the column or the option), split in time (the last ``test_period_days``) or, for
data without dates, by a seeded random per-customer hold-out, and candidates are scored on
customers seen before the test period. Collaborative models come from
``implicit`` (ALS, item-item cosine); content-based filtering uses TF-IDF of the product
descriptions; the hybrid blends ALS and content scores. Fitted recommenders keep only numpy /
scipy state, so they pickle and load anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field
from sklearn.base import BaseEstimator, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.evaluation import figure
from modelmill.learn.kinds.base import KindOptions, Prepared, ProblemKind, Trained
from modelmill.learn.kinds.selection import selection_row, selection_table

log = logging.getLogger("modelmill.train")


class RecOptions(KindOptions):
    k: int = Field(10, ge=1, le=100, description="length of each user's recommendation list")
    exclude_seen: bool = Field(
        True, description="never recommend an item the user already interacted with (training period)"
    )
    product_code_regex: str | None = Field(None, description="keep only items whose code matches (off unless set)")
    cancellation_prefix: str = Field(
        "C", description="invoices starting with it are cancellations (with roles.invoice)"
    )
    min_user_items: int = Field(1, ge=1, description="users with fewer training items are not evaluated")
    relevance_threshold: float | None = Field(
        None, description="with roles.rating: ratings at or above it are interactions", examples=[4]
    )


# -- recommenders (scikit-learn contract: params in __init__, state in fit) ---------------------
class Recommender(BaseEstimator):
    """Base: index maps, the user x item matrix, popularity fallback, top-k with exclusions."""

    user_col, item_col, text_col = "user", "item", "description"

    def fit(self, X: pd.DataFrame, y=None):
        users = np.sort(X[self.user_col].astype(str).unique())
        items = np.sort(X[self.item_col].astype(str).unique())
        self.users_ = {u: i for i, u in enumerate(users)}
        self.items_ = items
        self.item_index_ = {it: i for i, it in enumerate(items)}
        rows = X[self.user_col].astype(str).map(self.users_).to_numpy()
        cols = X[self.item_col].astype(str).map(self.item_index_).to_numpy()
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))
        m.data = np.log1p(m.data)  # repeat purchases count, with diminishing weight
        self.seen_ = m
        self.history_ = None  # the training rows until :meth:`remember` is given more
        self.popularity_ = np.asarray((m > 0).sum(axis=0)).ravel().astype(np.float64)
        self._fit(m, X)
        return self

    def _fit(self, m: sp.csr_matrix, X: pd.DataFrame) -> None:
        pass

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(rows), 1))

    def recommend(
        self, users, k: int = 10, exclude_seen: bool = True, history: History | None = None
    ) -> list[list[str]]:
        """Each user's top ``k`` items (see :meth:`ranked`)."""
        return [items for items, _ in self.ranked(users, k, exclude_seen, history)]

    def ranked(
        self, users, k: int = 10, exclude_seen: bool = True, history: History | None = None
    ) -> list[tuple[list[str], list[float]]]:
        """Each user's top ``k`` items with their scores, best first. An unknown user gets the most
        popular items. With ``exclude_seen``, no item of the user's ``history`` (default: the one
        the model remembers, :meth:`remember`) is ever recommended, unknown users included."""
        users = [str(u) for u in users]
        if history is None:
            history = getattr(self, "history_", None) or History(self.users_, self.seen_)
        tie = 1e-9 * self.popularity_ / (self.popularity_.max() or 1)  # ties -> popular first
        out: list[tuple[list[str], list[float]]] = []
        for start in range(0, len(users), 1024):
            batch = users[start : start + 1024]
            known = np.array([u in self.users_ for u in batch], dtype=bool)
            scores = np.tile(self.popularity_, (len(batch), 1))  # unknown users: the most popular
            if known.any():
                scores[known] = np.asarray(
                    self._scores(np.array([self.users_[u] for u, kn in zip(batch, known, strict=True) if kn])),
                    dtype=np.float64,
                )
            scores += tie
            if exclude_seen:
                scores[history.mask(batch).nonzero()] = -np.inf
            n = min(k, scores.shape[1])
            top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
            for j in range(len(batch)):
                order = top[j][np.argsort(-scores[j, top[j]], kind="stable")]
                order = order[np.isfinite(scores[j, order])]  # never a seen item, even when few are left
                out.append((self.items_[order].tolist(), scores[j, order].tolist()))
        return out

    def remember(self, history: pd.DataFrame) -> Recommender:
        """Keep every user's items of ``history`` (user, item rows: any rating, any period) as the
        items never to recommend them again; the registered model remembers the whole source."""
        self.history_ = History.of(history, self.item_index_)
        return self

    def predict(self, X) -> np.ndarray:
        """For a frame of users: their top-10 items, space separated (the pyfunc output)."""
        check_is_fitted(self)
        users = X[self.user_col] if isinstance(X, pd.DataFrame) else pd.Series(X)
        return np.array([" ".join(r) for r in self.recommend(users.astype(str).tolist(), 10, True)], dtype=object)


class History:
    """The items each user interacted with, as a users x catalogue matrix (items outside the
    model's catalogue cannot be recommended anyway and are left out)."""

    def __init__(self, users: dict[str, int], matrix: sp.csr_matrix):
        self.users, self.matrix = users, sp.csr_matrix(matrix, dtype=np.float32)

    @classmethod
    def of(cls, pairs: pd.DataFrame, item_index: dict[str, int]) -> History:
        pairs = pairs[pairs["item"].astype(str).isin(item_index)]
        names = np.sort(pairs["user"].astype(str).unique())
        users = {u: i for i, u in enumerate(names)}
        rows = pairs["user"].astype(str).map(users).to_numpy()
        cols = pairs["item"].astype(str).map(item_index).to_numpy()
        return cls(
            users, sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(names), len(item_index)))
        )

    def mask(self, users: list[str]) -> sp.csr_matrix:
        """Rows of the given users (nothing for a user it does not know)."""
        idx = np.array([self.users.get(u, -1) for u in users], dtype=np.int64)
        if not self.matrix.shape[0]:
            return sp.csr_matrix((len(users), self.matrix.shape[1]), dtype=np.float32)
        rows = self.matrix[np.maximum(idx, 0)]
        return sp.diags((idx >= 0).astype(np.float32)) @ rows if (idx < 0).any() else rows


class Popularity(Recommender):
    """Most-bought items (by distinct buyers) first: the naive baseline."""


class ItemKNN(Recommender):
    """Item-item neighbourhoods: each item's ``neighbours`` most similar items by cosine of their
    buyer sets; a user's score for an item sums its similarity to the items the user has.

    - ``shrinkage`` (λ): a similarity resting on few common users is shrunk, times n / (n + λ);
    - ``normalize_ratings``: with ratings, each of a user's items counts by its rating over the
      user's mean rating (what they liked more than usual weighs more);
    - ``popularity_penalty`` (β): scores divided by the item's popularity to the power β, so the
      list reaches past the best sellers (a popularity-debiased variant).
    The defaults are plain item-item cosine kNN."""

    def __init__(
        self,
        neighbours: int = 100,
        shrinkage: float = 0.0,
        normalize_ratings: bool = False,
        popularity_penalty: float = 0.0,
    ):
        self.neighbours, self.shrinkage, self.normalize_ratings, self.popularity_penalty = (
            neighbours,
            shrinkage,
            normalize_ratings,
            popularity_penalty,
        )

    def _fit(self, m, X):
        b = _bought(m)
        co = (b.T @ b).tocoo()
        n = np.asarray(b.sum(axis=0)).ravel()
        off = co.row != co.col
        rows, cols, common = co.row[off], co.col[off], co.data[off].astype(np.float64)
        sim = common / np.sqrt(n[rows] * n[cols])
        if self.shrinkage:
            sim *= common / (common + self.shrinkage)
        self.similarity_ = _top_per_row(
            sp.csr_matrix((sim.astype(np.float32), (rows, cols)), shape=co.shape), self.neighbours
        )
        self.weights_ = self.seen_
        if self.normalize_ratings and "rating" in X.columns:
            r = X.groupby(["user", "item"], sort=False)["rating"].mean().reset_index()
            r["w"] = r["rating"] / r.groupby("user")["rating"].transform("mean")
            rr = r["user"].astype(str).map(self.users_).to_numpy()
            cc = r["item"].astype(str).map(self.item_index_).to_numpy()
            self.weights_ = sp.csr_matrix((r["w"].to_numpy(np.float32), (rr, cc)), shape=m.shape)
        self.penalty_ = np.power(np.maximum(self.popularity_, 1.0), -float(self.popularity_penalty))

    def _scores(self, rows):
        return (self.weights_[rows] @ self.similarity_).toarray() * self.penalty_


def _bought(m: sp.csr_matrix) -> sp.csr_matrix:
    """The user x item matrix as 0/1: who has what, however often."""
    return sp.csr_matrix((m > 0).astype(np.float32))


def _top_per_row(s: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest entries."""
    s = sp.csr_matrix(s)
    keep_rows, keep_cols, keep_vals = [], [], []
    for i in range(s.shape[0]):
        start, end = s.indptr[i], s.indptr[i + 1]
        if end == start:
            continue
        vals, cols = s.data[start:end], s.indices[start:end]
        if len(vals) > k:
            top = np.argpartition(-vals, k - 1)[:k]
            vals, cols = vals[top], cols[top]
        keep_rows.append(np.full(len(vals), i)), keep_cols.append(cols), keep_vals.append(vals)
    if not keep_rows:
        return sp.csr_matrix(s.shape, dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(keep_vals), (np.concatenate(keep_rows), np.concatenate(keep_cols))), shape=s.shape
    )


class BPR(Recommender):
    """Bayesian personalised ranking (implicit's BayesianPersonalizedRanking): factors trained to
    rank a user's items above the ones they do not have."""

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
    ):
        self.factors, self.learning_rate, self.regularization, self.iterations, self.random_state = (
            factors,
            learning_rate,
            regularization,
            iterations,
            random_state,
        )

    def _fit(self, m, X):
        from implicit.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=1,
        )
        model.fit(_bought(m), show_progress=False)
        self.user_factors_, self.item_factors_ = np.asarray(model.user_factors), np.asarray(model.item_factors)

    def _scores(self, rows):
        return self.user_factors_[rows] @ self.item_factors_.T


class ALS(Recommender):
    """Implicit-feedback matrix factorisation (implicit's AlternatingLeastSquares)."""

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 20,
        alpha: float = 20.0,
        random_state: int = 42,
    ):
        self.factors, self.regularization, self.iterations, self.alpha, self.random_state = (
            factors,
            regularization,
            iterations,
            alpha,
            random_state,
        )

    def _fit(self, m, X):
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                iterations=self.iterations,
                alpha=self.alpha,
                random_state=self.random_state,
                num_threads=1,
            )
            model.fit(m, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)

    def _scores(self, rows):
        return self.user_factors_[rows] @ self.item_factors_.T


class ContentBased(Recommender):
    """TF-IDF of product descriptions; a customer's profile is the mean of what they bought."""

    def __init__(self, min_df: int = 2, ngram_max: int = 2):
        self.min_df, self.ngram_max = min_df, ngram_max

    def _fit(self, m, X):
        text = X.groupby(self.item_col)[self.text_col].agg(lambda s: s.mode().iloc[0] if not s.mode().empty else "")
        docs = pd.Series(self.items_).map(text.astype(str)).fillna("").tolist()
        self.item_vectors_ = normalize(
            TfidfVectorizer(min_df=self.min_df, ngram_range=(1, self.ngram_max), sublinear_tf=True).fit_transform(docs)
        )
        self.profiles_ = normalize(m @ self.item_vectors_)

    def _scores(self, rows):
        return (self.profiles_[rows] @ self.item_vectors_.T).toarray()


class Hybrid(Recommender):
    """Blend of ALS (collaborative) and content scores, each min-max scaled per customer."""

    def __init__(
        self,
        content_weight: float = 0.3,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 20,
        alpha: float = 20.0,
        random_state: int = 42,
    ):
        self.content_weight, self.factors, self.regularization = content_weight, factors, regularization
        self.iterations, self.alpha, self.random_state = iterations, alpha, random_state

    def _fit(self, m, X):
        self.als_ = ALS(self.factors, self.regularization, self.iterations, self.alpha, self.random_state)
        self.content_ = ContentBased()
        for part in (self.als_, self.content_):
            part.users_, part.items_, part.item_index_, part.seen_, part.popularity_ = (
                self.users_,
                self.items_,
                self.item_index_,
                self.seen_,
                self.popularity_,
            )
            part._fit(m, X)

    def _scores(self, rows):
        def scale(s):
            lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
            return (s - lo) / np.where(hi - lo > 0, hi - lo, 1)

        w = self.content_weight
        return (1 - w) * scale(self.als_._scores(rows)) + w * scale(self.content_._scores(rows))


@dataclass
class RecTest:
    """What a recommender is tested on: the customers, the new items each bought in the test
    period, the training catalogue's size, the history before the test period (what may be
    excluded) and the whole source's history (what the registered model excludes)."""

    users: list[str]
    rel: list[set[str]]
    catalogue: int
    before: pd.DataFrame
    history: pd.DataFrame


# -- metrics ------------------------------------------------------------------------------------
def ranking_metrics(
    recs: list[list[str]], relevant: list[set[str]], k: int, catalogue: int, novelty: dict[str, float] | None = None
) -> dict[str, float]:
    """precision, recall, NDCG, MAP, hit rate at k (binary relevance), catalogue coverage and,
    given each item's self-information (``novelty``: -log2 of the share of users who have it),
    the mean novelty of what is recommended."""
    p = r = ndcg = ap = hit = 0.0
    discounts = 1 / np.log2(np.arange(2, k + 2))
    shown: set[str] = set()
    for rec, rel in zip(recs, relevant, strict=True):
        rec = rec[:k]
        shown.update(rec)
        gains = np.array([1.0 if it in rel else 0.0 for it in rec] + [0.0] * (k - len(rec)))
        hits = gains.sum()
        p += hits / k
        r += hits / len(rel)
        hit += float(hits > 0)
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg += (gains * discounts).sum() / ideal
        prec_at = np.cumsum(gains) / np.arange(1, k + 1)
        ap += (prec_at * gains).sum() / min(len(rel), k)
    n = max(len(recs), 1)
    out = {
        f"precision_at_{k}": p / n, f"recall_at_{k}": r / n, f"ndcg_at_{k}": ndcg / n,
        f"map_at_{k}": ap / n, f"hit_rate_at_{k}": hit / n, f"coverage_at_{k}": len(shown) / max(catalogue, 1),
    }  # fmt: skip
    if novelty is not None:
        unseen = max(novelty.values(), default=0.0)  # an item nobody had in training: as novel as the rarest
        shown_items = [it for rec in recs for it in rec[:k]]
        out[f"novelty_at_{k}"] = (
            float(np.mean([novelty.get(it, unseen) for it in shown_items])) if shown_items else float("nan")
        )
    return {key: float(v) for key, v in out.items()}


def self_information(model: Recommender) -> dict[str, float]:
    """Each catalogue item's -log2(share of training users who have it)."""
    share = np.maximum(model.popularity_, 1.0) / max(len(model.users_), 1)
    return dict(zip(model.items_.tolist(), (-np.log2(share)).tolist(), strict=True))


class Recommendation(ProblemKind):
    name = "recommendation"
    Options = RecOptions
    METRICS = {
        "ndcg_at_10": "maximize",
        "map_at_10": "maximize",
        "recall_at_10": "maximize",
        "precision_at_10": "maximize",
        "hit_rate_at_10": "maximize",
    }
    HEADLINE = ("hit_rate_at_10", "coverage_at_10", "novelty_at_10")
    ESTIMATORS = {
        "popularity": lambda seed, **p: Popularity(**p),
        "item_knn": lambda seed, **p: ItemKNN(**p),
        "bpr": lambda seed, **p: BPR(random_state=seed, **p),
        "als": lambda seed, **p: ALS(random_state=seed, **p),
        "content": lambda seed, **p: ContentBased(**p),
        "hybrid": lambda seed, **p: Hybrid(random_state=seed, **p),
    }

    def check_spec(self, spec: PipelineSpec) -> None:
        super().check_spec(spec)
        r, o = spec.roles, self.options(spec)
        missing = {"user", "item"} - set(r)
        if missing:
            raise SpecError(f"pipeline {spec.name}: recommendation needs roles {sorted(missing)}")
        if "date" in r:
            self.require_split(spec, "temporal")
            if not spec.split.test_period_days:
                raise SpecError(f"pipeline {spec.name}: a temporal split needs split.test_period_days")
        else:
            self.require_split(spec, "random")
        if ("rating" in r) != (o.relevance_threshold is not None):
            raise SpecError(
                f"pipeline {spec.name}: roles.rating and options.relevance_threshold go together (ratings at or above the threshold are interactions)"
            )
        textual = [c.name for c in [spec.baseline, *spec.candidates] if c.estimator in {"content", "hybrid"}]
        if textual and "description" not in r:
            raise SpecError(
                f"pipeline {spec.name}: candidates {', '.join(textual)} read item descriptions: name roles.description, or drop them"
            )

    def interactions(self, spec: PipelineSpec, df: pd.DataFrame) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
        """The interactions the spec's roles describe: customer known, and where the roles exist,
        positive quantity, no cancellation, dated, a rating at or above the threshold; the item
        code filter only when the spec sets one. Returns them, the rows each rule dropped, and the
        history: every (user, item) row of the source — low ratings, returns and cancellations
        too — whose items are never recommended to that user again."""
        r, o = spec.roles, self.options(spec)
        item = df[r["item"]].astype(str).str.strip().str.upper()
        keep = {
            "unknown_customer": df[r["user"]].notna() & df[r["item"]].notna()
        }  # reason a row is dropped -> rows kept
        if "quantity" in r:
            keep["non_positive_quantity"] = pd.to_numeric(df[r["quantity"]], errors="coerce") > 0
        if "invoice" in r:
            keep["cancellation"] = ~df[r["invoice"]].astype(str).str.startswith(o.cancellation_prefix)
        if o.product_code_regex:
            keep["not_a_product_code"] = item.str.match(o.product_code_regex)
        if "date" in r:
            keep["undated"] = pd.to_datetime(df[r["date"]], errors="coerce").notna()
        if "rating" in r:
            keep["below_relevance_threshold"] = pd.to_numeric(df[r["rating"]], errors="coerce") >= o.relevance_threshold
        mask = np.logical_and.reduce([m.fillna(False).to_numpy(dtype=bool) for m in keep.values()])
        out = pd.DataFrame({
            "user": df.loc[mask, r["user"]].astype(str).to_numpy(),
            "item": item[mask].to_numpy(),
            "description": df.loc[mask, r["description"]].fillna("").astype(str).to_numpy() if "description" in r else "",
        })  # fmt: skip
        if "date" in r:
            out["date"] = pd.to_datetime(df.loc[mask, r["date"]]).to_numpy()
        if "rating" in r:
            out["rating"] = pd.to_numeric(df.loc[mask, r["rating"]], errors="coerce").to_numpy(np.float64)
        dropped = {f"dropped_{k}": int((~m.fillna(False).to_numpy(dtype=bool)).sum()) for k, m in keep.items()}
        known = keep["unknown_customer"].to_numpy(dtype=bool) & (
            keep["undated"].fillna(False).to_numpy(dtype=bool) if "undated" in keep else True
        )
        history = pd.DataFrame(
            {"user": df.loc[known, r["user"]].astype(str).to_numpy(), "item": item[known].to_numpy()}
        )
        if "date" in r:
            history["date"] = pd.to_datetime(df.loc[known, r["date"]]).to_numpy()
        return (
            out,
            dropped,
            history.drop_duplicates(["user", "item"] + (["date"] if "date" in r else []), ignore_index=True),
        )

    @staticmethod
    def _before(history: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
        """The history a model may know when ``held`` is hidden from it: what came before the
        held period (dated data), else every pair but the held ones."""
        if "date" in held.columns:
            return history[history["date"] < held["date"].min()] if len(held) else history
        pairs = pd.MultiIndex.from_frame(history[["user", "item"]])
        return history[~pairs.isin(pd.MultiIndex.from_frame(held[["user", "item"]]))]

    def _split(
        self, spec: PipelineSpec, inter: pd.DataFrame, seed: int | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """Train and test interactions, and how they were split: the last ``test_period_days``
        with dates, else a seeded random hold-out of ``test_size`` of each customer's distinct
        items (customers with at least two)."""
        if "date" in inter.columns:
            start = inter["date"].max().normalize() - pd.Timedelta(days=spec.split.test_period_days - 1)
            return (
                inter[inter["date"] < start],
                inter[inter["date"] >= start],
                {"split": f"temporal: the last {spec.split.test_period_days} days", "test_start": str(start.date())},
            )
        seed = spec.split.seed if seed is None else seed
        pairs = inter.drop_duplicates(["user", "item"])[["user", "item"]]
        pairs = pairs[pairs.groupby("user")["item"].transform("size") >= 2]
        rng = np.random.default_rng(seed)
        draw = pd.Series(rng.random(len(pairs)), index=pairs.index)
        rank = draw.groupby(pairs["user"]).rank(method="first")
        size = pairs.groupby("user")["item"].transform("size")
        held = pairs[rank <= np.maximum(1, np.floor(size * spec.split.test_size))]
        is_test = pd.MultiIndex.from_frame(inter[["user", "item"]]).isin(pd.MultiIndex.from_frame(held))
        label = f"random per-customer hold-out of {spec.split.test_size:.0%} of each customer's items (seed {seed}; no dates)"
        return inter[~is_test], inter[is_test], {"split": label}

    def _targets(
        self, spec: PipelineSpec, train: pd.DataFrame, test: pd.DataFrame, before: pd.DataFrame
    ) -> tuple[list[str], list[set[str]]]:
        """Customers seen before the test period and what they bought in it (with exclude_seen,
        only items not in their history before it: the ones that can be recommended)."""
        o = self.options(spec)
        seen = train.groupby("user")["item"].agg(set)
        known = before.groupby("user")["item"].agg(set)
        bought = test[test["user"].isin(seen.index)].groupby("user")["item"].agg(set)
        users, rel = [], []
        for u, items in bought.items():
            items = items - known.get(u, set()) if o.exclude_seen else items
            if items and len(seen[u]) >= o.min_user_items:
                users.append(u)
                rel.append(items)
        return users, rel

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        inter, dropped, history = self.interactions(spec, df)
        if inter.empty:
            raise SpecError(f"pipeline {spec.name}: no purchases left after cleaning ({dropped})")
        train, test, how = self._split(spec, inter)
        before = self._before(history, test)
        users, rel = self._targets(spec, train, test, before)
        if not users:
            raise SpecError(f"pipeline {spec.name}: no customer of the test period was seen before it")
        log.info("%s: split %s", spec.name, how["split"])
        info = {
            "interactions": len(inter),
            "train_interactions": len(train),
            **how,
            "eval_customers": len(users),
            "catalogue": int(train["item"].nunique()),
            **dropped,
        }
        keys = test[["user", "item"]].drop_duplicates(ignore_index=True)  # the held-out interactions
        return Prepared(
            train.reset_index(drop=True),
            RecTest(users, rel, int(train["item"].nunique()), before, history),
            info,
            test_keys=keys,
        )

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        """Select candidate and grid point on a validation period carved from the end of train."""
        o = self.options(spec)
        inner_train, inner_val, _ = self._split(spec, data.train, seed=spec.split.seed + 1)
        before = self._before(data.test.before, inner_val)
        users, rel = self._targets(spec, inner_train, inner_val, before)
        key = spec.metric.name.replace("_at_10", f"_at_{o.k}")
        rows, best, best_score, best_name, chosen = [], None, float("-inf"), None, {}
        for c, params, estimator in self.grid_points(spec):
            est = estimator.fit(inner_train)
            m = ranking_metrics(
                est.recommend(users, o.k, o.exclude_seen, History.of(before, est.item_index_)),
                rel,
                o.k,
                inner_train["item"].nunique(),
            )
            rows.append(
                selection_row(c, params, spec, "a validation split of the training interactions", m[key], metric=key)
            )
            if m[key] > best_score:
                best, best_score, best_name, chosen = est, m[key], c.name, {**c.params, **params}
        table = selection_table(spec, rows)
        model = clone(best).fit(data.train).remember(data.test.history)  # registered: never what a user already has
        baseline = self.build(spec.baseline, spec).fit(data.train)
        return Trained(model, baseline, best_name, table, {}, chosen)

    def trained_and_tested(self, data: Prepared) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The (customer, item) pairs the model trains on, and the held-out ones it is tested on."""
        pairs = data.train[["user", "item"]].astype(str).drop_duplicates(ignore_index=True)
        return pairs, data.test_keys[["user", "item"]].astype(str)

    def slice_metrics(self, spec: PipelineSpec, model, data: Prepared, mask: np.ndarray) -> dict[str, float]:
        """The ranking metrics on the held-out pairs in ``mask`` (positions in ``data.test_keys``):
        each customer's relevant items cut to them, customers left with none dropped."""
        kept = data.test_keys[["user", "item"]].astype(str)[np.asarray(mask, dtype=bool)]
        allowed = kept.groupby("user")["item"].agg(set).to_dict()
        t = data.test
        users, rel = [], []
        for u, items in zip(t.users, t.rel, strict=True):
            if items := items & allowed.get(str(u), set()):
                users.append(u)
                rel.append(items)
        part = RecTest(users, rel, t.catalogue, t.before, t.history)
        return self.metrics(spec, model, Prepared(data.train, part, data.info, data.labels))

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        o = self.options(spec)
        t = data.test
        recs = model.recommend(t.users, o.k, o.exclude_seen, History.of(t.before, model.item_index_))
        return ranking_metrics(recs, t.rel, o.k, t.catalogue, self_information(model))

    def evaluate(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        """The kind's evaluation, plus plain item-item cosine kNN on the same split as a reference
        (``reference_item_knn_*``): a champion below it is said plainly."""
        ev = super().evaluate(spec, trained, data)
        reference = self.metrics(spec, ItemKNN().fit(data.train), data)
        ev.metrics |= {f"reference_item_knn_{k}": v for k, v in reference.items()}
        key = spec.metric.name.replace("_at_10", f"_at_{self.options(spec).k}")
        if key in reference and ev.primary < reference[key]:
            ev.warnings.append(
                f"the chosen model ({trained.best}) does worse than plain item-item cosine kNN on the test period ({key} {ev.primary:.4f} against {reference[key]:.4f})"
            )
        return ev

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        o = self.options(spec)
        users, rel, catalogue = data.test.users, data.test.rel, data.test.catalogue
        recs = trained.model.recommend(
            users, 20, o.exclude_seen, History.of(data.test.before, trained.model.item_index_)
        )
        base = trained.baseline.recommend(
            users, 20, o.exclude_seen, History.of(data.test.before, trained.baseline.item_index_)
        )
        ks = list(range(1, 21))
        fig, ax = figure(6.5, 4.5)
        for name, rr in ((trained.best, recs), ("popularity", base)):
            ax.plot(
                ks, [ranking_metrics(rr, rel, k, catalogue)[f"recall_at_{k}"] for k in ks], marker="o", ms=3, label=name
            )
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k")
        ax.set_title(f"{spec.name}: recall@k on the test period")
        ax.legend()
        figs = {"recall_at_k.png": fig}
        sample = pd.DataFrame(
            {
                "customer": users[:200],
                "recommended": [" ".join(r[: o.k]) for r in recs[:200]],
                "bought_in_test": [" ".join(sorted(s)) for s in rel[:200]],
            }
        )
        return figs, {"sample_recommendations.csv": sample}

    def examples(self, model, data: Prepared):
        users = data.test.users[:5]
        X = pd.DataFrame({"user": users})
        return X, model.predict(X)
