"""Forecasting the next trading day's return per series, from past prices only.

Features (lags, rolling statistics, calendar) are computed per series with backward-looking
windows, so a feature dated ``t`` uses prices up to ``t`` and nothing after (a test proves it).
Evaluation is a walk-forward backtest with an expanding window over the last ``folds`` blocks
of ``test_period_days`` trading days: every candidate recipe is refit before each block.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.evaluation import figure
from modelmill.learn.kinds.base import KindOptions, Prepared, ProblemKind, Trained
from modelmill.learn.kinds.neural import MLPRegressor, training_curves
from modelmill.learn.kinds.selection import selection_row, selection_table

log = logging.getLogger("modelmill.train")


class ForecastOptions(KindOptions):
    lags: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 5, 10], description="past returns (in trading days) used as features"
    )
    windows: list[int] = Field(
        default_factory=lambda: [5, 20, 60],
        description="rolling windows (trading days) of mean, volatility and moving-average features",
    )
    selection_folds: int = Field(3, ge=2, le=10, description="inner walk-forward folds that select the candidate")
    min_train_days: int = Field(250, ge=30, description="trading days every fold trains on at least")
    trading_cost_bps: float = Field(
        5.0, ge=0, le=1000, description="cost of each change of position in the portfolio view, in basis points"
    )


#: the series column of a spec that names no ``roles.series``: the whole file is one series
ONE_SERIES = "_series"
#: and the name of that one series (in the features and the per-series tables)
ONE_SERIES_NAME = "all"


def roles_of(spec: PipelineSpec) -> dict[str, str]:
    """The spec's roles, with :data:`ONE_SERIES` as the series of a spec that names none."""
    return {"series": ONE_SERIES, **spec.roles}


def next_return(frame: pd.DataFrame, series: str, date: str, value: str) -> pd.Series:
    """Target: the return from ``t`` to the series' next trading day (NaN on its last day)."""
    f = frame.sort_values([series, date])
    nxt = f.groupby(series, sort=False)[value].shift(-1)
    return (nxt / f[value] - 1).reindex(frame.index)


class PriceFeatures(TransformerMixin, BaseEstimator):
    """Backward-looking features per series: lagged returns, rolling mean/volatility, distance to
    moving averages, volume change and calendar. Works on any frame holding each series' history
    in date order (rows are returned in the input order)."""

    def __init__(
        self, series="ticker", date="date", value="close", volume="volume", lags=(1, 2, 3, 5, 10), windows=(5, 20, 60)
    ):
        self.series, self.date, self.value, self.volume = series, date, value, volume
        self.lags, self.windows = lags, windows

    def _one_series(self, X):
        """``X`` with a constant series column when it has none (a spec naming no roles.series)."""
        return X if self.series in X.columns else X.assign(**{self.series: ONE_SERIES_NAME})

    def fit(self, X, y=None):
        self.series_ = sorted(pd.unique(self._one_series(X)[self.series]).tolist())
        return self

    def transform(self, X):
        X = self._one_series(X)
        f = X.sort_values([self.series, self.date])
        g = f.groupby(self.series, sort=False)
        ret = g[self.value].pct_change(fill_method=None)
        out = pd.DataFrame(index=f.index)
        rg = ret.groupby(f[self.series], sort=False)
        for lag in self.lags:
            out[f"ret_lag{lag}"] = rg.shift(lag - 1)
        for w in self.windows:
            out[f"ret_mean{w}"] = rg.transform(lambda s, w=w: s.rolling(w, min_periods=w).mean())
            out[f"ret_std{w}"] = rg.transform(lambda s, w=w: s.rolling(w, min_periods=w).std())
            sma = g[self.value].transform(lambda s, w=w: s.rolling(w, min_periods=w).mean())
            out[f"close_to_sma{w}"] = f[self.value] / sma - 1
        if self.volume in f.columns:
            vol = np.log1p(f[self.volume].astype(float))
            out["log_volume_change"] = vol - vol.groupby(f[self.series], sort=False).shift(1)
        dates = pd.to_datetime(f[self.date])
        out["day_of_week"] = dates.dt.dayofweek.astype(float)
        out["month"] = dates.dt.month.astype(float)
        for s in getattr(self, "series_", []):
            out[f"is_{s}"] = (f[self.series] == s).astype(float)
        return out.reindex(X.index).astype(float)


