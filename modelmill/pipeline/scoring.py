"""Batch scoring with a pipeline's champion (``modelmill score``).

The input file's rows first pass the suite's row-level rules on the feature columns (and the
declared numeric types); rows that fail are not scored but written beside the output with the
rule they broke, and counted. The champion (its files checked against the sha256 recorded at
registration) scores the rest; the output Parquet carries every input column, the prediction,
its probability, the model version and the input file's sha256 (also in the file's metadata).
Each batch is an MLflow run in the pipeline's ``…/scoring`` experiment: counts, the drift of the
features and of the scores against the champion's training snapshot, and the rejected rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.data import scored_rows
from modelmill.data.imagefiles import IMAGE_PROBLEM
from modelmill.data.objectstore import local_snapshot
from modelmill.errors import SpecError
from modelmill.ops import alerts
from modelmill.quality.drift import MIN_ROWS_FOR_PSI, drift, drift_metrics, psi_numeric
from modelmill.registry.tracking import CANDIDATE, CHALLENGER, CHAMPION, FAILED, FINISHED, SHADOW_TAG, Tracker
from modelmill.runtime.cores import under_budget
from modelmill.runtime.reconcile import OUTPUT_TAG, owner_tags

log = logging.getLogger("modelmill.score")

SCORABLE = (
    "tabular_classification",
    "tabular_multiclass",
    "tabular_regression",
    "text_classification",
    "image_classification",
    "recommendation",
)
REJECTED_SUFFIX = ".rejected.parquet"


@dataclass
class ScoreResult:
    pipeline: str
    version: str
    rows: int
    scored: int
    rejected: int
    output: str
    rejected_output: str | None
    input_sha256: str
    score_psi: float
    run_id: str
    #: with --shadow: the version that scored the batch beside the champion, and how they agreed
    shadow: dict | None = None
    #: a binary champion's performance on this batch estimated before its outcomes arrive (CBPE):
    #: the primary metric, its interval and the version's test figure, or the reason there is none
    estimate: dict | None = None
    #: the largest PSI of a feature against the champion's training snapshot (nan: not measured)
    psi_max: float = float("nan")
    #: whether the batch has enough rows for its PSI to say anything (``drift.MIN_ROWS_FOR_PSI``)
    psi_meaningful: bool = True


def bad_rows(spec: PipelineSpec, df: pd.DataFrame, settings: Settings) -> tuple[pd.Series, dict[str, int]]:
    """Why each row may not be scored ("" when it may), and how many rows each rule refused:
    the gate's numeric checks of the declared features (a number, present unless imputed,
    finite, not too large) row by row, then the suite's row-level rules on the feature columns."""
    from modelmill.quality.rules import ROW_RULES, numeric_row_problems
    from modelmill.quality.validate import is_array_column, load_suite_dict, rows_failing

    cols = spec.features.columns()
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SpecError(
            f"pipeline {spec.name}: the input has no column {', '.join(missing)} (the champion needs {', '.join(cols)})"
        )
    reason = pd.Series("", index=df.index, dtype="object")
    counts: dict[str, int] = {}

    def mark(label: str, mask) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=df.index)
        counts[label] = int(mask.sum())
        reason[mask & (reason == "")] = label

    if IMAGE_PROBLEM in df.columns:  # a file of an image batch that gave no image
        for why in df[IMAGE_PROBLEM].unique():
            if why:
                mark(why, df[IMAGE_PROBLEM] == why)
    for col, rule, mask in numeric_row_problems(spec, df):
        mark(f"{col} {ROW_RULES[rule]}", mask)
    typed = df[cols].copy()
    for c in (c for c in cols if is_array_column(typed[c])):  # images: the suite sees each array's length
        typed[c] = typed[c].map(lambda v: None if v is None else len(v))
    for c in spec.features.numeric:
        typed[c] = pd.to_numeric(df[c], errors="coerce")  # the suite sees numbers where numbers are declared
    rules = [
        e
        for e in load_suite_dict(spec.suite_path(settings))["expectations"]
        if e["type"].startswith("expect_column_values_to") and e.get("kwargs", {}).get("column") in cols
    ]
    tolerated = imputed_nulls_tolerated(spec, rules, len(df))
    for label, index in rows_failing(typed, rules):
        if label in tolerated and len(index) <= tolerated[label]:
            log.info("%s: %d rows break %s within its mostly; the champion imputes them", spec.name, len(index), label)
            continue
        mark(label, df.index.isin(index))
    return reason, counts


