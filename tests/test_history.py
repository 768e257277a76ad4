"""Comparison over time: drift against the champion's snapshot, backfills as of past dates that
leave the champion alone, and the history table and trend plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import artifacts, last_run, mlflow_client, registry_state, run_cli
from modelmill.ops.history import backfill_dates
from modelmill.quality.drift import drift, drift_metrics, label_shift, psi_numeric


def test_psi_is_zero_for_the_same_data_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(0, 1, 5000))
    assert psi_numeric(a, a) == pytest.approx(0, abs=1e-9)
    assert psi_numeric(a, pd.Series(rng.normal(0, 1, 5000))) < 0.02
    assert psi_numeric(a, pd.Series(rng.normal(1, 1, 5000))) > 0.25
    assert label_shift(pd.Series([0, 1] * 50), pd.Series([0] * 100)) == pytest.approx(0.5)


def test_drift_table_covers_numeric_categorical_text_and_label(tmp_path, monkeypatch):
    ref = pd.DataFrame(
        {
            "x": np.arange(200.0),
            "c": ["a", "b"] * 100,
            "t": [f"text {'x' * (i % 30)} {i}" for i in range(200)],
            "y": [0, 1] * 100,
            "when": pd.date_range("2020-01-01", periods=200),
        }
    )
    cur = ref.assign(x=ref.x + 150, c=["a"] * 200, y=[1] * 200)
    table = drift(ref, cur, target="y")
    methods = dict(zip(table.column, table.method, strict=True))
    assert methods == {"x": "psi", "c": "psi", "t": "psi_length", "y": "label_tv"}  # dates are skipped
    m = drift_metrics(table)
    assert m["drift/psi.x"] > 1 and m["drift/psi.c"] > 0.25 and m["drift/label_tv.y"] == pytest.approx(0.5)
    assert m["drift/psi_max"] == max(m["drift/psi.x"], m["drift/psi.c"], m["drift/psi_length.t"])
    # a champion's snapshot file is read one column at a time, to the same table
    import pyarrow.parquet as pq

    ref.to_parquet(tmp_path / "reference.parquet")
    reads, read_table = [], pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: reads.append(k["columns"]) or read_table(*a, **k))
    pd.testing.assert_frame_equal(drift(tmp_path / "reference.parquet", cur, target="y"), table)
    assert reads == [[c] for c in cur.columns]


def test_drift_counts_missing_values_as_a_category_whatever_the_column_type():
    """A categorical or text column with missing values (pandas 3 keeps them missing through
    ``astype(str)``) was a TypeError in the drift stage; missing is now a category of its own,
    with the same PSI whether the column is text or a pandas categorical."""
    ref = pd.DataFrame({"c": ["a", None, "b", "a"] * 50, "y": ["p", None, "q", "q"] * 50})
    cur = pd.DataFrame({"c": ["a", "a", "b", None] * 50, "y": ["p", "p", None, "q"] * 50})
    table = drift(ref, cur, target="y").set_index("column")["value"]
    assert table["c"] == 0 and table["y"] == 0.25  # same shares of a, b and missing; a quarter of labels moved
    assert drift(ref, cur.assign(c=[None] * 200), target="y").set_index("column").loc["c", "value"] > 1
    as_categories = drift(ref.astype("category"), cur.astype("category"), target="y").set_index("column")["value"]
    pd.testing.assert_series_equal(as_categories, table)


def test_backfill_dates():
    assert backfill_dates("2012-01-01", "2012-03-31", "month") == ["2012-01-31", "2012-02-29", "2012-03-31"]
    assert backfill_dates("2012-01-01", "2012-01-20", "week") == ["2012-01-06", "2012-01-13", "2012-01-20"]


def _runs(settings, pipeline):
    c = mlflow_client(settings)
    exp = c.get_experiment_by_name(f"modelmill/{pipeline}")
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _with_a_champion(env, capsys) -> str:
    """The pipeline's champion version, after a regular run when it has none yet (each test of
    this module stands alone: the store they share may or may not hold earlier runs)."""
    champion = registry_state(env, "price_forecast")[1]
    if champion is None:
        code, _, err = run_cli(capsys, "run", "price_forecast")
        assert code == 0, err
        champion = registry_state(env, "price_forecast")[1]
    assert champion is not None
    return champion


def test_backfill_builds_a_dated_history_without_touching_the_champion(env, capsys, monkeypatch):
    earlier = {r.info.run_id for r in _runs(env, "price_forecast")}
    versions_before, champion_before, _ = registry_state(env, "price_forecast")
    code, out, err = run_cli(
        capsys, "backfill", "price_forecast", "--start", "2012-04-01", "--end", "2012-06-30", "--every", "month"
    )
    assert code == 0, out + err
    runs = [r for r in _runs(env, "price_forecast") if r.info.run_id not in earlier]
    assert [r.data.tags["modelmill.as_of"] for r in runs] == ["2012-04-30", "2012-05-31", "2012-06-30"]
    assert all(r.data.tags["modelmill.trigger"] == "backfill" for r in runs)
    assert all(r.data.tags["modelmill.decision"] == "not promoted" for r in runs)
    rows = [int(r.data.params["data.rows"]) for r in runs]
    assert rows == sorted(rows) and len(set(rows)) == 3  # each trained on data up to its date
    assert len({r.data.tags["modelmill.data_digest"] for r in runs}) == 3
    last_dates = [r.data.params["split.last_date"] for r in runs]
    assert all(d <= a for d, a in zip(last_dates, ["2012-04-30", "2012-05-31", "2012-06-30"], strict=True))
    versions, champion, _ = registry_state(env, "price_forecast")
    assert len(versions) - len(versions_before) == 3 and champion == champion_before  # registered, no alias moved


def test_a_regular_run_promotes_then_backfill_leaves_the_champion_and_drift_is_measured(env, capsys, monkeypatch):
    code, _, err = run_cli(capsys, "run", "price_forecast", "--force")
    assert code == 0, err
    regular = last_run(env, "price_forecast")
    champion = registry_state(env, "price_forecast")[1]
    assert regular.data.tags["modelmill.decision"] in {"promoted", "challenger"}
    if regular.data.tags["modelmill.decision"] == "promoted":
        assert champion == regular.data.tags["modelmill.model_version"]
    reference = mlflow_client(env).get_model_version("modelmill-price_forecast", champion).run_id
    code, out, err = run_cli(capsys, "backfill", "price_forecast", "--start", "2012-07-01", "--end", "2012-07-31")
    assert code == 0, out + err
    assert registry_state(env, "price_forecast")[1] == champion
    run = last_run(env, "price_forecast")
    m = run.data.metrics
    # drift is measured against the champion's own snapshot
    champion_digest = mlflow_client(env).get_run(reference).data.tags["modelmill.data_digest"]
    assert run.data.tags["modelmill.drift_reference"] == champion_digest
    psi = {k: v for k, v in m.items() if k.startswith("drift/psi.")}
    assert {"drift/psi.close", "drift/psi.volume"} <= set(psi)
    assert m["drift/psi_max"] == max(psi.values()) > 0  # July 2012 against the years before it: prices moved
    assert {"plots/history.png"} <= artifacts(env, run, "plots")
    assert {"tables/drift.csv", "tables/history.csv"} <= artifacts(env, run, "tables")


def test_backfill_with_promote_applies_the_promotion_rule(env, capsys):
    _with_a_champion(env, capsys)
    code, out, err = run_cli(
        capsys, "backfill", "price_forecast", "--start", "2012-08-01", "--end", "2012-08-31", "--promote"
    )
    assert code == 0, out + err
    run = last_run(env, "price_forecast")
    decision = run.data.tags["modelmill.decision"]
    assert decision in {"promoted", "challenger"}  # judged against the champion, not skipped
    assert "promotion/champion_score" in run.data.metrics
    alias = "champion" if decision == "promoted" else "challenger"
    version = mlflow_client(env).get_model_version_by_alias("modelmill-price_forecast", alias).version
    assert str(version) == run.data.tags["modelmill.model_version"]


def test_history_command_prints_one_row_per_run_and_writes_the_trend_plot(env, capsys, monkeypatch, tmp_path):
    _with_a_champion(env, capsys)
    out_png = tmp_path / "trend.png"
    code, out, err = run_cli(capsys, "history", "price_forecast", "--out", str(out_png))
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("trend plot")]
    header, rows = lines[0], lines[1:]
    for col in ("date", "as_of", "data_digest", "best_model", "rmse", "champion", "decision", "drift_psi_max"):
        assert col in header
    assert len(rows) == len(_runs(env, "price_forecast"))
    assert sum("★" in r for r in rows) == 1 and "promoted" in next(r for r in rows if "★" in r)
    assert out_png.stat().st_size > 10_000 and out_png.read_bytes()[:4] == b"\x89PNG"


def test_longest_first_hands_out_the_longest_known_pipeline_first_and_keeps_the_unknown_in_order():
    from modelmill.ops.history import longest_first

    names = ["breast_cytology", "credit_risk", "new_one", "support_intent", "other_new"]
    seconds = {"breast_cytology": 15.0, "credit_risk": 10.0, "support_intent": 115.0, "new_one": None}
    assert longest_first(names, seconds) == ["support_intent", "breast_cytology", "credit_risk", "new_one", "other_new"]
    assert longest_first(names, {}) == names