def _pipeline(spec: PipelineSpec, opts: ForecastOptions, model) -> Pipeline:
    r = roles_of(spec)
    feats = PriceFeatures(
        r["series"], r["date"], r["value"], r.get("volume", "volume"), tuple(opts.lags), tuple(opts.windows)
    )
    return Pipeline(
        [
            ("features", feats),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )


def drawdown(returns: pd.Series) -> float:
    """The largest fall of the compounded equity curve from its running peak (a negative share)."""
    equity = (1 + returns).cumprod()
    return float((equity / equity.cummax().clip(lower=1.0) - 1).min())


def portfolio(bt: pd.DataFrame, series: str, date: str, cost_bps: float) -> tuple[pd.DataFrame, dict[str, float]]:
    """Long/flat on each series from the forecasts (long when the predicted return is positive),
    equal weight across series, against buy-and-hold of the same series over the same days.
    Returns the daily returns of both and their annualised Sharpe ratio, maximum drawdown,
    total return, and the strategy's turnover (position changes per series per day)."""
    f = bt.sort_values([series, date])
    position = (f["prediction"] > 0).astype(float)
    change = position.groupby(f[series], sort=False).diff().fillna(position).abs()
    f = f.assign(strategy=position * f["_target"] - change * cost_bps / 1e4, change=change)
    daily = f.groupby(date).agg(
        strategy=("strategy", "mean"), buy_hold=("_target", "mean"), turnover=("change", "mean")
    )
    out = {"portfolio_turnover": float(daily["turnover"].mean())}
    for col, key in (("strategy", "portfolio"), ("buy_hold", "buy_hold")):
        r = daily[col]
        sd = r.std(ddof=1)
        out[f"{key}_sharpe"] = float(r.mean() / sd * math.sqrt(252)) if sd > 0 else 0.0
        out[f"{key}_max_drawdown"] = drawdown(r)
        out[f"{key}_total_return"] = float((1 + r).prod() - 1)
    return daily, out


def diebold_mariano(e_model: np.ndarray, e_naive: np.ndarray) -> tuple[float, float]:
    """DM test (squared loss, one-step horizon): statistic and two-sided p-value."""
    d = e_model**2 - e_naive**2
    n = len(d)
    var = d.var(ddof=1) / n if n > 1 else float("nan")
    if not var or not math.isfinite(var) or var <= 0:
        return float("nan"), float("nan")
    dm = d.mean() / math.sqrt(var)
    return float(dm), float(2 * stats.norm.sf(abs(dm)))


class Forecasting(ProblemKind):
    name = "forecasting"
    Options = ForecastOptions
    METRICS = {
        "rmse": "minimize",
        "mae": "minimize",
        "skill": "maximize",
        "directional_accuracy": "maximize",
        "price_mape": "minimize",
    }
    HEADLINE = ("skill", "dm_pvalue", "directional_accuracy", "portfolio_sharpe", "buy_hold_sharpe")
    ESTIMATORS = {
        "zero_return": lambda seed, **p: DummyRegressor(strategy="constant", constant=0.0),
        "ridge": lambda seed, **p: Ridge(**p),
        "hist_gradient_boosting": lambda seed, **p: HistGradientBoostingRegressor(random_state=seed, **p),
        "mlp": lambda seed, **p: MLPRegressor(**{"seed": seed, **p}),
    }

    def check_spec(self, spec: PipelineSpec) -> None:
        super().check_spec(spec)
        missing = {"date", "value"} - set(spec.roles)
        if missing:
            raise SpecError(
                f"pipeline {spec.name}: forecasting needs roles {sorted(missing)} (and roles.series when the file holds several series)"
            )
        if spec.split.method != "walk_forward" or not spec.split.test_period_days:
            raise SpecError(
                f"pipeline {spec.name}: forecasting needs split.method walk_forward and split.test_period_days"
            )

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        r = roles_of(spec)
        if r["series"] not in df.columns:  # one series: the whole file
            df = df.assign(**{r["series"]: ONE_SERIES_NAME})
        gaps = df[r["value"]].isna()  # a holiday written as "." (read_options.na_values), a gap
        if gaps.any():
            log.info(
                "%s: %d of %d rows have no %s (holidays or gaps written as missing): left out, each return spans the gap",
                spec.name, int(gaps.sum()), len(df), r["value"],
            )  # fmt: skip
            df = df[~gaps]
        frame = df.sort_values([r["date"], r["series"]]).reset_index(drop=True)
        frame[r["date"]] = pd.to_datetime(frame[r["date"]])
        frame["_target"] = next_return(frame, r["series"], r["date"], r["value"])
        dates = np.sort(frame[r["date"]].unique())
        block, k = spec.split.test_period_days, spec.split.folds
        opts = self.options(spec)
        if len(dates) < block * k + opts.min_train_days:
            raise SpecError(
                f"pipeline {spec.name}: {len(dates)} trading days is too short for {k} folds of {block} days"
            )
        starts = [dates[len(dates) - block * (k - i)] for i in range(k)]
        info = {
            "rows": len(frame),
            "rows_without_value": int(gaps.sum()),
            "series": frame[r["series"]].nunique(),
            "first_date": str(dates[0])[:10],
            "last_date": str(dates[-1])[:10],
            "backtest_start": str(starts[0])[:10],
            "folds": k,
            "fold_days": block,
        }
        return Prepared(
            frame[frame[r["date"]] < starts[0]], frame, info | {"fold_starts": [str(s)[:10] for s in starts]}
        )

    # -- walk-forward machinery ---------------------------------------------------------------
    def _folds(self, frame: pd.DataFrame, date: str, starts: list) -> list[tuple[pd.Series, pd.Series]]:
        ends = [*starts[1:], None]
        out = []
        for s, e in zip(starts, ends, strict=True):
            train = (frame[date] < s) & frame["_target"].notna()
            test = (frame[date] >= s) & ((frame[date] < e) if e is not None else True) & frame["_target"].notna()
            out.append((train, test))
        return out

    def backtest(self, spec: PipelineSpec, recipe, frame: pd.DataFrame, starts: list) -> pd.DataFrame:
        """Refit ``recipe`` before each block; predictions for every block's rows."""
        r = roles_of(spec)
        cols = [c for c in frame.columns if c != "_target"]
        preds = []
        for i, (train, test) in enumerate(self._folds(frame, r["date"], starts)):
            model = clone(recipe).fit(frame.loc[train, cols], frame.loc[train, "_target"])
            history = frame.loc[frame[r["date"]] <= frame.loc[test, r["date"]].max(), cols]
            yhat = pd.Series(model.predict(history), index=history.index).loc[test[test].index]
            part = frame.loc[test, [r["series"], r["date"], r["value"], "_target"]].copy()
            part["prediction"], part["fold"] = yhat.to_numpy(), i
            preds.append(part)
        return pd.concat(preds)

    def _starts(self, data: Prepared) -> list:
        return [pd.Timestamp(s) for s in data.info["fold_starts"]]

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        """Select candidate and grid point by an inner walk-forward on the pre-backtest period."""
        opts = self.options(spec)
        pre = data.train
        r = roles_of(spec)
        dates = np.sort(pre[r["date"]].unique())
        k, block = opts.selection_folds, spec.split.test_period_days
        inner = [pd.Timestamp(dates[len(dates) - block * (k - i)]) for i in range(k)]
        rows, best, best_score, chosen = [], None, float("inf"), {}
        for c, params, estimator in self.grid_points(spec):
            recipe = _pipeline(spec, opts, estimator)
            bt = self.backtest(spec, recipe, pre, inner)
            rmse = float(np.sqrt(np.mean((bt["prediction"] - bt["_target"]) ** 2)))
            on = f"an inner walk-forward of {k} folds of {block} days before the backtest"
            rows.append(selection_row(c, params, spec, on, rmse, folds=k))
            if rmse < best_score:
                best, best_score, best_name, chosen = recipe, rmse, c.name, {**c.params, **params}
        table = selection_table(spec, rows)
        full = data.test
        cols = [c for c in full.columns if c != "_target"]
        known = full["_target"].notna()
        model = clone(best).fit(full.loc[known, cols], full.loc[known, "_target"])
        baseline = _pipeline(spec, opts, self.build(spec.baseline, spec)).fit(
            full.loc[known, cols], full.loc[known, "_target"]
        )
        return Trained(model, baseline, best_name, table, {}, chosen)

    def _metrics_from(self, bt: pd.DataFrame, value: str) -> dict[str, float]:
        e = (bt["prediction"] - bt["_target"]).to_numpy()
        e0 = (0.0 - bt["_target"]).to_numpy()
        rmse, rmse0 = float(np.sqrt(np.mean(e**2))), float(np.sqrt(np.mean(e0**2)))
        actual_price = bt[value] * (1 + bt["_target"])
        pred_price = bt[value] * (1 + bt["prediction"])
        moved = bt["_target"] != 0
        dm, p = diebold_mariano(e, e0)
        return {
            "rmse": rmse, "mae": float(np.mean(np.abs(e))), "naive_rmse": rmse0,
            "skill": 1 - rmse / rmse0 if rmse0 else float("nan"),
            "price_mape": float(np.mean(np.abs(pred_price - actual_price) / actual_price)),
            "directional_accuracy": float(np.mean(np.sign(bt["prediction"][moved]) == np.sign(bt["_target"][moved]))),
            "dm_statistic": dm, "dm_pvalue": p, "n_forecasts": float(len(bt)),
        }  # fmt: skip

    def warnings(self, spec: PipelineSpec, metrics: dict[str, float]) -> list[str]:
        """The portfolio view against buy-and-hold, said plainly when the strategy loses to holding."""
        ours, hold = metrics.get("portfolio_sharpe"), metrics.get("buy_hold_sharpe")
        if ours is None or hold is None or ours >= hold:
            return []
        return [
            f"long/flat on the forecasts does worse than buy-and-hold over the backtest (Sharpe {ours:.2f} against {hold:.2f}, "
            f"total return {metrics.get('portfolio_total_return', float('nan')):+.1%} against {metrics.get('buy_hold_total_return', float('nan')):+.1%}): "
            "the forecasts do not make a better portfolio than holding"
        ]

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        """Walk-forward backtest of the model's recipe (refit per fold) on this snapshot."""
        bt = self.backtest(spec, model, data.test, self._starts(data))
        out = self._metrics_from(bt, spec.roles["value"])
        out |= portfolio(bt, roles_of(spec)["series"], spec.roles["date"], self.options(spec).trading_cost_bps)[1]
        for i, part in bt.groupby("fold"):
            out[f"fold{i}_rmse"] = float(np.sqrt(np.mean((part["prediction"] - part["_target"]) ** 2)))
        return out

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        r = roles_of(spec)
        bt = self.backtest(spec, trained.model, data.test, self._starts(data))
        bt["predicted_price"] = bt[r["value"]] * (1 + bt["prediction"])
        bt["actual_price"] = bt[r["value"]] * (1 + bt["_target"])
        bt["residual"] = bt["_target"] - bt["prediction"]
        figs = {}
        series = sorted(bt[r["series"]].unique())
        fig, axes = figure(11, 2.6 * len(series))
        fig.clf()
        for i, s in enumerate(series, 1):
            ax = fig.add_subplot(len(series), 1, i)
            part = bt[bt[r["series"]] == s].tail(120)
            ax.plot(part[r["date"]], part["actual_price"], label="actual next close", lw=1.2)
            ax.plot(part[r["date"]], part["predicted_price"], label="forecast", lw=1.0, ls="--")
            ax.set_title(f"{s}: last 120 forecasts of the backtest")
            ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        figs["forecast_vs_actual.png"] = fig
        fig, axes = figure(11, 4)
        fig.clf()
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        ax1.hist(bt["residual"], bins=80)
        ax1.set_title("Residuals of next-day return")
        ax2.scatter(bt[r["date"]], bt["residual"], s=2)
        ax2.set_title("Residuals over the backtest")
        fig.tight_layout()
        figs["residuals.png"] = fig
        daily, pm = portfolio(bt, r["series"], r["date"], self.options(spec).trading_cost_bps)
        fig, ax = figure(11, 4)
        for col, label, key in (
            ("strategy", f"long/flat on {trained.best}'s forecasts", "portfolio"),
            ("buy_hold", "buy and hold", "buy_hold"),
        ):
            ax.plot(
                daily.index,
                (1 + daily[col]).cumprod(),
                label=f"{label}: Sharpe {pm[f'{key}_sharpe']:.2f}, max drawdown {pm[f'{key}_max_drawdown']:.1%}",
            )
        ax.set_ylabel("growth of 1")
        ax.set_title(
            f"{spec.name}: equal-weight portfolio over the backtest (turnover {pm['portfolio_turnover']:.2f}/day, cost {self.options(spec).trading_cost_bps:g} bp per change)"
        )
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        figs["portfolio.png"] = fig
        if (curves := training_curves(trained.model, spec.name)) is not None:
            figs["training_curves.png"] = curves
        per_series = (
            bt.groupby(r["series"])
            .apply(lambda p: pd.Series(self._metrics_from(p, r["value"])), include_groups=False)
            .reset_index()
        )
        return figs, {
            "portfolio_daily_returns.csv": daily.reset_index(),
            "per_series_metrics.csv": per_series,
            "backtest_predictions.csv": bt.drop(columns=["_target"]).rename(columns={"prediction": "predicted_return"}),
        }

    def examples(self, model, data: Prepared):
        frame = data.test.drop(columns=["_target"])
        example = frame.tail(8 * 70).reset_index(drop=True)  # enough history for the 60-day windows
        return example, model.predict(example)
