"""Outcomes: the truth that arrives after scoring, joined to what the champion predicted, and
how the champion does on the rows it actually scored (``modelmill outcomes``).

An outcomes file (CSV, Parquet or xlsx, like any source; or the rows of the spec's outcomes
query) names each row as its batch was keyed
(the spec's ``roles.id`` column, or without one the feature columns, whose digest is the key)
and gives its true value (a label, or an amount) in the spec's ``target`` column. Each outcome is joined once, to the
latest kept batch that scored its row (:mod:`modelmill.data.scored_rows`), into the pipeline's
ledger ``outcomes/<pipeline>/joined.parquet`` (in the project's folder, and in the object store
when there is one). Nothing is dropped unsaid: a row whose key no kept batch scored, one without
a value, one whose value is not a label of the model, and a key given twice with two values are
each counted, and the unknown keys written to a file; an outcome sent again is counted once
(the value first received is kept, a changed one is counted).

For every batch the file brought outcomes to, the realized metrics over all of that batch's
outcomes so far (a binary decision's primary metric, accuracy, Brier score and the rest of its
set; a regression's RMSE, MAE, R² and interval coverage; a multiclass table's accuracy and
macro-F1), the primary metric and the kind's main ones with a 95 % percentile-bootstrap
interval, are logged to the MLflow run of the model version that scored it as a ``live/``
series beside its ``test/`` figures: step = whole hours from the version's training to the
batch, so the UI plots the series over the version's time in service. The version's run also
gets ``live/batches.csv`` and ``live/periods.csv`` (per calendar month of scoring). A
``live_drop`` alert is sent when a batch's primary metric falls below the version's test
figure by more than ``monitoring.live_drop`` and its interval excludes the test figure.

A recommender's outcomes are interactions (user, item, and where the file has them the spec's
quantity, invoice, rating and date columns): each counted (user, item) pair is joined once to
the latest batch that recommended to the user before it, and a batch is measured per user on
what they took (NDCG, hit rate, precision and recall at ``options.k``, intervals over users).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.data import scored_rows
from modelmill.errors import SpecError
from modelmill.ops import alerts
from modelmill.ops.live import dropped, log_series
from modelmill.registry.runview import LIVE, primary_keys
from modelmill.registry.tracking import FAILED, FINISHED, Tracker

log = logging.getLogger("modelmill.outcomes")

FOLDER = "outcomes"
LEDGER = "joined.parquet"
#: a binary model's metrics given a bootstrap interval beside its primary metric
WITH_INTERVAL = ("accuracy", "brier")
RESAMPLES = 1000


@dataclass
class OutcomesResult:
    pipeline: str
    rows: int
    joined: int
    resent: int
    changed: int
    unknown: int
    unlabelled: int
    conflicting: int
    unknown_output: str | None
    run_id: str
    #: per batch the file brought outcomes to: its realized primary metric and interval
    batches: list[dict] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


def ledger_path(settings: Settings, pipeline: str) -> Path:
    return settings.home_dir / FOLDER / pipeline / LEDGER


def read_ledger(settings: Settings, pipeline: str) -> pd.DataFrame | None:
    """The outcomes joined so far (here, else from the object store), or None."""
    import io

    from modelmill.data.objectstore import ObjectStore

    path = ledger_path(settings, pipeline)
    if path.is_file():
        return pd.read_parquet(path)
    store = ObjectStore.of(settings)
    key = f"{FOLDER}/{pipeline}/{LEDGER}"
    if store is not None and store.has(key):
        return pd.read_parquet(io.BytesIO(store.read(key)))
    return None


def label_text(values: pd.Series) -> pd.Series:
    """Labels as text, a whole number written as one (``2.0`` read from a column with a gap is 2)."""

    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return pd.NA
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        text = str(v).strip()
        return text if text else pd.NA

    return values.map(one).astype("string")


#: the kinds whose outcomes are measured, and how
BINARY, REGRESSION, MULTICLASS, RANKING = (
    ("tabular_classification", "text_classification", "image_classification"),
    ("tabular_regression",),
    ("tabular_multiclass",),
    ("recommendation",),
)


def measured(spec: PipelineSpec) -> None:
    if spec.problem in REGRESSION or spec.problem in MULTICLASS or spec.problem in RANKING:
        return
    if spec.problem not in BINARY:
        raise SpecError(
            f"pipeline {spec.name}: `modelmill outcomes` measures classification and regression tables, binary text and image "
            f"classifiers and recommenders, not {spec.problem}"
        )
    if spec.positive_label is None:
        raise SpecError(
            f"pipeline {spec.name}: `modelmill outcomes` measures binary decisions; the spec names no positive_label"
        )


def _keys(spec: PipelineSpec, frame: pd.DataFrame, source_name: str) -> pd.Series:
    """Each outcome row's key, made as its batch's rows were keyed."""
    from modelmill.learn.kinds import get_kind

    id_column = spec.roles.get("id")
    if id_column:
        if id_column not in frame.columns:
            raise SpecError(
                f"pipeline {spec.name}: {source_name} has no column {id_column!r}: scored rows are keyed by roles.id"
            )
        return scored_rows.row_keys(frame, id_column, frame)[0]
    missing = [c for c in spec.features.columns() if c not in frame.columns]
    if missing:
        raise SpecError(
            f"pipeline {spec.name} names no roles.id, so its scored rows are keyed by their input values: "
            f"{source_name} must carry every feature column as it was scored (missing: {', '.join(missing)})"
        )
    return scored_rows.row_keys(frame, None, get_kind(spec.problem).model_input(spec, frame))[0]


def _interactions(spec: PipelineSpec, frame: pd.DataFrame, source_name: str) -> tuple[pd.DataFrame, int]:
    """A recommender's outcomes: the user-item interactions of ``frame`` that the spec's roles
    count as one (positive quantity, no cancellation, a rating at or above the threshold, where
    the file has those columns), keyed by user, with their date when the spec names one; and how
    many rows are not interactions."""
    from modelmill.learn.kinds import get_kind

    r = spec.roles
    missing = [r[role] for role in ("user", "item") if r[role] not in frame.columns]
    if missing:
        raise SpecError(
            f"pipeline {spec.name}: {source_name} has no column {missing[0]!r}: a recommender's outcomes are the "
            f"interactions that came after its recommendations, one row per user ({r['user']}) and item ({r['item']})"
        )
    present = {role: column for role, column in r.items() if column in frame.columns and role != "description"}
    inter, _, _ = get_kind(spec.problem).interactions(spec.model_copy(update={"roles": present}), frame)
    out = pd.DataFrame({scored_rows.KEY: inter["user"].astype("string"), "outcome": inter["item"].astype("string")})
    if "date" in inter.columns:
        when = pd.to_datetime(inter["date"])
        when = when.dt.tz_localize("UTC") if when.dt.tz is None else when.dt.tz_convert("UTC")
        out["occurred_at"] = when
    return out, len(frame) - len(inter)


def _join_interactions(incoming: pd.DataFrame, not_interactions: int, scored: pd.DataFrame, ledger):
    """A recommender's ``join``: each (user, item) interaction to the latest kept batch that
    recommended to the user before it happened (the latest one when the file has no dates);
    the same pair sent again, in this file or before, is counted once."""
    counts = {"unlabelled": not_interactions, "conflicting": 0, "changed": 0}
    pair = [scored_rows.KEY, "outcome"]
    repeated = incoming.duplicated(pair)
    counts["resent"] = int(repeated.sum())
    incoming = incoming[~repeated]
    batches = scored.drop_duplicates([scored_rows.KEY, "batch"])[
        [scored_rows.KEY, "batch", "scored_at", "model_version", "model_run"]
    ].astype({"scored_at": "datetime64[ns, UTC]"})
    if "occurred_at" in incoming.columns:  # both sides' times to one unit, or merge_asof refuses them
        when = incoming.astype({"occurred_at": "datetime64[ns, UTC]", scored_rows.KEY: "string"})
        when = when.sort_values("occurred_at").reset_index(drop=True)
        batches = batches.astype({scored_rows.KEY: "string"})
        matched = pd.merge_asof(
            when, batches.sort_values("scored_at"), left_on="occurred_at", right_on="scored_at",
            by=scored_rows.KEY, direction="backward",
        )  # fmt: skip
    else:
        latest = batches.sort_values("scored_at").drop_duplicates(scored_rows.KEY, keep="last")
        matched = incoming.merge(latest, on=scored_rows.KEY, how="left")
    unknown = matched[matched["batch"].isna()]
    matched = matched[matched["batch"].notna()]
    if ledger is not None and len(ledger):
        again = pd.MultiIndex.from_frame(matched[pair]).isin(pd.MultiIndex.from_frame(ledger[pair]))
        counts["resent"] += int(again.sum())
        matched = matched[~again]
    counts["unknown"] = len(unknown)
    return matched.reset_index(drop=True), unknown[pair], counts


def join(spec: PipelineSpec, keys: pd.Series, truth: pd.Series, scored: pd.DataFrame, ledger: pd.DataFrame | None):
    """The new ledger rows, and the counts of what was not joined (see the module docstring)."""
    incoming = pd.DataFrame({scored_rows.KEY: keys.to_numpy(), "outcome": truth.to_numpy()})
    counts = {"unlabelled": int(incoming["outcome"].isna().sum())}
    incoming = incoming.dropna(subset=["outcome"])
    values_per_key = incoming.groupby(scored_rows.KEY)["outcome"].nunique()
    conflicting = values_per_key.index[values_per_key > 1]
    counts["conflicting"] = int(incoming[scored_rows.KEY].isin(conflicting).sum())
    incoming = incoming[~incoming[scored_rows.KEY].isin(conflicting)]
    repeated = incoming.duplicated(scored_rows.KEY)
    counts["resent"] = int(repeated.sum())  # the same outcome twice in one file: counted once
    incoming = incoming[~repeated]
    latest = scored.sort_values("scored_at").drop_duplicates(scored_rows.KEY, keep="last")
    matched = incoming.merge(latest, on=scored_rows.KEY, how="left", indicator=True)
    unknown = matched[matched["_merge"] == "left_only"]
    matched = matched[matched["_merge"] == "both"].drop(columns="_merge")
    if "label_names" in matched.columns:  # an outcome may use the spec's names for the labels ("bad" for 2)
        matched["outcome"] = [
            dict(zip(json.loads(names), json.loads(labels), strict=True)).get(o, o) if names else o
            for o, names, labels in zip(matched["outcome"], matched["label_names"], matched["labels"], strict=True)
        ]
    if spec.problem in REGRESSION:  # an amount: any number
        allowed = pd.to_numeric(matched["outcome"], errors="coerce").notna()
    else:  # a class: one of the labels the version knows
        allowed = pd.Series(
            [o in json.loads(labels or "[]") for o, labels in zip(matched["outcome"], matched["labels"], strict=True)],
            index=matched.index,
            dtype=bool,
        )
    counts["unlabelled"] += int((~allowed).sum())
    matched = matched[allowed]
    if ledger is not None and len(ledger):
        known = ledger.set_index(scored_rows.KEY)["outcome"]
        again = matched[scored_rows.KEY].isin(known.index)
        counts["resent"] += int(again.sum())
        counts["changed"] = int(
            (matched.loc[again, "outcome"] != known.reindex(matched.loc[again, scored_rows.KEY]).to_numpy()).sum()
        )
        matched = matched[~again]
    else:
        counts["changed"] = 0
    counts["unknown"] = len(unknown)
    return matched.reset_index(drop=True), unknown[[scored_rows.KEY, "outcome"]], counts


def realized(spec: PipelineSpec, rows: pd.DataFrame, seed: int) -> dict[str, float]:
    """The kind's metrics of ``rows`` (ledger rows of one batch or period), with 95 % bootstrap
    intervals (``<metric>_low`` / ``<metric>_high``) for the primary metric and the kind's
    others worth one (:data:`WITH_INTERVAL`; RMSE, MAE and interval coverage of a regression;
    accuracy and macro-F1 of a multiclass table)."""
    if spec.problem in REGRESSION:
        return _realized_regression(spec, rows, seed)
    if spec.problem in MULTICLASS:
        return _realized_multiclass(spec, rows, seed)
    if spec.problem in RANKING:
        return _realized_ranking(spec, rows, seed)
    return _realized_binary(spec, rows, seed)


def _with_intervals(out: dict, fns: dict, n: int, seed: int) -> dict[str, float]:
    """``out`` with each of ``fns`` (metric -> fn(row index)) given its bootstrap interval."""
    from modelmill.learn.evaluation import bootstrap_interval

    for name, fn in fns.items():
        out[f"{name}_low"], out[f"{name}_high"] = bootstrap_interval(fn, n, resamples=RESAMPLES, seed=seed)
    return {k: float(v) for k, v in out.items()}


def _realized_regression(spec: PipelineSpec, rows: pd.DataFrame, seed: int) -> dict[str, float]:
    y = pd.to_numeric(rows["outcome"]).to_numpy(dtype=float)
    p = rows["prediction"].to_numpy(dtype=float)
    fns = {
        "rmse": lambda i: float(np.sqrt(np.mean((y[i] - p[i]) ** 2))),
        "mae": lambda i: float(np.mean(np.abs(y[i] - p[i]))),
    }
    if {"lower", "upper"} <= set(rows.columns):
        low, high = rows["lower"].to_numpy(dtype=float), rows["upper"].to_numpy(dtype=float)
        fns["interval_coverage"] = lambda i: float(np.mean((y[i] >= low[i]) & (y[i] <= high[i])))
    everything = np.arange(len(y))
    out = {name: fn(everything) for name, fn in fns.items()}
    if len(y) > 1 and np.var(y) > 0:
        out["r2"] = 1 - np.mean((y - p) ** 2) / np.var(y)
    out["mean_target"], out["mean_prediction"], out["rows"] = y.mean(), p.mean(), len(y)
    return _with_intervals(out, fns, len(y), seed)


def _realized_multiclass(spec: PipelineSpec, rows: pd.DataFrame, seed: int) -> dict[str, float]:
    from sklearn.metrics import f1_score

    y, yhat = rows["outcome"].astype(str).to_numpy(), rows["prediction"].astype(str).to_numpy()
    labels = sorted(set(y) | set(yhat))
    fns = {
        "accuracy": lambda i: float(np.mean(y[i] == yhat[i])),
        "macro_f1": lambda i: float(f1_score(y[i], yhat[i], labels=labels, average="macro", zero_division=0)),
    }
    everything = np.arange(len(y))
    out = {name: fn(everything) for name, fn in fns.items()} | {"rows": len(y)}
    return _with_intervals(out, fns, len(y), seed)


#: a recommender's realized metrics given a bootstrap interval (over users)
RANKED = ("ndcg", "hit_rate", "precision", "recall")


def _realized_ranking(spec: PipelineSpec, rows: pd.DataFrame, seed: int) -> dict[str, float]:
    """Ranking metrics at ``options.k`` of what each user of ``rows`` was recommended (their
    ``recommended`` list) against the items they took afterwards, per user, then averaged; the
    intervals resample users."""
    from modelmill.learn.kinds import get_kind
    from modelmill.learn.kinds.recommendation import ranking_metrics

    k = get_kind(spec.problem).options(spec).k
    per_user = rows.groupby(scored_rows.KEY, sort=False).agg(
        recommended=("recommended", "first"), relevant=("outcome", lambda items: set(items))
    )
    each = pd.DataFrame(
        [
            ranking_metrics([rec], [rel], k, 1)
            for rec, rel in zip(per_user["recommended"], per_user["relevant"], strict=True)
        ]
    )
    names = [f"{m}_at_{k}" for m in RANKED]
    values = {name: each[name].to_numpy(dtype=float) for name in names}
    fns = {name: (lambda i, v=v: float(v[i].mean())) for name, v in values.items()}
    everything = np.arange(len(per_user))
    out = {name: fn(everything) for name, fn in fns.items()}
    out["users"], out["rows"], out["interactions"] = len(per_user), len(per_user), len(rows)
    return _with_intervals(out, fns, len(per_user), seed)


def _realized_binary(spec: PipelineSpec, rows: pd.DataFrame, seed: int) -> dict[str, float]:
    from modelmill.learn.evaluation import binary_metric, binary_metrics
    from modelmill.learn.kinds import get_kind

    positive = rows["labels"].map(lambda t: json.loads(t)[1])
    y = (rows["outcome"] == positive).to_numpy().astype(int)
    yhat = (rows["prediction"].astype("string") == positive).to_numpy().astype(int)
    scores = "probability" if "probability" in rows.columns and rows["probability"].notna().all() else "decision_score"
    p = rows[scores].to_numpy(dtype=float)
    opts = get_kind(spec.problem).options(spec)
    cost = (opts.cost.false_negative, opts.cost.false_positive) if getattr(opts, "cost", None) else None
    out = binary_metrics(y, p, yhat, cost)
    if scores != "probability":  # a decision score ranks; it is no chance to be calibrated
        out = {k: v for k, v in out.items() if k not in ("brier", "log_loss")}
    else:
        out["mean_probability"] = float(p.mean())
    out["positive_rate"], out["rows"] = float(y.mean()), float(len(y))

    def resampled(name: str):
        fn = binary_metric(name, cost)
        return lambda i: fn(y[i], p[i], yhat[i])

    fns = {name: resampled(name) for name in dict.fromkeys((spec.metric.name, *WITH_INTERVAL)) if name in out}
    return _with_intervals(out, fns, len(y), seed)


@dataclass(frozen=True)
class _Received:
    """Where outcomes came from, for the logs and the run: a file's name, URI and sha256, or a
    query's location (its URL without the password) and the sha256 of the rows it returned."""

    name: str
    uri: str
    sha256: str