def imputed_nulls_tolerated(spec: PipelineSpec, rules: list[dict], rows: int) -> dict[str, int]:
    """Not-null rules with ``mostly`` on columns the champion imputes, and how many of a batch's
    rows may break each: missing values it fills are scored while the batch stays within the
    rule, as the gate judged the training data (beyond it, every row with a hole is set aside)."""
    imputed = set(spec.features.numeric) if spec.impute.numeric != "none" else set()
    imputed |= set(spec.features.categorical) if spec.impute.categorical != "none" else set()
    out = {}
    for e in rules:
        kw = e.get("kwargs", {})
        if (
            e["type"] == "expect_column_values_to_not_be_null"
            and kw.get("column") in imputed
            and kw.get("mostly", 1) < 1
        ):
            out[f"{e['type']}({kw['column']})"] = int(np.floor((1 - float(kw["mostly"])) * rows + 1e-9))
    return out


def _write_batch(scored: pd.DataFrame, rejected: pd.DataFrame, out_path: Path, meta: dict[str, str]) -> Path | None:
    """The scores, and beside them the rows set aside (if any). An earlier batch's rejected rows
    are removed: the output folder describes the latest batch only."""
    scored_rows.write_parquet(scored, out_path, meta)
    path = rejected_file(out_path)
    path.unlink(missing_ok=True)
    if not len(rejected):
        return None
    scored_rows.write_parquet(rejected, path, meta)
    return path


def _positive_scores(model, X: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The positive class's probability (the top class's for multiclass), or the decision value
    of a model without probabilities (a linear SVM), or a regressor's prediction, and which it is."""
    from sklearn.base import is_regressor

    if is_regressor(model):
        return np.asarray(model.predict(X), dtype=float), "prediction"
    if hasattr(model, "predict_proba"):
        p = model.predict_proba(X)
        return (p[:, 1] if p.shape[1] == 2 else p.max(axis=1)), "probability"
    d = np.asarray(model.decision_function(X))
    return (d if d.ndim == 1 else d.max(axis=1)), "decision_score"


def scoring_read_options(spec: PipelineSpec, source):
    """The spec's reader options where the batch has the training file's format; a batch in
    another format (a Parquet batch of a CSV-trained pipeline) is read with that format's own."""
    from modelmill.config.spec import ReadOptions
    from modelmill.data.readers import table_format

    trained = (
        table_format(Path(spec.source.path or spec.source.url or "data.csv"), spec.source.format)
        if spec.source.dataset is None
        else "csv"
    )
    batch = table_format(source.path, None)
    if batch == trained:
        return spec.source.read_options
    given = spec.source.read_options.model_dump(exclude_unset=True)
    return ReadOptions(**{k: v for k, v in given.items() if k in ReadOptions.OTHER_FORMATS.get(batch, set(given))})


def image_input(location: str, settings: Settings, *, base: Path, expected_sha256=None):
    """A batch of images to score: a folder of image files (beside each other, or in class
    folders), an ``.npz`` archive, or a CSV of image paths. A folder's checksum is that of its
    files' names and checksums."""
    import hashlib

    from modelmill.data.digests import sha256_file
    from modelmill.data.fetch import LocalFile, fetch_user_file, locate_user_file
    from modelmill.data.imagefiles import folder_files

    path = Path(location).expanduser()
    if not (path if path.is_absolute() else base / path).is_dir():
        return fetch_user_file(location, settings, base=base, expected_sha256=expected_sha256)
    root = locate_user_file(location, settings, base=base, folder=True)
    images, others = folder_files(root)
    listing = "\n".join(f"{p.relative_to(root)}\t{sha256_file(p)}" for p in images + others)
    return LocalFile(root.name, root, root.as_uri(), hashlib.sha256(listing.encode()).hexdigest(), "user")


