"""price_forecast: features never look ahead, the walk-forward backtest and DM test are right,
and the flow trains on the real mirrored Stooq prices and refuses broken price files."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import (
    REPO,
    artifacts,
    assert_refused_and_nothing_lost,
    last_run,
    modelmill_env,
    registry_state,
    require_mirror,
    run_cli,
    write_spec,
    write_user_project,
)  # fmt: skip
from modelmill.config.settings import Settings
from modelmill.data.catalog import CATALOG
from modelmill.data.fetch import fetch_catalog_file
from modelmill.data.readers import read_stooq
from modelmill.learn.kinds.forecasting import PriceFeatures, diebold_mariano, drawdown, next_return, portfolio


@pytest.fixture(scope="module")
def prices(tmp_path_factory) -> pd.DataFrame:
    s = Settings(home=tmp_path_factory.mktemp("h"), data_mirror=str(require_mirror()))
    e = CATALOG["stooq-daily"]
    return read_stooq({f.name: fetch_catalog_file(e, f, s) for f in e.files})


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    return PriceFeatures().fit(frame).transform(frame)


@pytest.mark.parametrize("cut", ["2005-06-15", "2010-01-04", "2012-11-30"])
def test_no_feature_uses_information_after_its_date(prices, cut):
    """Features dated <= cut are identical whether or not the future exists, or is scrambled."""
    cutoff = pd.Timestamp(cut)
    full = _features(prices)
    past = prices[prices.date <= cutoff]
    truncated = _features(past)
    # Scramble every price and volume after the cut: nothing dated before it may move.
    scrambled = prices.astype({"volume": "float64"})
    future = scrambled.date > cutoff
    rng = np.random.default_rng(0)
    for c in ("open", "high", "low", "close", "volume"):
        scrambled.loc[future, c] = scrambled.loc[future, c].to_numpy() * rng.uniform(0.5, 1.5, future.sum())
    scrambled_feats = _features(scrambled)
    idx = past.index
    pd.testing.assert_frame_equal(full.loc[idx], truncated.loc[idx])
    pd.testing.assert_frame_equal(full.loc[idx], scrambled_feats.loc[idx])
    assert full.loc[idx].notna().any().all()


def test_target_is_the_next_trading_day_return_per_ticker(prices):
    y = next_return(prices, "ticker", "date", "close")
    aapl = prices[prices.ticker == "AAPL"].sort_values("date")
    expected = aapl.close.shift(-1) / aapl.close - 1
    pd.testing.assert_series_equal(y.loc[aapl.index], expected, check_names=False)
    last = prices.groupby("ticker").date.idxmax()
    assert y.loc[last].isna().all()


def test_diebold_mariano_detects_a_better_forecast_and_not_an_equal_one():
    rng = np.random.default_rng(1)
    actual = rng.normal(0, 1, 2000)
    good, bad = actual + rng.normal(0, 0.3, 2000), actual + rng.normal(0, 1.0, 2000)
    stat, p = diebold_mariano(good - actual, bad - actual)
    assert stat < 0 and p < 1e-6
    stat, p = diebold_mariano(bad - actual, bad - actual + 0.0)
    assert np.isnan(stat)  # identical losses: no test


def test_drawdown_is_the_largest_fall_from_a_peak():
    assert drawdown(pd.Series([0.1, -0.5, 0.2])) == pytest.approx(0.55 / 1.1 - 1)
    assert drawdown(pd.Series([0.01, 0.02])) == 0.0
    assert drawdown(pd.Series([-0.1, 0.05])) == pytest.approx(-0.1)  # a loss from the starting capital counts


def _backtest_rows(prices: pd.DataFrame) -> pd.DataFrame:
    f = prices[prices["date"] >= "2012-01-01"].copy()
    f["_target"] = next_return(f, "ticker", "date", "close")
    return f[f["_target"].notna()].reset_index(drop=True)


def test_the_portfolio_view_against_buy_and_hold_on_real_prices(prices):
    bt = _backtest_rows(prices)
    days, series = bt["date"].nunique(), bt["ticker"].nunique()
    hold = portfolio(bt.assign(prediction=1.0), "ticker", "date", 0.0)[1]
    daily = bt.groupby("date")["_target"].mean()
    assert hold["buy_hold_total_return"] == pytest.approx(float((1 + daily).prod() - 1))
    assert hold["portfolio_total_return"] == pytest.approx(hold["buy_hold_total_return"])  # always long = buy and hold
    assert hold["portfolio_turnover"] == pytest.approx(1 / days)  # one entry per series, on the first day
    costly = portfolio(bt.assign(prediction=1.0), "ticker", "date", 10.0)[1]
    assert costly["portfolio_total_return"] < hold["portfolio_total_return"]
    flat = portfolio(bt.assign(prediction=-1.0), "ticker", "date", 5.0)[1]
    assert (
        flat["portfolio_total_return"],
        flat["portfolio_sharpe"],
        flat["portfolio_turnover"],
        flat["portfolio_max_drawdown"],
    ) == (0.0, 0.0, 0.0, 0.0)
    seer = portfolio(bt.assign(prediction=bt["_target"]), "ticker", "date", 5.0)[1]  # perfect foresight
    assert seer["portfolio_sharpe"] > 5 and seer["portfolio_total_return"] > hold["buy_hold_total_return"]
    assert seer["portfolio_max_drawdown"] > hold["buy_hold_max_drawdown"] and 0 < seer["portfolio_turnover"] <= 1
    assert series == 4


def test_the_run_says_plainly_when_the_strategy_loses_to_buy_and_hold(prices):
    from modelmill.config.spec import load_spec
    from modelmill.learn.kinds.forecasting import Forecasting
    from modelmill.ops.report import summary_table

    spec = load_spec("price_forecast", Settings(pipelines_dir=REPO / "pipelines"))
    bt = _backtest_rows(prices)
    loser = portfolio(bt.assign(prediction=-bt["_target"]), "ticker", "date", 5.0)[1]  # wrong every day
    (warning,) = Forecasting().warnings(spec, loser)
    assert (
        "does worse than buy-and-hold" in warning
        and f"Sharpe {loser['portfolio_sharpe']:.2f} against {loser['buy_hold_sharpe']:.2f}" in warning
    )
    assert (
        Forecasting().warnings(spec, portfolio(bt.assign(prediction=bt["_target"]), "ticker", "date", 5.0)[1]) == []
    )  # a winner: nothing to say
    table = summary_table(
        [
            {
                "pipeline": "p",
                "status": "trained",
                "metric": "rmse",
                "direction": "minimize",
                "value": 0.1,
                "baseline": 0.1,
                "warnings": [warning],
            }
        ]
    )
    assert "WARNING: long/flat on the forecasts does worse than buy-and-hold" in table


@pytest.fixture
def env(tmp_path, monkeypatch, prefect_api):
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    return Settings()


def test_price_forecast_flow_backtests_against_the_random_walk(env, capsys):
    code, out, err = run_cli(capsys, "run", "price_forecast")
    assert code == 0, err
    run = last_run(env, "price_forecast")
    m = run.data.metrics
    for k in (
        "rmse",
        "mae",
        "price_mape",
        "directional_accuracy",
        "skill",
        "dm_statistic",
        "dm_pvalue",
        "naive_rmse",
        "lift_over_baseline",
    ):
        assert f"test/{k}" in m, k
    assert m["test/n_forecasts"] == 4 * 5 * 100 - 4  # 4 tickers x 5 folds x 100 days, last day has no target
    assert m["test/naive_rmse"] == pytest.approx(m["test/baseline_rmse"])
    assert m["test/skill"] == pytest.approx(1 - m["test/rmse"] / m["test/naive_rmse"])
    assert abs(m["test/skill"]) < 0.2  # daily returns are close to a random walk: no miracle
    # the Diebold-Mariano test is the judge of "better than naive": its statistic's sign is the
    # comparison of squared errors, its p-value the two-sided normal tail of that statistic, and on
    # these prices the difference is noise (the run's own test says so; its RMSE edge is 0.1 %)
    assert (m["test/dm_statistic"] < 0) == (m["test/rmse"] < m["test/naive_rmse"])
    assert m["test/dm_pvalue"] == pytest.approx(2 * stats.norm.sf(abs(m["test/dm_statistic"])))
    assert m["test/dm_pvalue"] > 0.05
    assert (m["test/lift_over_baseline"] > 0) == (m["test/rmse"] < m["test/baseline_rmse"])
    assert 0.4 < m["test/directional_accuracy"] < 0.6
    assert {"plots/forecast_vs_actual.png", "plots/residuals.png", "plots/portfolio.png"} <= artifacts(
        env, run, "plots"
    )
    for k in (
        "portfolio_sharpe",
        "portfolio_max_drawdown",
        "portfolio_turnover",
        "portfolio_total_return",
        "buy_hold_sharpe",
        "buy_hold_max_drawdown",
    ):
        assert np.isfinite(m[f"test/{k}"]), k
    assert m["test/baseline_portfolio_turnover"] == 0.0  # the random walk forecasts no rise: always flat
    assert -1 < m["test/buy_hold_max_drawdown"] < 0 and m["test/buy_hold_sharpe"] == m["test/baseline_buy_hold_sharpe"]
    assert "tables/per_series_metrics.csv" in artifacts(env, run, "tables")
    loses = m["test/portfolio_sharpe"] < m["test/buy_hold_sharpe"]
    assert ("WARNING: long/flat on the forecasts does worse than buy-and-hold" in out) == loses
    assert ("modelmill.warnings" in run.data.tags) == loses and (
        "Warning:" in run.data.tags["mlflow.note.content"]
    ) == loses
    assert registry_state(env, "price_forecast")[1] == "1"


def test_broken_prices_are_rejected(env, capsys, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(require_mirror() / "stooq-daily", mirror / "stooq-daily")
    p = mirror / "stooq-daily" / "ibm.us.csv"
    lines = p.read_text().splitlines()
    fields = lines[10].split(",")
    fields[4] = "-12.5"  # a negative close
    lines[10] = ",".join(fields)
    lines.insert(20, lines[19])  # a duplicated day
    p.write_text("\n".join(lines) + "\n")
    modelmill_env(monkeypatch, env.home, mirror)
    before = registry_state(env, "price_forecast", "stooq-daily")
    code, out, err = run_cli(capsys, "run", "price_forecast")
    run = assert_refused_and_nothing_lost(
        env, "price_forecast", "stooq-daily", before, code, 3, out + err, "data rejected"
    )
    failed = run.data.tags["modelmill.failed_expectations"]
    assert "expect_column_values_to_be_between(close)" in failed and "expect_compound_columns_to_be_unique" in failed


def test_too_short_a_history_is_a_clear_error(env, capsys, monkeypatch, tmp_path):
    spec = write_spec(tmp_path, "price_forecast", split={"test_period_days": 1000})
    code, out, err = run_cli(capsys, "run", str(spec))
    assert code == 1 and "too short" in (out + err)


def test_a_first_forecaster_worse_than_the_random_walk_is_not_promoted(env, capsys, tmp_path):
    """One deep, unregularised boosting model chases the noise of daily returns: its RMSE is worse
    than predicting no change, so it does not become the first champion unless the spec says so."""
    noisy = [
        {
            "name": "deep_boosting",
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 200, "learning_rate": 1.0, "max_depth": 8, "early_stopping": False},
        }
    ]
    spec = write_spec(tmp_path, "price_forecast", candidates=noisy)
    code, out, err = run_cli(capsys, "run", str(spec))
    assert code == 0, out + err
    run = last_run(env, "price_forecast")
    m = run.data.metrics
    assert m["test/rmse"] > m["test/baseline_rmse"]
    assert run.data.tags["modelmill.decision"] == "challenger"
    assert "worse than its naive baseline's" in run.data.tags["modelmill.decision_reason"]
    assert "promotion.allow_worse_than_baseline" in run.data.tags["modelmill.decision_reason"]
    assert registry_state(env, "price_forecast")[1] is None

    spec = write_spec(tmp_path, "price_forecast", candidates=noisy, promotion={"allow_worse_than_baseline": True})
    code, out, err = run_cli(capsys, "run", str(spec), "--force")
    assert code == 0, out + err
    assert registry_state(env, "price_forecast")[1] == "2"


def test_one_series_needs_no_series_column(prices, tmp_path, monkeypatch, capsys, prefect_api):
    """A file holding one series (IBM's real daily closes, no ticker column) and a spec naming only
    its date and value train and backtest as the four-ticker pipeline does."""
    import yaml

    ibm = prices[prices["ticker"] == "IBM"].drop(columns="ticker")
    (tmp_path / "pipelines" / "data").mkdir(parents=True)
    ibm.to_csv(tmp_path / "pipelines" / "data" / "ibm.csv", index=False)
    spec = yaml.safe_load((REPO / "pipelines" / "price_forecast.yaml").read_text())
    spec |= {
        "name": "ibm", "source": {"path": "data/ibm.csv", "format": "csv", "parse_dates": ["date"]}, "suite": "ibm.json",
        "roles": {"date": "date", "value": "close", "volume": "volume"},
        "candidates": [{"name": "ridge", "estimator": "ridge", "grid": {"alpha": [1000.0]}}],
    }  # fmt: skip
    not_null = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}} for c in ("date", "close")]
    write_user_project(tmp_path, monkeypatch, spec, not_null)
    code, out, err = run_cli(capsys, "run", "ibm")
    assert code == 0, out + err
    run = last_run(Settings(), "ibm")
    m = run.data.metrics
    assert m["test/rmse"] > 0 and m["test/baseline_rmse"] > 0 and run.data.params["split.series"] == "1"


def test_init_proposes_a_forecast_for_one_series_or_many(prices, tmp_path, monkeypatch, capsys, prefect_api):
    """A FRED-style export of IBM's real closes (every weekday a row, holidays written as ".")
    goes init -> check -> run with no edit: the problem, the missing-value marker, the holidays
    and the backtest's size are inferred and said; score names the alternative. The four tickers
    in one file are proposed as four series."""
    from modelmill.data.schema_inference import propose

    many = propose("prices", prices, {"path": "prices.csv"}, target="close")
    assert many.spec["problem"] == "forecasting"
    assert many.spec["roles"] == {"date": "date", "value": "close", "series": "ticker", "volume": "volume"}

    ibm = prices[prices["ticker"] == "IBM"].set_index("date")["close"].iloc[-1500:]
    weekdays = pd.bdate_range(ibm.index.min(), ibm.index.max())
    fred = pd.DataFrame({"DATE": weekdays.strftime("%Y-%m-%d"), "IBMCLOSE": ibm.reindex(weekdays).round(4)})
    holidays = int(fred["IBMCLOSE"].isna().sum())
    assert holidays > 30  # ten years of market holidays, as FRED writes them
    fred.fillna(".").to_csv(tmp_path / "fred.csv", index=False)
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "project" / "pipelines")
    code, out, err = run_cli(capsys, "init", "ibm_fred", "--from", str(tmp_path / "fred.csv"), "--target", "IBMCLOSE")
    assert code == 0, out + err
    assert "problem forecasting" in out and "IBMCLOSE writes a missing value as '.'" in out
    assert f"{holidays} rows have no IBMCLOSE (holidays or gaps written as missing)" in out
    assert "0 weekdays in between have no row" in out and "backtest: 5 folds of 100 steps" in out
    code, out, err = run_cli(capsys, "check", "ibm_fred")
    assert code == 0 and "the gate passes" in out and f"rows_without_value {holidays}" in out, out + err
    code, out, err = run_cli(capsys, "run", "ibm_fred")
    assert code == 0, out + err
    assert f"{holidays} of {len(fred)} rows have no IBMCLOSE" in err
    run = last_run(Settings(), "ibm_fred")
    assert run.data.params["split.series"] == "1" and run.data.params["split.rows"] == str(len(fred) - holidays)
    assert run.data.metrics["test/n_forecasts"] == 499  # five folds of 100 trading days; the last has no next day
    from conftest import mlflow_client
    from modelmill.learn.kinds.selection import SELECTION_COLUMNS  # one schema for every kind

    selection = pd.read_csv(
        mlflow_client(Settings()).download_artifacts(run.info.run_id, "tables/model_selection.csv", str(tmp_path))
    )
    assert tuple(selection.columns) == SELECTION_COLUMNS and (selection["metric"] == "rmse").all()
    assert selection["score"].is_monotonic_increasing and (selection["folds"] == 3).all()  # lowest RMSE first
    assert selection["candidate"][0] == run.data.params["model.candidate"]
    code, out, err = run_cli(
        capsys, "score", "ibm_fred", "--input", str(tmp_path / "fred.csv"), "--output", "x.parquet"
    )
    assert code != 0 and "a forecast is not scored row by row: `modelmill run ibm_fred`" in err
