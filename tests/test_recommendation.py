"""retail_recommendations: ranking metrics checked by hand, the kind on the real UCI Online
Retail file (its quirks included), and transactions with unparseable dates refused."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import (
    artifacts,
    assert_refused_and_nothing_lost,
    last_run,
    mlflow_client,
    modelmill_env,
    registry_state,
    require_mirror,
    run_cli,
    write_user_project,
)  # fmt: skip
from modelmill.learn.kinds.recommendation import ALS, ContentBased, Hybrid, ItemKNN, Popularity, ranking_metrics


def test_ranking_metrics_match_a_hand_computation():
    recs = [["a", "b", "c"], ["x", "y", "z"]]
    rel = [{"b", "q"}, {"z"}]
    m = ranking_metrics(recs, rel, 3, catalogue=12)
    assert m["precision_at_3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall_at_3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["hit_rate_at_3"] == 1.0
    ndcg1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg2 = (1 / math.log2(4)) / 1
    assert m["ndcg_at_3"] == pytest.approx((ndcg1 + ndcg2) / 2)
    assert m["map_at_3"] == pytest.approx(((1 / 2) / 2 + (1 / 3) / 1) / 2)
    assert m["coverage_at_3"] == pytest.approx(6 / 12)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        group = u % 3  # three taste groups buying from their own 10 items
        for it in rng.choice(10, 5, replace=False):
            rows.append((f"u{u}", f"i{group * 10 + it}", f"group{group} product {it}"))
    return pd.DataFrame(rows, columns=["user", "item", "description"])


@pytest.mark.parametrize(
    "model",
    [Popularity(), ItemKNN(20), ALS(8, iterations=10), ContentBased(1, 1), Hybrid(0.5, factors=8, iterations=10)],
)
def test_recommenders_follow_the_estimator_contract_and_exclude_what_was_bought(small, model):
    fitted = model.fit(small)
    recs = fitted.recommend(["u0", "u1", "stranger"], k=5)
    assert all(len(r) == 5 for r in recs)
    bought = set(small[small.user == "u0"].item)
    assert not bought & set(recs[0])
    assert recs[2] == Popularity().fit(small).recommend(["stranger"], 5)[0]  # unknown -> popular
    assert list(fitted.predict(pd.DataFrame({"user": ["u0"]})))[0].split() == fitted.recommend(["u0"], 10)[0]
    if not isinstance(model, Popularity):  # personalised models stay within the customer's taste group
        assert sum(int(it[1:]) // 10 == 0 for it in recs[0]) >= 4


def test_retail_recommendations_on_the_real_file(env, capsys, monkeypatch):
    code, out, err = run_cli(capsys, "run", "retail_recommendations")
    assert code == 0, err
    run = last_run(env, "retail_recommendations")
    m, p = run.data.metrics, run.data.params
    for k in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage"):
        assert 0 <= m[f"test/{k}_at_10"] <= 1, k
    assert m["test/ndcg_at_10"] > 1.5 * m["test/baseline_ndcg_at_10"]  # personalisation beats popularity
    assert m["test/coverage_at_10"] > m["test/baseline_coverage_at_10"]
    # The real file's quirks, handled: ~135k lines without customer, cancellations, non-products.
    assert int(p["split.dropped_unknown_customer"]) > 130_000
    assert int(p["split.dropped_cancellation"]) > 9_000
    assert int(p["split.dropped_not_a_product_code"]) > 1_000
    assert p["split.test_start"] == "2011-11-10" and int(p["split.eval_customers"]) > 1000
    assert "plots/recall_at_k.png" in artifacts(env, run, "plots")
    assert registry_state(env, "retail_recommendations")[1] == "1"


def test_transactions_with_unparseable_dates_are_rejected(env, capsys, monkeypatch, tmp_path):
    with zipfile.ZipFile(require_mirror() / "online-retail" / "online+retail.zip") as z:
        raw = pd.read_excel(io.BytesIO(z.read("Online Retail.xlsx")), engine="calamine", nrows=12_000)
    raw["InvoiceDate"] = raw["InvoiceDate"].astype(object)
    raw.loc[[5, 500, 5000], "InvoiceDate"] = ["31/13/2011 25:61", "yesterday", "2011-02-30 10:00"]
    buf = io.BytesIO()
    raw.to_excel(buf, sheet_name="Online Retail", index=False, engine="openpyxl")
    mirror = tmp_path / "mirror"
    (mirror / "online-retail").mkdir(parents=True)
    with zipfile.ZipFile(mirror / "online-retail" / "online+retail.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Online Retail.xlsx", buf.getvalue())
    modelmill_env(monkeypatch, env.home, mirror)
    before = registry_state(env, "retail_recommendations", "online-retail")
    code, out, err = run_cli(capsys, "run", "retail_recommendations")
    run = assert_refused_and_nothing_lost(
        env, "retail_recommendations", "online-retail", before, code, 3, out + err, "data rejected"
    )
    assert "expect_column_values_to_not_be_null(invoice_date)" in run.data.tags["modelmill.failed_expectations"]


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    """A ratings export without dates, invoices or descriptions: real Online Retail customers
    and products, each pair rated 1-5 by the units the customer bought (quintiles)."""
    with zipfile.ZipFile(require_mirror() / "online-retail" / "online+retail.zip") as z:
        raw = pd.read_excel(io.BytesIO(z.read("Online Retail.xlsx")), engine="calamine", nrows=60_000)
    raw = raw[raw["CustomerID"].notna() & (raw["Quantity"] > 0)]
    pairs = raw.groupby(["CustomerID", "StockCode"], as_index=False)["Quantity"].sum()
    pairs["rating"] = pd.qcut(pairs["Quantity"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    pairs["CustomerID"] = pairs["CustomerID"].astype(int).astype(str)
    return pairs.rename(columns={"CustomerID": "customer", "StockCode": "product"})[["customer", "product", "rating"]]


def _ratings_project(tmp_path, monkeypatch, ratings, **changes):

    (tmp_path / "pipelines" / "data").mkdir(parents=True)
    (tmp_path / "expectations").mkdir()
    ratings.to_csv(tmp_path / "pipelines" / "data" / "ratings.csv", index=False)
    spec = {
        "name": "shop", "domain": "e-commerce", "description": "Products for the shop's customers, from their ratings.",
        "source": {"path": "data/ratings.csv", "format": "csv"}, "roles": {"user": "customer", "item": "product", "rating": "rating"},
        "suite": "shop.json", "split": {"method": "random", "test_size": 0.25, "seed": 3}, "problem": "recommendation",
        "baseline": {"name": "popularity", "estimator": "popularity"},
        "candidates": [{"name": "item_knn", "estimator": "item_knn", "grid": {"neighbours": [50]}}, {"name": "als", "estimator": "als", "params": {"factors": 32, "iterations": 10}}],
        "metric": {"name": "ndcg_at_10", "direction": "maximize"}, "schedule": {"cron": "0 3 * * *"},
        "options": {"relevance_threshold": 3}, **changes,
    }  # fmt: skip
    write_user_project(tmp_path, monkeypatch, spec, [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "product"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "rating", "min_value": 1, "max_value": 5}},
    ])  # fmt: skip
    from modelmill.config.settings import Settings

    return Settings()


def test_a_moved_hold_out_compares_the_champion_only_on_pairs_it_did_not_train_on(
    tmp_path, monkeypatch, capsys, prefect_api, ratings
):
    """A recommender's test set is (customer, item) pairs, not snapshot rows: when the random
    hold-out moves (a new seed), most of the new held-out pairs trained the champion, which would
    recommend them back. The two models are compared only on the held-out pairs the champion did
    not train on, and the decision says how many."""
    import yaml

    settings = _ratings_project(tmp_path, monkeypatch, ratings)
    code, out, err = run_cli(capsys, "run", "shop")
    assert code == 0, out + err
    first = last_run(settings, "shop")
    spec_file = tmp_path / "pipelines" / "shop.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["split"]["seed"] = 4
    spec_file.write_text(yaml.safe_dump(spec))
    code, out, err = run_cli(capsys, "run", "shop")
    assert code == 0, out + err
    second = last_run(settings, "shop")

    def held_out(run) -> set[tuple[str, str]]:
        path = mlflow_client(settings).download_artifacts(
            run.info.run_id, "tables/test_membership.csv", str(tmp_path / run.info.run_id)
        )
        return set(pd.read_csv(path, dtype=str).itertuples(index=False, name=None))

    old, new = held_out(first), held_out(second)
    neither = len(old & new)  # one snapshot: the champion trained on every pair it did not hold out
    assert 30 <= neither < len(new) / 2
    reason = second.data.tags["modelmill.decision_reason"]
    assert reason.endswith(f"on {neither} of {len(new)} test rows neither model trained on"), reason
    assert f"compared with champion v1 on {neither} of {len(new)}" in out + err


def test_ratings_without_dates_train_on_a_labelled_random_hold_out(tmp_path, monkeypatch, capsys, prefect_api, ratings):
    settings = _ratings_project(tmp_path, monkeypatch, ratings)
    code, out, err = run_cli(capsys, "run", "shop")
    assert code == 0, out + err
    run = last_run(settings, "shop")
    m, p = run.data.metrics, run.data.params
    assert p["split.split"] == "random per-customer hold-out of 25% of each customer's items (seed 3; no dates)"
    assert "split random per-customer hold-out" in out + err
    below = int((ratings["rating"] < 3).sum())
    assert (
        int(p["split.dropped_below_relevance_threshold"]) == below
        and int(p["split.interactions"]) == len(ratings) - below
    )
    assert "split.dropped_not_a_product_code" not in p  # no hidden item-code filter: the spec did not ask for one
    assert 0 < m["test/ndcg_at_10"] <= 1 and m["test/hit_rate_at_10"] > 0

    held = pd.read_csv(
        mlflow_client(settings).download_artifacts(run.info.run_id, "tables/test_membership.csv", str(tmp_path)),
        dtype=str,
    )
    assert list(held.columns) == ["user", "item"] and 0 < len(held) < len(ratings)  # the held-out interactions

    # No item a user already rated - low ratings too - is ever recommended: in the test period
    # (nothing of the user's history before it) ...
    from modelmill.config.spec import load_spec
    from modelmill.learn.kinds import get_kind

    spec = load_spec("shop", settings)
    data = get_kind("recommendation").prepare(spec, ratings)
    before = data.test.before.groupby("user")["item"].agg(set)
    sample = pd.read_csv(
        mlflow_client(settings).download_artifacts(run.info.run_id, "tables/sample_recommendations.csv", str(tmp_path)),
        dtype=str,
    )
    assert len(sample) == 200 and not any(
        set(r.split()) & before[str(u)] for u, r in zip(sample["customer"], sample["recommended"], strict=True)
    )
    # ... and by the registered champion, which remembers the whole file
    import mlflow

    rated = ratings.assign(product=ratings["product"].astype(str).str.upper()).groupby("customer")["product"].agg(set)
    champion = mlflow.pyfunc.load_model("models:/modelmill-shop@champion")
    recs = champion.predict(pd.DataFrame({"user": rated.index}))
    assert all(len(r.split()) == 10 and not set(r.split()) & rated[u] for u, r in zip(rated.index, recs, strict=True))

    # `modelmill score`: a list of users -> their top 10 with scores; a stranger gets the most
    # popular items (and no model score); a row without a user, or a blank one, is set aside; a
    # user named twice is recommended to once
    users = [*rated.index[:25], "a-new-customer", rated.index[0], None, " "]
    pd.DataFrame({"customer": users}).to_csv(tmp_path / "users.csv", index=False)
    code, out, err = run_cli(
        capsys, "score", "shop", "--input", str(tmp_path / "users.csv"), "--output", str(tmp_path / "recs.parquet")
    )
    assert code == 0, out + err
    assert "scored 27 of 29 rows" in out
    scored = pd.read_parquet(tmp_path / "recs.parquet")
    from modelmill.data import scored_rows

    (kept,) = scored_rows.batches(settings, "shop")  # what was recommended to whom, kept for the outcomes
    remembered = pd.read_parquet(kept)
    assert list(remembered.columns) == ["row_key", "rank", "item", "score"]
    assert remembered["row_key"].tolist() == scored["customer"].astype(str).tolist()
    assert remembered["item"].tolist() == scored["item"].tolist()
    assert scored.groupby("customer", sort=False)["rank"].apply(list).to_dict() == {
        u: list(range(1, 11)) for u in users[:26]
    }
    assert (scored.groupby("customer")["score"].diff().dropna() <= 0).all()
    assert not any(item in rated.get(u, set()) for u, item in zip(scored["customer"], scored["item"], strict=True))
    stranger = scored[scored["customer"] == "a-new-customer"]
    assert (scored["known_user"] == scored["customer"].isin(set(data.train["user"]))).all() and not stranger[
        "known_user"
    ].any()
    assert stranger["item"].tolist() == Popularity().fit(data.train).recommend(["a-new-customer"], 10)[0]
    assert stranger["score"].isna().all() and scored.loc[scored["known_user"], "score"].notna().all()
    assert len(pd.read_parquet(tmp_path / "recs.rejected.parquet")) == 2


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"options": {}}, "roles.rating and options.relevance_threshold go together"),
        (
            {"candidates": [{"name": "content", "estimator": "content"}]},
            "candidates content read item descriptions: name roles.description",
        ),
        ({"split": {"method": "temporal", "test_period_days": 30}}, "recommendation splits by random, not temporal"),
    ],
)
def test_ratings_specs_that_cannot_work_are_spec_errors(
    tmp_path, monkeypatch, capsys, prefect_api, ratings, changes, fragment
):
    _ratings_project(tmp_path, monkeypatch, ratings.head(50), **changes)
    code, out, err = run_cli(capsys, "run", "shop")
    assert code == 1 and fragment in err


def movielens_shaped(seed: int = 0, users: int = 500, items: int = 700) -> pd.DataFrame:
    """Explicit ratings with timestamps as MovieLens-100k writes them (u.data: user, item, rating,
    epoch seconds; tab-separated, no header), generated: items belong to genres, each user likes
    one or two of them, popularity is long-tailed, and what a user rates later in time follows
    the same tastes. (MovieLens itself may not be redistributed.)"""
    rng = np.random.default_rng(seed)
    genres = rng.integers(0, 12, items)
    popularity = 1 / np.arange(1, items + 1) ** 0.8
    popularity = popularity[rng.permutation(items)]
    rows = []
    start = 880_000_000  # 1997, as the real file
    for u in range(1, users + 1):
        liked = rng.choice(12, size=rng.integers(1, 3), replace=False)
        affinity = np.where(np.isin(genres, liked), 6.0, 0.4)
        p = popularity * affinity
        n = int(rng.integers(20, 120))
        picked = rng.choice(items, size=n, replace=False, p=p / p.sum())
        times = np.sort(start + rng.integers(0, 210 * 86400, n))
        for item, t in zip(picked, times, strict=True):
            base = 4.2 if genres[item] in liked else 2.6
            rows.append((u, int(item) + 1, int(np.clip(np.round(base + rng.normal(0, 0.9)), 1, 5)), int(t)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_explicit_ratings_with_timestamps_train_a_champion_well_above_popularity(
    tmp_path, monkeypatch, capsys, prefect_api
):

    ratings = movielens_shaped()
    (tmp_path / "pipelines" / "data").mkdir(parents=True)
    (tmp_path / "expectations").mkdir()
    ratings.to_csv(tmp_path / "pipelines" / "data" / "u.data", sep="\t", header=False, index=False)
    spec = {
        "name": "films", "domain": "e-commerce", "description": "Films for each member, from their ratings.",
        "source": {"path": "data/u.data", "format": "csv", "read_options": {"sep": "\t", "header": False, "columns": ["user_id", "item_id", "rating", "timestamp"]},
                   "parse_dates": ["timestamp"], "date_unit": "s"},
        "roles": {"user": "user_id", "item": "item_id", "rating": "rating", "date": "timestamp"},
        "suite": "films.json", "split": {"method": "temporal", "test_period_days": 30}, "problem": "recommendation",
        "baseline": {"name": "popularity", "estimator": "popularity"},
        "candidates": [
            {"name": "item_knn", "estimator": "item_knn", "grid": {"neighbours": [50]}},
            {"name": "item_knn_shrunk", "estimator": "item_knn", "params": {"normalize_ratings": True}, "grid": {"neighbours": [100], "shrinkage": [10.0, 50.0]}},
            {"name": "item_knn_debiased", "estimator": "item_knn", "params": {"shrinkage": 10.0}, "grid": {"popularity_penalty": [0.3, 0.6]}},
            {"name": "bpr", "estimator": "bpr", "params": {"iterations": 60}, "grid": {"factors": [32]}},
            {"name": "als", "estimator": "als", "params": {"iterations": 10}, "grid": {"factors": [32], "regularization": [0.05, 1.0]}},
        ],
        "metric": {"name": "ndcg_at_10", "direction": "maximize"}, "schedule": {"cron": "0 3 * * *"},
        "options": {"relevance_threshold": 4},
    }  # fmt: skip
    write_user_project(tmp_path, monkeypatch, spec, [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "rating", "min_value": 1, "max_value": 5}},
    ])  # fmt: skip
    from modelmill.config.settings import Settings

    code, out, err = run_cli(capsys, "run", "films")
    assert code == 0, out + err
    run = last_run(Settings(), "films")
    m, p = run.data.metrics, run.data.params
    assert p["split.split"] == "temporal: the last 30 days" and int(p["split.eval_customers"]) > 100
    ours, popular, knn = m["test/ndcg_at_10"], m["test/baseline_ndcg_at_10"], m["test/reference_item_knn_ndcg_at_10"]
    assert ours >= 1.5 * popular, (p["model.candidate"], ours, popular)
    assert ours >= knn - 0.005, (
        p["model.candidate"],
        ours,
        knn,
    )  # never below plain item-item cosine kNN (beyond noise)
    assert m["test/coverage_at_10"] > 3 * m["test/baseline_coverage_at_10"]
    assert m["test/novelty_at_10"] > m["test/baseline_novelty_at_10"] > 0  # it reaches past the best sellers
    selection = pd.read_csv(
        mlflow_client(Settings()).download_artifacts(run.info.run_id, "tables/model_selection.csv", str(tmp_path))
    )
    assert set(selection["candidate"]) == {"item_knn", "item_knn_shrunk", "item_knn_debiased", "bpr", "als"}
    from modelmill.learn.kinds.selection import SELECTION_COLUMNS  # one schema for every kind

    assert tuple(selection.columns) == SELECTION_COLUMNS and (selection["metric"] == "ndcg_at_10").all()
    assert selection["score"].is_monotonic_decreasing and selection["candidate"][0] == p["model.candidate"]


def test_the_items_customers_took_after_their_recommendations_measure_the_champion(
    tmp_path, monkeypatch, capsys, prefect_api, ratings
):
    """``modelmill outcomes`` for a recommender: the interactions that came after a batch of
    recommendations are joined once to the users they were made to, and the champion's realized
    NDCG and hit rate (intervals over users) reach its MLflow run as the ``live/`` series."""
    later = ratings.groupby("customer", group_keys=False).sample(frac=0.25, random_state=5)
    known = ratings.drop(later.index)
    settings = _ratings_project(tmp_path, monkeypatch, known)
    code, out, err = run_cli(capsys, "run", "shop")
    assert code == 0, out + err
    trained = last_run(settings, "shop").info.run_id
    users = pd.Series(sorted(known["customer"].unique())[:300], name="customer")
    users.to_frame().to_csv(tmp_path / "users.csv", index=False)
    code, out, err = run_cli(
        capsys, "score", "shop", "--input", str(tmp_path / "users.csv"), "--output", str(tmp_path / "recs.parquet")
    )
    assert code == 0, out + err

    # what the customers rated since: the scored ones' and 40 rows of customers never scored,
    # 60 rows twice; ratings below the spec's threshold are not interactions
    sent = pd.concat([later, later.iloc[:60]])
    never = sent[~sent["customer"].isin(users)]
    sent = pd.concat([sent[sent["customer"].isin(users)], never.iloc[:40]])
    sent.to_csv(tmp_path / "since.csv", index=False)
    code, out, err = run_cli(capsys, "outcomes", "shop", "--input", str(tmp_path / "since.csv"))
    assert code == 0, out + err
    interactions = sent[sent["rating"] >= 3]
    liked = interactions.drop_duplicates(["customer", "product"])
    joined = liked[liked["customer"].isin(users)]
    assert f"{len(joined)} of {len(sent)} outcomes joined" in out, out
    assert f"{len(interactions) - len(liked)} sent before (counted once)" in out
    assert f"{len(liked) - len(joined)} name rows no kept batch scored" in out and len(liked) > len(joined)
    assert f"{len(sent) - len(interactions)} have no value" in out

    # the realized figures, recomputed by hand from the file `score` wrote
    recs = pd.read_parquet(tmp_path / "recs.parquet").astype({"customer": str})
    lists = recs.sort_values("rank").groupby("customer")["item"].agg(list)
    took = joined.assign(product=joined["product"].astype(str).str.upper()).groupby("customer")["product"].agg(set)
    expected = ranking_metrics([lists[u] for u in took.index], list(took), 10, 1)
    live = mlflow_client(settings).get_run(trained).data.metrics
    assert live["live/ndcg_at_10"] == pytest.approx(expected["ndcg_at_10"])
    assert live["live/hit_rate_at_10"] == pytest.approx(expected["hit_rate_at_10"]) and expected["hit_rate_at_10"] > 0
    assert live["live/ndcg_at_10_low"] < live["live/ndcg_at_10"] < live["live/ndcg_at_10_high"]
    assert live["live/users"] == len(took)
    assert f"(v1, {len(took)} users, {len(joined)} interactions): ndcg_at_10 {expected['ndcg_at_10']:.4f}" in out

    # sent again: nothing new is joined, and the series gets no second point
    code, out, err = run_cli(capsys, "outcomes", "shop", "--input", str(tmp_path / "since.csv"))
    assert code == 0 and f"0 of {len(sent)} outcomes joined" in out, out + err
    assert f"{len(interactions) - len(liked) + len(joined)} sent before (counted once)" in out
    history = mlflow_client(settings).get_metric_history(trained, "live/ndcg_at_10")
    assert len(history) == 1