def read_image_batch(spec: PipelineSpec, settings: Settings, source) -> pd.DataFrame:
    """The batch's images at the size the champion reads (the options' height x width); a CSV's
    image paths are relative to it, and confined like any source."""
    from modelmill.data.fetch import locate_user_file
    from modelmill.data.imagefiles import folder_files, read_image_folder, read_image_table, read_npz
    from modelmill.data.readers import read_table, table_format
    from modelmill.learn.kinds import get_kind

    opts = get_kind(spec.problem).options(spec)
    size = (opts.height, opts.width)
    how = table_format(source.path, None)
    if how == "images":
        images, others = folder_files(source.path)  # a file that gives no image is a rejected row
        return read_image_folder(
            {str(p.relative_to(source.path)): p for p in images},
            size,
            [str(p.relative_to(source.path)) for p in others],
            lenient=True,
        )
    if how == "npz":
        return read_npz(source.path, source.name, size)
    table = read_table(source, None, scoring_read_options(spec, source))
    column = (
        spec.source.images.paths_column
        if spec.source.images is not None and spec.source.images.paths_column
        else "file"
    )
    if column not in table.columns:
        raise SpecError(
            f"pipeline {spec.name}: a CSV batch of images names each image's file in column {column!r}, which {source.name} lacks"
        )
    if (missing := table[column].isna()).any():
        raise SpecError(
            f"pipeline {spec.name}: {int(missing.sum())} rows of {source.name} name no image in column {column!r}"
        )
    paths = {
        str(v): locate_user_file(str(v), settings, base=source.path.parent)
        for v in dict.fromkeys(table[column].astype(str))
    }
    return read_image_table(table, column, paths, size)


def shadow_ref(tracker: Tracker, spec: PipelineSpec):
    """The version that shadows the champion: the candidate awaiting approval, else the challenger."""
    for alias in (CANDIDATE, CHALLENGER):
        ref = tracker.alias(spec, alias)
        if ref is not None:
            return ref
    return None


