"""A pipeline's history: one row per run, and the trend plot logged with every run. A run whose
model version scored batches shows that version's latest figure in service beside its test
figure: realized on the batch's outcomes (``live``, ``modelmill outcomes``) and estimated before
they arrived (``estimated``, CBPE)."""

from __future__ import annotations

import pandas as pd

from modelmill.errors import ModelmillError
from modelmill.learn.evaluation import figure
from modelmill.registry.runview import ESTIMATED, LIVE, mkey, primary_keys

COLUMNS = [
    "date",
    "run_id",
    "status",
    "as_of",
    "data_digest",
    "best_model",
    "metric",
    "live",
    "estimated",
    "version",
    "champion",
    "decision",
    "drift_psi_max",
]


def _col(runs: pd.DataFrame, name: str, default=None) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series([default] * len(runs), index=runs.index)


def history_frame(runs: pd.DataFrame, champion_version: str | None, metric: str) -> pd.DataFrame:
    """From MLflow's ``search_runs`` frame (oldest first) to the history table of ``metric``."""
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    version = _col(runs, "tags.modelmill.model_version").fillna("")
    decision = _col(runs, "tags.modelmill.decision").fillna(
        _col(runs, "tags.modelmill.status").fillna(runs["status"].str.lower())
    )
    out = pd.DataFrame({
        "date": pd.to_datetime(runs["start_time"]).dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M"),
        "run_id": runs["run_id"].str[:8],
        "status": runs["status"],
        "as_of": _col(runs, "tags.modelmill.as_of").fillna("latest"),
        "data_digest": _col(runs, "tags.modelmill.data_digest").fillna("").str[:12],
        "best_model": _col(runs, "params.model.candidate").fillna(""),
        "metric": pd.to_numeric(_col(runs, f"metrics.{primary_keys(metric)[0]}"), errors="coerce"),
        "live": pd.to_numeric(_col(runs, f"metrics.{mkey(LIVE, metric)}"), errors="coerce"),
        "estimated": pd.to_numeric(_col(runs, f"metrics.{mkey(ESTIMATED, metric)}"), errors="coerce"),
        "version": version,
        "champion": (version == (champion_version or "∅")),
        "decision": decision,
        "drift_psi_max": pd.to_numeric(_col(runs, "metrics.drift/psi_max"), errors="coerce"),
    })  # fmt: skip
    return out.reset_index(drop=True)


def history_figure(frame: pd.DataFrame, pipeline: str, metric: str):
    """Primary metric per run over time (champion starred, rejected runs marked), drift beneath."""
    fig, _ = figure(9, 6)
    fig.clf()
    ax, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    x = list(range(len(frame)))
    labels = [a if a != "latest" else d for a, d in zip(frame["as_of"], frame["date"], strict=True)]
    trained = frame["metric"].notna()
    ax.plot(
        [i for i, t in zip(x, trained, strict=True) if t], frame.loc[trained, "metric"], marker="o", lw=1, label=metric
    )
    champ = frame["champion"]
    if champ.any():
        ax.scatter(
            [i for i, c in zip(x, champ, strict=True) if c],
            frame.loc[champ, "metric"],
            marker="*",
            s=220,
            c="gold",
            edgecolors="k",
            zorder=3,
            label="current champion",
        )
    shown = {
        "live": ("v", "tab:red", "live {} (latest batch's outcomes)"),
        "estimated": ("^", "tab:grey", "estimated {} (latest batch, CBPE)"),
    }
    for column, (marker, colour, label) in shown.items():
        has = frame[column].notna() if column in frame.columns else pd.Series(False, index=frame.index)
        if has.any():
            ax.scatter(
                [i for i, v in zip(x, has, strict=True) if v],
                frame.loc[has, column],
                marker=marker,
                s=60,
                c=colour,
                zorder=3,
                label=label.format(metric),
            )
    failed = ~trained & (frame["status"] != "FINISHED")  # a skipped (unchanged) run trained nothing and failed nothing
    if failed.any():
        lo = frame["metric"].min() if trained.any() else 0
        ax.scatter(
            [i for i, f in zip(x, failed, strict=True) if f],
            [lo] * int(failed.sum()),
            marker="x",
            c="red",
            label="rejected / failed",
        )
    ax.set_title(f"{pipeline}: test {metric} per run, and in service")
    ax.legend(fontsize=8)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax2.bar(x, frame["drift_psi_max"].fillna(0), color="tab:orange")
    ax2.axhline(0.25, ls="--", c="grey", lw=0.8)
    ax2.set_title("max PSI against the champion's training snapshot")
    ax2.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    return fig


def longest_first(names: list[str], seconds: dict[str, float | None]) -> list[str]:
    """The order to hand pipelines to N workers: longest expected first (each pipeline's last
    trained run), so the longest one starts at once instead of after the short ones have filled
    the workers; pipelines with no history keep their given order, after the known ones."""
    known = sorted((n for n in names if seconds.get(n) is not None), key=lambda n: -seconds[n])  # type: ignore[operator]
    return known + [n for n in names if seconds.get(n) is None]


def backfill_dates(start: str, end: str, every: str) -> list[str]:
    """The ends of each day, week, month or quarter between two dates (a backfill's as-of dates)."""
    freq = {"day": "D", "week": "W-FRI", "month": "ME", "quarter": "QE"}[every]
    dates = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=freq)
    if len(dates) == 0:
        raise ModelmillError(f"no {every} end between {start} and {end}")
    return [d.strftime("%Y-%m-%d") for d in dates]