def _receive(spec: PipelineSpec, settings: Settings, input_location: str | None, base: Path | None):
    """The outcomes frame: the file at ``input_location``, else the rows of the spec's outcomes query."""
    import hashlib

    from modelmill.data.fetch import fetch_user_file
    from modelmill.data.ingest import query_location, read_query
    from modelmill.data.readers import read_table
    from modelmill.pipeline.scoring import scoring_read_options

    if input_location is None:
        if spec.outcomes is None or spec.outcomes.sql is None:
            raise SpecError(f"pipeline {spec.name}: give --input, or an `outcomes` section in its spec")
        who = f"pipeline {spec.name} outcomes"
        frame = read_query(spec.outcomes.sql, who)
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        return frame, _Received("outcomes query", query_location(spec.outcomes.sql, who), digest)
    source = fetch_user_file(input_location, settings, base=base or Path.cwd(), expected_sha256=None)
    return read_table(source, None, scoring_read_options(spec, source)), _Received(
        source.name, source.uri, source.sha256
    )


def record_outcomes(spec: PipelineSpec, settings: Settings, input_location: str | None, *, base: Path | None = None):
    """Join one outcomes file (or the spec's outcomes query, when ``input_location`` is None) to
    the kept scored rows and measure; see the module docstring."""
    from modelmill.data.objectstore import ObjectStore
    from modelmill.runtime.locks import file_lock

    measured(spec)
    frame, source = _receive(spec, settings, input_location, base)
    if spec.problem in RANKING:
        interactions, not_interactions = _interactions(spec, frame, source.name)
    elif spec.target not in frame.columns:
        raise SpecError(f"pipeline {spec.name}: {source.name} has no column {spec.target!r} with the outcomes")
    else:
        keys, truth = _keys(spec, frame, source.name), label_text(frame[spec.target])
    tracker = Tracker.of(settings)
    now = datetime.now(UTC)
    with file_lock(ledger_path(settings, spec.name).with_suffix(".lock"), f"outcomes of {spec.name}", timeout=600):
        scored = scored_rows.read_batches(settings, spec.name)
        if not len(scored):
            raise SpecError(
                f"pipeline {spec.name}: no scored batch is kept to join outcomes to (`modelmill score {spec.name}` first)"
            )
        ledger = read_ledger(settings, spec.name)
        if spec.problem in RANKING:
            new, unknown, counts = _join_interactions(interactions, not_interactions, scored, ledger)
        else:
            new, unknown, counts = join(spec, keys, truth, scored, ledger)
        run_id = tracker.start_scoring_run(
            spec,
            f"outcomes · {source.name}",
            {"modelmill.pipeline": spec.name, "modelmill.outcomes": source.sha256},
        )
        try:
            unknown_output = None
            if len(unknown):
                unknown_output = ledger_path(settings, spec.name).with_name(
                    f"unknown-{now.strftime('%Y%m%dT%H%M%SZ')}.parquet"
                )
                scored_rows.write_parquet(unknown, unknown_output, {"pipeline": spec.name, "input": source.uri})
                tracker.log_table(run_id, unknown, "tables/unknown_keys.csv")
                log.warning(
                    "%s: %d outcomes name rows no kept batch scored (e.g. %s); written to %s",
                    spec.name,
                    len(unknown),
                    ", ".join(unknown[scored_rows.KEY].astype(str).head(3)),
                    unknown_output,
                )
            if len(new):
                new = new.assign(received_at=now, input_sha256=source.sha256)
                ledger = new if ledger is None else pd.concat([ledger, new], ignore_index=True)
                path = ledger_path(settings, spec.name)
                scored_rows.write_parquet(ledger, path, {"pipeline": spec.name})
                if (store := ObjectStore.of(settings)) is not None:
                    store.publish(path, f"{FOLDER}/{spec.name}/{LEDGER}")
            result = OutcomesResult(
                spec.name,
                len(frame),
                len(new),
                counts["resent"],
                counts["changed"],
                counts["unknown"],
                counts["unlabelled"],
                counts["conflicting"],
                str(unknown_output) if unknown_output else None,
                run_id,
            )
            if len(new):
                _measure(
                    spec, settings, tracker, _with_recommendations(spec, ledger, scored), set(new["batch"]), result
                )
            tracker.log_params(run_id, {"input": source.uri, "input_sha256": source.sha256})
            tracker.log_metrics(
                run_id, {f"outcomes/{k}": v for k, v in {"rows": len(frame), "joined": len(new), **counts}.items()}
            )
        except BaseException:
            tracker.end_run(run_id, FAILED)
            raise
        tracker.end_run(run_id, FINISHED)
    return result