@under_budget
def score(
    spec: PipelineSpec,
    settings: Settings,
    input_location: str,
    output: str,
    *,
    base: Path | None = None,
    shadow: bool = False,
    reasons: int = 0,
    output_base: Path | None = None,
) -> ScoreResult:
    """Score one batch file with the champion; see the module docstring. With ``shadow`` (or the
    spec's ``scoring.shadow``), the candidate (else the challenger) scores it too: the output
    keeps the champion's predictions, the run logs how the two agree. ``reasons`` > 0 (tabular
    classification): each scored row's top reasons, from its SHAP values against a sample of the
    champion's training rows. ``output`` is read from ``output_base`` (the spec's folder) and confined
    like a source path; ``output_base`` None: an operator's own path, from the working directory."""
    from modelmill.data.fetch import fetch_user_file, writable_file
    from modelmill.data.readers import read_table

    if spec.problem == "forecasting":
        raise SpecError(
            f"pipeline {spec.name}: a forecast is not scored row by row: `modelmill run {spec.name}` on the newest prices forecasts each series' next step (the run's tables/backtest_predictions.csv)"
        )
    if spec.problem not in SCORABLE:
        raise SpecError(
            f"pipeline {spec.name}: `modelmill score` scores {' and '.join(SCORABLE)} pipelines, not {spec.problem}"
        )
    if reasons and spec.problem not in ("tabular_classification", "tabular_regression"):
        raise SpecError(
            f"pipeline {spec.name}: --reasons explains binary classification and regression tables, not {spec.problem}"
        )
    if not 0 <= reasons <= 50:
        raise SpecError(f"--reasons {reasons}: give 1 to 50 reasons per row (0: none)")
    if not output.endswith(".parquet"):
        raise SpecError(f"score output {output} must be a .parquet file")
    out_path = writable_file(output, settings, base=output_base)
    if out_path.is_dir():
        raise SpecError(f"score output {out_path} is a folder; name a .parquet file")
    tracker = Tracker.of(settings)
    champion = tracker.alias(spec, CHAMPION)
    if champion is None:
        raise SpecError(f"pipeline {spec.name} has no champion yet: `modelmill run {spec.name}` first")
    shadowing = None
    if shadow or (spec.scoring is not None and spec.scoring.shadow):
        shadowing = shadow_ref(tracker, spec)
        if shadowing is None:
            log.warning(
                "%s: no candidate or challenger to shadow the champion; scoring with the champion alone", spec.name
            )
    source = (image_input if spec.problem == "image_classification" else fetch_user_file)(
        input_location, settings, base=base or Path.cwd(), expected_sha256=None
    )
    if source.path.resolve() in (out_path, rejected_file(out_path)):
        raise SpecError(
            f"score output {out_path} would overwrite the batch being scored ({source.path}); write the scores elsewhere"
        )
    tags = {
        "modelmill.pipeline": spec.name,
        "modelmill.model_version": champion.version,
        "modelmill.input_sha256": source.sha256,
        OUTPUT_TAG: str(out_path),
        **owner_tags(),  # a batch whose process dies is marked FAILED by the next command, like a run
    }
    if shadowing is not None:
        tags[SHADOW_TAG] = shadowing.version
    run_id = tracker.start_scoring_run(
        spec,
        f"score · v{champion.version}{f' (shadow v{shadowing.version})' if shadowing else ''} · {source.name}",
        tags,
    )
    try:
        if spec.problem == "recommendation":
            result = _score_recommendations(spec, settings, tracker, champion, source, out_path, run_id, read_table)
        else:
            result = _score(spec, settings, tracker, champion, source, out_path, run_id, read_table, shadowing, reasons)
    except BaseException as e:
        tracker.set_tags(run_id, {"modelmill.failure": str(e).splitlines()[0][:500] if str(e) else type(e).__name__})
        tracker.end_run(run_id, FAILED)
        raise
    tracker.end_run(run_id, FINISHED)
    share = result.rejected / result.rows if result.rows else 0.0
    if share > spec.monitoring.score_rejected:
        cause = f"{result.rejected} of {result.rows} rows ({share:.1%}) of {source.name} were set aside, not scored (over monitoring.score_rejected {spec.monitoring.score_rejected:.0%}): {result.rejected_output}"
        alerts.send(alerts.Alert(spec.name, "score_rejected", cause, tracker.run_url(run_id)), spec, settings)
    return result


def _labels_of_old_model(spec, kind, champion, ref: pd.DataFrame | None) -> tuple:
    """(negative, positive) for a model logged without its labels: from its training snapshot, or
    a refusal, never 0/1 where the data's labels belong."""
    if ref is None:
        raise SpecError(
            f"pipeline {spec.name}: champion v{champion.version} carries no label names and its training snapshot "
            "is not here: retrain it (`modelmill run --force`) rather than score with 0/1 for its labels"
        )
    return kind.label_names(spec, ref[spec.target])


def _remember(spec, settings, tracker, run_id: str, rows: pd.DataFrame, meta: dict) -> None:
    """Keep what this batch predicted for each row (:mod:`modelmill.data.scored_rows`), and name
    the record on the scoring run."""
    from datetime import UTC, datetime

    at = datetime.now(UTC)
    name = scored_rows.batch_name(at, run_id)
    path = scored_rows.record(
        settings, spec.name, name, rows, meta | {"batch": name, "scored_at": at.isoformat(timespec="seconds")}
    )
    tracker.set_tags(run_id, {"modelmill.scored_batch": name})
    log.info("%s: batch %s: %d predictions kept in %s", spec.name, name, len(rows), path)


def rejected_file(out_path: Path) -> Path:
    """Where a batch's rejected rows are written, beside its scores."""
    return out_path.with_name(out_path.name.removesuffix(".parquet") + REJECTED_SUFFIX)


def _shadow(spec, kind, tracker, shadowing, X, champion_pred, champion_scores, run_id: str) -> dict:
    """The shadow version's answers on the rows the champion scored, against the champion's:
    agreement of labels, correlation of scores, and its own score drift against its training
    data. Logged on the scoring run; nothing of it reaches the output."""
    model = tracker.load_model(shadowing, spec)  # sha256-checked like the champion
    pred = model.predict(X)
    scores = _positive_scores(model, X)[0]
    agreement = float(np.mean(np.asarray(pred) == np.asarray(champion_pred))) if len(pred) else float("nan")
    corr = (
        float(np.corrcoef(scores, champion_scores)[0, 1])
        if len(scores) > 1 and np.std(scores) > 0 and np.std(champion_scores) > 0
        else float("nan")
    )
    out = {"version": shadowing.version, "agreement": agreement, "score_correlation": corr, "score_psi": float("nan")}
    reference = (
        local_snapshot(tracker.run(shadowing.run_id).data.tags.get("modelmill.snapshot", ""), tracker.settings)
        if shadowing.run_id
        else None
    )
    if reference is not None and len(scores):
        ref_scores = _positive_scores(model, kind.model_input(spec, pd.read_parquet(reference)))[0]
        out["score_psi"] = float(psi_numeric(pd.Series(ref_scores), pd.Series(scores)))
    tracker.log_metrics(run_id, {f"shadow/{k}": v for k, v in out.items() if k != "version" and v == v})
    tracker.log_params(run_id, {"shadow_version": shadowing.version, "shadow_run": shadowing.run_id})
    log.info(
        "%s: shadow v%s agrees with champion on %.1f%% of %d rows (score correlation %.3f)",
        spec.name,
        shadowing.version,
        100 * agreement,
        len(pred),
        corr,
    )
    return out