def _with_recommendations(spec: PipelineSpec, ledger: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """A recommender's ledger rows with the list each user was recommended in their batch
    (``recommended``, by rank); other kinds' ledgers as they are."""
    if spec.problem not in RANKING:
        return ledger
    lists = (
        scored.sort_values("rank")
        .groupby(["batch", scored_rows.KEY], sort=False)["item"]
        .agg(list)
        .rename("recommended")
        .reset_index()
    )
    return ledger.merge(lists, on=["batch", scored_rows.KEY], how="left")


def _measure(spec, settings, tracker, ledger: pd.DataFrame, touched: set[str], result: OutcomesResult) -> None:
    """Realized metrics of the batches ``touched`` (over all their outcomes so far), logged to each
    scoring version's run with that version's tables; ``live_drop`` alerts."""
    value_key = primary_keys(spec.metric.name)[0]
    for model_run, of_version in ledger.groupby("model_run", sort=False):
        if not set(of_version["batch"]) & touched:
            continue
        run = tracker.run(model_run) if model_run else None
        version = str(of_version["model_version"].iloc[0])
        test = run.data.metrics.get(value_key) if run is not None else None
        per_batch, worst = [], None
        for batch, rows in of_version.groupby("batch", sort=True):
            figures = realized(spec, rows, spec.split.seed)
            scored_at = pd.Timestamp(rows["scored_at"].iloc[0])
            estimate = json.loads(rows["estimate"].iloc[0] or "{}") if "estimate" in rows.columns else {}
            before = {f"estimated_{k}": estimate.get(k) for k in ("value", "low", "high")}
            per_batch.append({"batch": batch, "scored_at": scored_at, **figures, **before})
            if batch not in touched:
                continue
            name = spec.metric.name
            result.batches.append(
                {
                    "batch": batch,
                    "version": version,
                    "rows": int(figures["rows"]),
                    # what the figures are over: a recommender's, its users (each with their interactions)
                    "unit": f"users, {int(figures['interactions'])} interactions" if "users" in figures else "outcomes",
                    "metric": name,
                    "value": figures.get(name),
                    "low": figures.get(f"{name}_low"),
                    "high": figures.get(f"{name}_high"),
                    "test": test,
                    **before,
                }
            )
            if run is not None:
                log_series(tracker, run, LIVE, figures, scored_at)
            if (
                why := dropped(spec, figures, test, f"on {int(figures['rows'])} outcomes")
            ) is not None and worst is None:
                worst = f"v{version}, batch {batch}: {why}"
        if run is None:
            continue
        periods = [
            {"month": str(month), **realized(spec, rows, spec.split.seed)}
            for month, rows in of_version.groupby(pd.to_datetime(of_version["scored_at"]).dt.strftime("%Y-%m"))
        ]
        tracker.log_table(model_run, pd.DataFrame(per_batch), f"{LIVE}/batches.csv")
        tracker.log_table(model_run, pd.DataFrame(periods), f"{LIVE}/periods.csv")
        if worst is not None:
            result.alerts.append(worst)
            alerts.send(alerts.Alert(spec.name, "live_drop", worst, tracker.run_url(model_run)), spec, settings)