def _score(
    spec, settings, tracker, champion, source, out_path: Path, run_id: str, read_table, shadowing=None, reasons: int = 0
) -> ScoreResult:
    t0 = time.time()
    from modelmill.learn.kinds import get_kind
    from modelmill.learn.kinds.regression import predict_interval
    from modelmill.quality.validate import is_array_column

    kind = get_kind(spec.problem)
    model, labels = tracker.load_model_and_labels(champion, spec)
    raw = (
        read_image_batch(spec, settings, source)
        if spec.problem == "image_classification"
        else read_table(source, None, scoring_read_options(spec, source))
    )
    reference = (
        local_snapshot(tracker.run(champion.run_id).data.tags.get("modelmill.snapshot", ""), settings)
        if champion.run_id
        else None
    )
    ref = pd.read_parquet(reference) if reference is not None else None
    reason, counts = bad_rows(spec, raw, settings)
    raw = raw.drop(columns=IMAGE_PROBLEM, errors="ignore")
    ok = reason == ""
    good = raw[ok]
    X = kind.model_input(spec, good)
    meta = {
        "pipeline": spec.name,
        "model_version": champion.version,
        "model_run": champion.run_id or "",
        "input_sha256": source.sha256,
        "input": source.uri,
    }
    scored = good.copy()
    kept_labels = None  # a binary batch's predictions as the data writes its labels, kept for the outcomes
    if len(good):
        scores, column = _positive_scores(model, X)
        # the model's own codes (what a shadow version is compared on); a regressor's are its scores
        predicted = scores if column == "prediction" else model.predict(X)
        scored["prediction"] = predicted
        scored[column] = np.round(scores, 6)
        if spec.positive_label is not None:  # the data's own labels, not 0/1: they travel with the model
            negative, positive = labels or _labels_of_old_model(spec, kind, champion, ref)
            is_positive = scored["prediction"].to_numpy() == 1
            kept_labels = np.where(is_positive, positive, negative)
            shown = kind.label_display(spec, (negative, positive))  # the spec's names for them, where given
            scored["prediction"] = np.where(is_positive, shown[1], shown[0])
            meta["labels"] = json.dumps([str(negative), str(positive)])  # how outcomes are read later
            if shown != (negative, positive):
                meta["label_names"] = json.dumps(list(shown))
        elif spec.problem == "tabular_multiclass":  # every class's label and probability
            if not labels:
                raise SpecError(
                    f"pipeline {spec.name}: champion v{champion.version} carries no class labels: retrain it"
                )
            names = np.asarray(labels, dtype=object)
            scored["prediction"] = names[np.asarray(predicted).astype(int)]
            for i, p in enumerate(np.asarray(model.predict_proba(X)).T):
                scored[f"probability_{names[i]}"] = np.round(p, 6)
            meta["labels"] = json.dumps([str(n) for n in names])
    else:
        scores, column, predicted = np.array([]), "probability", np.array([])
        scored["prediction"], scored[column] = pd.Series(dtype="object"), pd.Series(dtype="float64")
    if len(good) and (interval := predict_interval(model, X)) is not None:  # a regressor's interval
        scored["lower"], scored["upper"] = np.round(interval[0], 6), np.round(interval[1], 6)
    estimate = None
    if spec.positive_label is not None and column == "probability" and len(good) and champion.run_id:
        estimate = _estimate(spec, settings, tracker, champion, scores, predicted, run_id)
        meta["estimate"] = json.dumps(estimate)
    if reasons:
        scored = _with_reasons(spec, kind, model, X, ref, scored, reasons)
    scored["model_version"], scored["input_sha256"] = champion.version, source.sha256
    shadowed = (
        _shadow(spec, kind, tracker, shadowing, X, np.asarray(predicted), scores, run_id)
        if shadowing is not None and len(good)
        else None
    )
    rejected_path = _write_batch(scored, raw[~ok].assign(rejected_because=reason[~ok]), out_path, meta)
    keys, keyed = scored_rows.row_keys(good, spec.roles.get("id"), X)
    predicted_columns = [
        c for c in ("prediction", "probability", "decision_score", "lower", "upper") if c in scored.columns
    ]
    _remember(
        spec,
        settings,
        tracker,
        run_id,
        pd.concat(
            [
                keys.rename(scored_rows.KEY),
                scored[predicted_columns]
                .reset_index(drop=True)
                .assign(**({"prediction": kept_labels} if kept_labels is not None else {})),
            ],
            axis=1,
        ),
        meta | {"keyed_by": keyed, **({"shadow_version": shadowing.version} if shadowing is not None else {})},
    )
    if rejected_path is not None:
        log.warning(
            "%s: %d of %d rows rejected, not scored (%s); they are in %s",
            spec.name,
            int((~ok).sum()),
            len(raw),
            "; ".join(f"{k}: {v}" for k, v in counts.items() if v),
            rejected_path,
        )
    metrics = {
        "score/rows": len(raw),
        "score/scored": int(ok.sum()),
        "score/rejected": int((~ok).sum()),
        **{f"score/rejected.{k}": v for k, v in counts.items() if v},
    }
    score_psi = float("nan")
    if ref is not None and len(good):
        ref_scores = _positive_scores(model, kind.model_input(spec, ref))[0]
        score_psi = psi_numeric(pd.Series(ref_scores), pd.Series(scores))
        metrics |= {
            "drift/score_psi": score_psi,
            f"score/mean_{column}": float(scores.mean()),
            f"score/reference_mean_{column}": float(ref_scores.mean()),
        }
        if columns := [
            c for c in spec.features.columns() if not is_array_column(ref[c])
        ]:  # image pixels: the score's drift only
            table = drift(ref[columns], good[columns])
            metrics |= drift_metrics(table)
            tracker.log_table(run_id, table, "tables/drift.csv")
    tracker.log_params(
        run_id,
        {
            "input": source.uri,
            "input_sha256": source.sha256,
            "output": str(out_path),
            "model_version": champion.version,
            "model_run": champion.run_id,
        },
    )
    tracker.log_metrics(run_id, {k: float(v) for k, v in metrics.items() if v == v})
    tracker.log_dict(run_id, counts, "tables/rejected_rows_by_rule.json")
    log.info(
        "%s: v%s scored %d of %d rows into %s in %.1f s (score PSI vs training %.3f)",
        spec.name,
        champion.version,
        int(ok.sum()),
        len(raw),
        out_path,
        time.time() - t0,
        score_psi,
    )
    return ScoreResult(
        spec.name,
        champion.version,
        len(raw),
        int(ok.sum()),
        int((~ok).sum()),
        str(out_path),
        str(rejected_path) if rejected_path else None,
        source.sha256,
        score_psi,
        run_id,
        shadowed,
        estimate,
        float(metrics.get("drift/psi_max", float("nan"))),
        int(ok.sum()) >= MIN_ROWS_FOR_PSI,
    )


def _estimate(spec, settings, tracker, champion, scores, predicted, run_id: str) -> dict:
    """The batch's expected figures before its outcomes arrive (:mod:`modelmill.learn.estimation`),
    logged as ``estimated/`` on the scoring run and as a point of the version's ``estimated/``
    series; a ``live_drop`` alert when the estimate is clearly below the test figure."""
    from modelmill.learn.estimation import calibrated_enough, cbpe
    from modelmill.learn.evaluation import binary_metric
    from modelmill.learn.kinds import get_kind
    from modelmill.ops.live import dropped, log_series
    from modelmill.registry.runview import ESTIMATED, PRIMARY, TEST, mkey

    run = tracker.run(champion.run_id)
    test = {k.removeprefix(f"{TEST}/"): v for k, v in run.data.metrics.items() if k.startswith(f"{TEST}/")}
    primary = run.data.metrics.get(mkey(PRIMARY, spec.metric.name))
    out = {"metric": spec.metric.name, "test": primary}
    reason = calibrated_enough(test)
    if reason is not None:
        log.info("%s: no estimate of v%s's figures before the outcomes: %s", spec.name, champion.version, reason)
        tracker.set_tags(run_id, {"modelmill.estimate": f"none: {reason}"})
        return out | {"reason": reason}
    opts = get_kind(spec.problem).options(spec)
    cost = (opts.cost.false_negative, opts.cost.false_positive) if getattr(opts, "cost", None) else None
    names = dict.fromkeys((spec.metric.name, "roc_auc", "accuracy", "f1", *(["expected_cost"] if cost else [])))
    figures = cbpe(scores, np.asarray(predicted), {n: binary_metric(n, cost) for n in names}, seed=spec.split.seed)
    figures["rows"] = float(len(scores))
    tracker.log_metrics(run_id, {mkey(ESTIMATED, k): v for k, v in figures.items()})
    log_series(tracker, run, ESTIMATED, figures, pd.Timestamp.now(tz="UTC"))
    name = spec.metric.name
    out |= {"value": figures.get(name), "low": figures.get(f"{name}_low"), "high": figures.get(f"{name}_high")}
    why = dropped(spec, figures, primary, f"estimated (CBPE) on {len(scores)} scored rows before their outcomes")
    if why is not None:
        out["alert"] = why
        alerts.send(
            alerts.Alert(spec.name, "live_drop", f"v{champion.version}: {why}", tracker.run_url(run_id)), spec, settings
        )
    return out


def _with_reasons(
    spec, kind, model, X: pd.DataFrame, ref: pd.DataFrame | None, scored: pd.DataFrame, k: int
) -> pd.DataFrame:
    """``scored`` with each row's ``k`` reasons (:func:`modelmill.learn.explain.reason_codes`): SHAP
    values against ``explain.background_rows`` rows of the champion's training snapshot."""
    from modelmill.learn import explain

    if ref is None:
        raise SpecError(
            f"pipeline {spec.name}: --reasons needs the champion's training snapshot (the reference its SHAP values are measured against), which is not available here"
        )
    if not len(X):
        return scored.assign(**{f"reason_{i + 1}": pd.Series(dtype="object") for i in range(k)})
    background = kind.model_input(
        spec, ref.iloc[explain.sample_rows(len(ref), spec.explain.background_rows, spec.split.seed + 1)]
    )
    t0 = time.time()
    sv = explain.shap_values(model, X, background, seed=spec.split.seed)
    log.info(
        "%s: %d reasons for each of %d rows from SHAP values (%s explainer) in %.1f s",
        spec.name,
        k,
        len(X),
        sv.method,
        time.time() - t0,
    )
    codes = explain.reason_codes(sv, k)
    codes.index = scored.index
    return pd.concat([scored, codes], axis=1)


def _score_recommendations(
    spec, settings, tracker, champion, source, out_path: Path, run_id: str, read_table
) -> ScoreResult:
    """A batch of users -> each one's top ``options.k`` items with their scores (one row per user
    and rank), never an item the user already has in the training data; users the model does not
    know get the most popular items (``known_user`` false, no model score: a popularity count is
    not one). Rows without a user are set aside; a user named twice is recommended to once."""
    from modelmill.learn.kinds import get_kind

    t0 = time.time()
    k = get_kind(spec.problem).options(spec).k
    column = spec.roles["user"]
    raw = read_table(source, None, scoring_read_options(spec, source))
    if column not in raw.columns:
        raise SpecError(
            f"pipeline {spec.name}: a batch to recommend for names its users in column {column!r} (roles.user), which {source.name} lacks"
        )
    model = tracker.load_model(champion, spec)
    ok = raw[column].notna().to_numpy() & (raw[column].astype("string").str.strip() != "").fillna(False).to_numpy()
    named = raw.loc[ok, column].astype(str).str.strip()
    users = list(dict.fromkeys(named))  # each user once, in the batch's order
    if len(users) < len(named):
        log.info(
            "%s: %d rows name a user already in the batch; each user is recommended to once",
            spec.name,
            len(named) - len(users),
        )
    ranked = model.ranked(users, k)
    known = {u: u in model.users_ for u in users}
    out = pd.DataFrame(
        [
            (u, rank, item, round(score, 6) if known[u] else float("nan"))
            for u, (items, scores) in zip(users, ranked, strict=True)
            for rank, (item, score) in enumerate(zip(items, scores, strict=True), 1)
        ],
        columns=[column, "rank", "item", "score"],
    )
    out["known_user"] = out[column].map(known).astype(bool)
    out["model_version"], out["input_sha256"] = champion.version, source.sha256
    meta = {
        "pipeline": spec.name,
        "model_version": champion.version,
        "model_run": champion.run_id or "",
        "input_sha256": source.sha256,
        "input": source.uri,
    }
    rejected_path = _write_batch(out, raw[~ok].assign(rejected_because=f"{column} is present"), out_path, meta)
    _remember(
        spec,
        settings,
        tracker,
        run_id,
        out[[column, "rank", "item", "score"]]
        .rename(columns={column: scored_rows.KEY})
        .astype({scored_rows.KEY: "string"}),
        meta | {"keyed_by": f"roles.user ({column})"},
    )
    if rejected_path is not None:
        log.warning(
            "%s: %d of %d rows name no user, not scored; they are in %s",
            spec.name,
            int((~ok).sum()),
            len(raw),
            rejected_path,
        )
    metrics = {
        "score/rows": len(raw), "score/scored": int(ok.sum()), "score/rejected": int((~ok).sum()),
        "score/unknown_users": sum(not v for v in known.values()), "score/coverage": out["item"].nunique() / max(len(model.items_), 1),
    }  # fmt: skip
    tracker.log_params(
        run_id,
        {
            "input": source.uri,
            "input_sha256": source.sha256,
            "output": str(out_path),
            "model_version": champion.version,
            "model_run": champion.run_id,
            "k": k,
        },
    )
    tracker.log_metrics(run_id, {m: float(v) for m, v in metrics.items()})
    log.info(
        "%s: v%s recommended %d items to each of %d users into %s in %.1f s (%d unknown users got the most popular)",
        spec.name,
        champion.version,
        k,
        int(ok.sum()),
        out_path,
        time.time() - t0,
        metrics["score/unknown_users"],
    )
    return ScoreResult(
        spec.name,
        champion.version,
        len(raw),
        int(ok.sum()),
        int((~ok).sum()),
        str(out_path),
        str(rejected_path) if rejected_path else None,
        source.sha256,
        float("nan"),
        run_id,
    )


def describe(result: ScoreResult) -> str:
    return json.dumps(result.__dict__, indent=2)
