"""The pipeline's stages as plain functions over a :class:`RunHandle` (no orchestration here).

``tasks/`` wraps each stage in a Prefect task and ``flows/`` wires them; tests call the stages
directly. Every stage records what it did on the MLflow run through :class:`Tracker`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelmill.config.settings import REPO_ROOT, Settings
from modelmill.config.spec import PipelineSpec
from modelmill.data.fetch import pin_first_use
from modelmill.data.ingest import Snapshot, ingest, return_memory
from modelmill.data.objectstore import local_snapshot
from modelmill.errors import DataRejected, SpecError, one_line_cause
from modelmill.learn.kinds import get_kind
from modelmill.learn.kinds.base import Evaluation, Prepared, Trained
from modelmill.learn.kinds.neural import epochs_cap
from modelmill.ops import alerts
from modelmill.ops.approval import promotion_lock, repair_moves
from modelmill.ops.history import history_figure, history_frame
from modelmill.pipeline.promotion import Compared, Decision, decide, judge, metric_drop, widest_gap
from modelmill.quality import rules
from modelmill.quality.drift import drift, drift_metrics
from modelmill.quality.validate import ValidationReport, gate, validate_frame
from modelmill.registry.runview import (
    DRIFT,
    EXPERIMENT_KIND,
    PROMOTION,
    TEST,
    VALIDATION,
    decision_sentence,
    experiment_description,
    failure_sentence,
    from_primary_metrics,
    headline_text,
    mkey,
    primary_metrics,
    run_name,
    shared_view,
)
from modelmill.registry.tracking import CANDIDATE, CHALLENGER, CHAMPION, FAILED, FINISHED, KILLED, Tracker
from modelmill.runtime.cores import threads_in_use, under_budget
from modelmill.runtime.reconcile import owner_tags
from modelmill.runtime.redact import mask_url

log = logging.getLogger("modelmill.pipeline.stages")

#: the digests of the rows a run trained on (``rows/`` on the run): :mod:`modelmill.data.rowdigests`
TRAINING_ROWS = "training_rows.parquet"


@dataclass
class RunHandle:
    """What every stage needs: the spec, the settings and the MLflow run it logs to."""

    spec: PipelineSpec
    settings: Settings
    run_id: str
    as_of: str | None = None
    promote: bool = True
    force: bool = False

    def tracker(self) -> Tracker:
        return Tracker.of(self.settings)


@dataclass
class RunSummary:
    pipeline: str
    status: str  # trained | rejected | failed
    run_id: str | None
    metric: str
    direction: str = "maximize"
    value: float | None = None
    baseline: float | None = None
    lift: float | None = None
    decision: str | None = None
    promoted: bool | None = None
    version: str | None = None
    champion_version: str | None = None
    error: str | None = None
    where: str | None = None
    headline: dict[str, float] | None = None
    warnings: list[str] | None = None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start(
    spec: PipelineSpec,
    settings: Settings,
    *,
    flow_run_id: str | None = None,
    as_of: str | None = None,
    promote: bool = True,
    trigger: str = "manual",
    force: bool = False,
    reason: str | None = None,
) -> RunHandle:
    kind = get_kind(spec.problem)
    kind.check_spec(spec)
    tracker = Tracker.of(settings)
    commit = git_commit()
    tags = {
        "modelmill.pipeline": spec.name,
        "modelmill.domain": spec.domain,
        "modelmill.problem": spec.problem,
        "modelmill.spec_hash": spec.spec_hash(settings),
        "modelmill.git_commit": commit,
        "mlflow.source.git.commit": commit,
        "modelmill.prefect_flow_run_id": flow_run_id or "none",
        "modelmill.trigger": trigger,
        **({"modelmill.trigger_reason": reason[:4000]} if reason else {}),
        "modelmill.as_of": as_of or "latest",
        **owner_tags(),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"{spec.name}-{'asof-' + as_of if as_of else stamp}"
    run_id = tracker.start_run(spec, name, tags)
    tracker.set_experiment_tags(spec, EXPERIMENT_KIND)
    recorded = recorded_spec(spec)
    tracker.log_dict(run_id, recorded, "spec/spec.json", signed=True)  # the run's definition, for `modelmill reproduce`
    tracker.log_text(run_id, spec.suite_path(settings).read_text(), "spec/suite.json", signed=True)
    tracker.log_params(
        run_id, {"spec." + k: v for k, v in _flat({k: v for k, v in recorded.items() if k != "description"}).items()}
    )
    log.info("%s: MLflow run %s started", spec.name, run_id)
    return RunHandle(spec, settings, run_id, as_of, promote, force)


def recorded_spec(spec: PipelineSpec) -> dict:
    """The spec as a run records it: notification URLs reduced to scheme and host (their paths
    and user parts hold tokens); every other value is redacted by the tracker as it is written."""
    d = spec.model_dump(mode="json")
    if d.get("notify"):
        d["notify"]["urls"] = [mask_url(u) for u in d["notify"]["urls"]]
    return d


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


#: sources logged one parameter each; more (a folder of images) are counted, and listed in data/lineage.json
SOURCE_PARAMS = 20


def source_params(sources: list[dict]) -> dict[str, str]:
    if len(sources) <= SOURCE_PARAMS:
        return {f"data.source.{s['file']}": s["uri"] for s in sources}
    prefix = os.path.commonprefix([s["uri"] for s in sources])
    return {"data.source_files": str(len(sources)), "data.source": prefix[: prefix.rfind("/") + 1] or prefix}


def ingest_stage(h: RunHandle) -> Snapshot:
    snap = ingest(h.spec, h.settings, h.as_of)
    t = h.tracker()
    unverified = [s["file"] for s in snap.sources if s.get("verified") == "first-use"]
    t.set_tags(h.run_id, {
        "modelmill.data_digest": snap.digest, "modelmill.snapshot": snap.location, "modelmill.unverified_sources": ", ".join(unverified) or "none",
        FINGERPRINT_TAG: fingerprint(h, snap),
    })  # fmt: skip
    t.log_params(h.run_id, {"data.rows": snap.rows, "data.digest": snap.digest, **source_params(snap.sources)})
    if snap.parsed is not None:  # parsed now: the records its lines hold against the rows read
        records, read = snap.parsed
        t.log_params(h.run_id, {"data.source_records": records, "data.rows_read": read})
        t.log_metrics(h.run_id, {"data/lost_rows": float(records - read)})
    t.log_dict(h.run_id, snap.lineage(), "data/lineage.json", signed=True)
    t.log_dict(h.run_id, fingerprint_parts(h, snap), "data/fingerprint.json", signed=True)  # what reproduce compares
    return snap


#: The libraries whose versions can change a run's results.
RESULT_LIBRARIES = (
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "implicit",
    "scikit-image",
    "torch",
    "skorch",
    "sentence-transformers",
    "transformers",
)
FINGERPRINT_TAG = "modelmill.fingerprint"
SKIPPED = "skipped_unchanged"


def code_roots() -> list[Path]:
    """The folders of the code a run's result depends on: the modelmill package as installed."""
    return [Path(__file__).resolve().parents[1]]


def source_digest() -> str:
    """sha256 over every Python source file under :func:`code_roots` (relative path and bytes):
    any edit to the code changes it, committed or not, from a checkout or a wheel."""
    h = hashlib.sha256()
    for root in code_roots():
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def code_parts() -> dict[str, str]:
    """The code a run's result depends on: modelmill's version and the digest of its source files,
    and the versions of the libraries that compute it."""
    from importlib.metadata import PackageNotFoundError, version

    from modelmill import __version__

    def lib(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return {"modelmill": __version__, "source": source_digest(), **{name: lib(name) for name in RESULT_LIBRARIES}}


def fingerprint_parts(h: RunHandle, snap: Snapshot) -> dict[str, str]:
    """What a run's result depends on: data digest, spec and suite, the code (:func:`code_parts`),
    the as-of date and the epoch cap."""
    return {
        "data": snap.digest,
        "spec": h.spec.spec_hash(h.settings),
        **code_parts(),
        "as_of": h.as_of or "latest",
        "max_epochs": epochs_cap() or "spec",
    }


def fingerprint(h: RunHandle, snap: Snapshot) -> str:
    import json

    return hashlib.sha256(json.dumps(fingerprint_parts(h, snap), sort_keys=True).encode()).hexdigest()


def unchanged_since(h: RunHandle):
    """The run this one would only repeat — the champion's, or the last one that trained, with the
    same fingerprint — or None (always None with ``force``)."""
    if h.force:
        return None
    t = h.tracker()
    mine = t.run(h.run_id).data.tags[FINGERPRINT_TAG]  # computed at ingest
    champion = t.alias(h.spec, CHAMPION)
    candidates = [t.run(champion.run_id)] if champion and champion.run_id else []
    last = t.last_trained_run(h.spec)
    if last is not None:
        candidates.append(last)
    return next((r for r in candidates if r.data.tags.get(FINGERPRINT_TAG) == mine and r.info.run_id != h.run_id), None)


def skip(h: RunHandle, matched) -> RunSummary:
    """End the run early: nothing changed since ``matched``, so nothing is retrained or registered."""
    t = h.tracker()
    version = matched.data.tags.get("modelmill.model_version")
    cause = (
        f"same data, spec, suite and code as run {matched.info.run_id} (v{version}): not retrained (--force retrains)"
    )
    t.set_tags(h.run_id, {
        "modelmill.decision": SKIPPED, "modelmill.status": "skipped", "modelmill.matched_run": matched.info.run_id,
        "modelmill.matched_version": version or "none", "modelmill.decision_reason": cause, "mlflow.note.content": f"{h.spec.name}: {cause}.",
    })  # fmt: skip
    t.rename_run(h.run_id, f"skipped: unchanged since v{version}")
    t.end_run(h.run_id, FINISHED)
    log.info("%s: %s", h.spec.name, cause)
    champion = t.alias(h.spec, CHAMPION)
    figures = from_primary_metrics(h.spec.metric.name, matched.data.metrics)
    return RunSummary(
        pipeline=h.spec.name, status="skipped", run_id=h.run_id, metric=h.spec.metric.name, direction=h.spec.metric.direction,
        decision=cause, version=version, champion_version=champion.version if champion else None, where=t.run_url(h.run_id), **figures,
    )  # fmt: skip


def alert(h: RunHandle, event: str, cause: str) -> None:
    """Tell the spec's (or the project's) notify URLs about this run; never fails the run."""
    alerts.send(alerts.Alert(h.spec.name, event, cause, h.tracker().run_url(h.run_id)), h.spec, h.settings)


def drift_alert(h: RunHandle, table: pd.DataFrame) -> None:
    """A drift alert when a column's PSI is over the spec's ``monitoring.psi_alert``."""
    limit = h.spec.monitoring.psi_alert
    psi = table[table.method != "label_tv"].dropna(subset=["value"])
    over = psi[psi.value > limit].sort_values("value", ascending=False) if limit is not None else psi.iloc[:0]
    if not over.empty:
        worst = over.iloc[0]
        others = f" (and {len(over) - 1} more column(s))" if len(over) > 1 else ""
        alert(
            h,
            "drift",
            f"PSI of {worst.column} is {worst.value:.3f} against the champion's training data, over monitoring.psi_alert {limit}{others}",
        )


def validate_stage(h: RunHandle, snap: Snapshot) -> ValidationReport:
    t = h.tracker()
    frame = _rows(h, snap)  # read here, not at ingest: a run skipped as unchanged never reads its rows
    t.log_dataset(
        h.run_id,
        frame,
        source=snap.uri,
        name=h.spec.source.dataset or h.spec.name,
        context="snapshot",
        targets=h.spec.target,
        digest=snap.digest[:12],
    )
    with tempfile.TemporaryDirectory(prefix="modelmill-gx-") as docs:
        report = validate_frame(frame, h.spec.suite_path(h.settings), Path(docs) / "data_docs")
        t.log_dir(h.run_id, Path(docs) / "data_docs", "validation/data_docs")
    kind = get_kind(h.spec.problem)
    report.add(rules.findings(h.spec, frame, classification=kind.EXAMPLE_ROWS and kind.TARGET_CLASSES))
    t.log_text(h.run_id, report.to_html(), "validation/report.html")
    t.log_dict(h.run_id, report.to_dict(), "validation/report.json")
    t.log_metrics(
        h.run_id, {mkey(VALIDATION, "evaluated"): report.evaluated, mkey(VALIDATION, "failed"): len(report.failed)}
    )
    t.set_tags(h.run_id, {"modelmill.validation": "passed" if report.success else "rejected"})
    if not report.success:
        t.set_tags(h.run_id, {"modelmill.rejected": "true", "modelmill.failed_expectations": "; ".join(report.failed)})
    gate(report, h.spec.name)
    pin_first_use(h.settings, snap.sources)
    log.info(
        "%s: validation passed (%d expectations; GX Data Docs in validation/data_docs/index.html)",
        h.spec.name,
        report.evaluated,
    )
    return report


def drift_stage(h: RunHandle, snap: Snapshot) -> dict[str, float]:
    """PSI per column and label shift against the champion's training snapshot, as metrics."""
    t = h.tracker()
    champion = t.alias(h.spec, CHAMPION)
    reference = (
        local_snapshot(t.run(champion.run_id).data.tags.get("modelmill.snapshot", ""), h.settings)
        if champion and champion.run_id
        else None
    )
    if reference is None:
        t.set_tags(
            h.run_id,
            {"modelmill.drift_reference": "none" if champion is None else "champion snapshot not available here"},
        )
        return {}
    table = drift(reference, _rows(h, snap), h.spec.target)  # the reference read a column at a time
    metrics = drift_metrics(table)
    t.log_metrics(h.run_id, metrics)
    t.log_table(h.run_id, table, "tables/drift.csv")
    t.set_tags(h.run_id, {"modelmill.drift_reference": reference.stem})
    log.info(
        "%s: drift vs champion v%s snapshot: max PSI %.3f",
        h.spec.name,
        champion.version,
        metrics[mkey(DRIFT, "psi_max")],
    )
    drift_alert(h, table)
    return metrics


def log_history(h: RunHandle) -> None:
    """The pipeline's history plot (this run included), logged on this run."""
    t = h.tracker()
    champion = t.alias(h.spec, CHAMPION)
    frame = history_frame(t.runs(h.spec), champion.version if champion else None, h.spec.metric.name)
    t.log_figure(h.run_id, history_figure(frame, h.spec.name, h.spec.metric.name), "plots/history.png")
    t.log_table(h.run_id, frame, "tables/history.csv")


def _rows(h: RunHandle, snap: Snapshot) -> pd.DataFrame:
    """The snapshot's rows as the stages share them: declared categorical features as pandas
    categoricals (compact at any size)."""
    return snap.load(categorical=h.spec.features.categorical)


@under_budget
def train_stage(h: RunHandle, snap: Snapshot) -> tuple[Prepared, Trained]:
    kind = get_kind(h.spec.problem)
    frame = _rows(h, snap)
    snap.release()  # held here alone from now on: freed as soon as it is prepared (or once de-duplicated)
    frame, dropped = rules.deduplicate(h.spec, frame) if kind.EXAMPLE_ROWS else (frame, 0)
    return_memory()  # the rows de-duplication copied from: their pages back before prepare copies again
    t = h.tracker()
    if dropped:
        log.info("%s: dropped %d repeated rows before the split (duplicates: drop)", h.spec.name, dropped)
    t.log_params(
        h.run_id,
        {"data.duplicates_dropped": dropped, "data.duplicates": h.spec.duplicates if kind.EXAMPLE_ROWS else "n/a"},
    )
    data = kind.prepare(h.spec, frame)
    data.test_slices = test_slices(h.spec, frame, data.test_keys)
    if kind.EXAMPLE_ROWS and (pos := _test_row_positions(frame, data.test_keys)) is not None:
        data.test_rows = frame.iloc[pos].reset_index(drop=True)
        train = np.ones(len(frame), dtype=bool)
        train[pos] = False
        _log_training_rows(h, frame, train)
    elif (rows := kind.trained_and_tested(data)) is not None:  # test sets that are not snapshot rows
        data.test_rows = rows[1]
        _log_training_rows(h, rows[0])
    if (date := h.spec.roles.get("date")) in frame.columns and len(frame):
        dates = pd.to_datetime(frame[date], errors="coerce")
        t.log_params(h.run_id, {"data.period": f"{dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d}"})
    del frame  # training reads the prepared rows only
    return_memory()
    started = time.perf_counter()
    trained = kind.train(h.spec, data)
    trained.seconds = time.perf_counter() - started
    t.log_metrics(h.run_id, {"time/train_seconds": trained.seconds})
    t.log_params(h.run_id, {"runtime.threads": threads_in_use()})  # what OpenMP and BLAS were allowed, read back
    hyper = {"model.candidate": trained.best, **{f"model.{k}": v for k, v in trained.hyperparams.items()}}
    t.log_params(h.run_id, {**{f"split.{k}": v for k, v in data.info.items()}, **trained.params, **hyper})
    shown = {k: v for k, v in data.info.items() if not isinstance(v, list)}
    log.info(
        "%s: trained %s (%s)", h.spec.name, trained.best, ", ".join(f"{k}={v}" for k, v in list(shown.items())[:4])
    )
    return data, trained


def _test_row_positions(frame: pd.DataFrame, keys: pd.DataFrame | None) -> np.ndarray | None:
    """The test rows' positions in ``frame`` (from their snapshot row numbers), or None."""
    if keys is None or "row" not in keys:
        return None
    source = frame.attrs.get("source_rows")
    rows = keys["row"].to_numpy()
    return np.searchsorted(source.rows, rows) if source is not None else rows


def _log_training_rows(h: RunHandle, frame: pd.DataFrame, train: np.ndarray | None = None) -> None:
    """The digests of the rows this run trains on (those of ``frame``, or those ``train`` marks;
    validation rows included), over every column: a later run compares with this one's model only
    on test rows that are none of them."""
    from modelmill.data.rowdigests import row_digests, write_digests

    columns = [str(c) for c in frame.columns]
    digests = row_digests(frame, columns)
    with tempfile.TemporaryDirectory(prefix="modelmill-rows-") as tmp:
        write_digests(Path(tmp) / TRAINING_ROWS, digests if train is None else digests[train], columns)
        h.tracker().log_dir(h.run_id, Path(tmp), "rows")


def _compared_rows(h: RunHandle, champion, data: Prepared):
    """Which test rows the champion did not train on (a mask) and how many: None when its
    training rows were not recorded or cannot be matched (the comparison is then on every test row)."""
    from modelmill.data.rowdigests import read_digests, unseen

    if data.test_rows is None or not champion.run_id:
        return None, None
    with tempfile.TemporaryDirectory(prefix="modelmill-rows-") as tmp:
        path = h.tracker().run_artifact(champion.run_id, f"rows/{TRAINING_ROWS}", tmp)
        if path is None:
            log.warning(
                "%s: champion v%s's training rows are not recorded: compared on every test row",
                h.spec.name,
                champion.version,
            )
            return None, None
        trained_on, columns = read_digests(path)
    mask = unseen(data.test_rows, trained_on, columns)
    if mask is None:
        log.warning(
            "%s: this data lacks columns of champion v%s's rows (%s): compared on every test row",
            h.spec.name,
            champion.version,
            ", ".join(c for c in columns if c not in data.test_rows.columns),
        )
        return None, None
    compared = Compared(int(mask.sum()), len(mask), h.spec.promotion.min_compared_rows)
    log.info("%s: compared with champion v%s on %s", h.spec.name, champion.version, compared)
    return mask, compared


def test_slices(spec: PipelineSpec, frame: pd.DataFrame, keys: pd.DataFrame | None) -> pd.DataFrame | None:
    """Each test row's slice of every spec ``slices`` column (its value, or its band)."""
    if not spec.slices or (pos := _test_row_positions(frame, keys)) is None:
        return None
    from modelmill.learn.explain import slice_labels

    missing = [s.column for s in spec.slices if s.column not in frame.columns]
    if missing:
        raise SpecError(f"pipeline {spec.name}: slices: the data has no column {', '.join(missing)}")
    return pd.DataFrame(
        {s.column: slice_labels(frame[s.column].iloc[pos].reset_index(drop=True), s.bands) for s in spec.slices}
    )


@under_budget
def evaluate_stage(h: RunHandle, data: Prepared, trained: Trained) -> Evaluation:
    kind = get_kind(h.spec.problem)
    ev = kind.evaluate(h.spec, trained, data)
    t = h.tracker()
    t.log_metrics(
        h.run_id,
        {mkey(TEST, k): v for k, v in ev.metrics.items()}
        | primary_metrics(ev.metric, ev.primary, ev.baseline_primary, ev.lift, ev.headline),
    )
    exp = t.experiment_id(h.spec)
    t.set_experiment_tags(
        h.spec,
        dict([shared_view(ev.metric, tuple(ev.headline))])
        | {"mlflow.note.content": experiment_description(h.spec.description, exp)},
    )
    for name, fig in ev.figures.items():
        t.log_figure(h.run_id, fig, f"plots/{name}")
    for name, table in ev.tables.items():
        t.log_table(h.run_id, table, f"tables/{name}")
    if data.test_keys is not None:  # anyone can recompute the test figures on the same rows
        t.log_table(h.run_id, data.test_keys, "tables/test_membership.csv")
    log.info(
        "%s: test %s",
        h.spec.name,
        headline_text(ev.metric, h.spec.metric.direction, ev.primary, ev.baseline_primary, ev.headline),
    )
    for warning in ev.warnings:
        log.warning("%s: warning: %s", h.spec.name, warning)
    if ev.warnings:
        t.set_tags(h.run_id, {"modelmill.warnings": " | ".join(ev.warnings)[:5000]})
    return ev


@under_budget
def explain_stage(h: RunHandle, data: Prepared, trained: Trained, ev: Evaluation) -> Evaluation:
    """Why the model decides and how it does per group: permutation importance per source
    column on the test split, SHAP values (tabular kinds), per-slice metrics and their largest
    gap; all logged, with the stage's time against training's. Returns ``ev`` completed."""
    from modelmill.learn import explain

    started = time.perf_counter()
    kind, spec, t = get_kind(h.spec.problem), h.spec, h.tracker()
    opts, seed = spec.explain, spec.split.seed
    inputs = kind.importance_input(spec, data) if opts.importance else None
    params: dict[str, Any] = {"explain.importance": "none" if inputs is None else "permutation"}
    timings: dict[str, float] = {}
    if inputs is not None:
        X, y, scoring, groups = inputs
        ev.importance, seconds = explain.timed(
            explain.permutation_table,
            trained.model,
            X,
            y,
            scoring,
            groups,
            rows=opts.importance_rows,
            repeats=opts.repeats,
            seed=seed,
        )
        t.log_table(h.run_id, ev.importance, "tables/permutation_importance.csv")
        t.log_figure(
            h.run_id, explain.importance_figure(ev.importance, ev.metric, spec.name), "plots/permutation_importance.png"
        )
        timings = {"time/importance_seconds": seconds}
        top = ev.importance.iloc[0]
        log.info(
            "%s: permutation importance on %d test rows: %s first (test %s drops %.4f when it is shuffled)",
            spec.name,
            int(top["rows"]),
            top["feature"],
            ev.metric,
            top["importance_mean"],
        )
        if kind.shap_applies(spec) and opts.shap and groups is None:
            train_X = data.train[0]
            picked = explain.sample_rows(len(X), opts.shap_rows, seed)
            background = train_X.iloc[explain.sample_rows(len(train_X), opts.background_rows, seed + 1)]
            sv, seconds = explain.timed(explain.shap_values, trained.model, X.iloc[picked], background, seed=seed)
            ev.shap_importance = sv.mean_abs()
            keys = (
                data.test_keys.iloc[picked].reset_index(drop=True)
                if data.test_keys is not None
                else pd.DataFrame(index=range(len(picked)))
            )
            t.log_table(h.run_id, ev.shap_importance, "tables/shap_importance.csv")
            t.log_table(h.run_id, pd.concat([keys, sv.values.round(6)], axis=1), "tables/shap_values.csv")
            t.log_figure(h.run_id, explain.shap_figure(sv, spec.name), "plots/shap_summary.png")
            timings["time/shap_seconds"] = seconds
            params |= {
                "explain.shap_method": sv.method,
                "explain.shap_output": sv.output,
                "explain.shap_rows": len(picked),
                "explain.shap_background_rows": len(background),
            }
    if data.test_slices is not None:
        ev.slices, ev.slice_gaps = slice_table(h, kind, trained, data, ev.metric)
        t.log_table(h.run_id, ev.slices, "tables/slices.csv")
        timings |= {f"slices/{c}.gap": g for c, g in ev.slice_gaps.items()} | (
            {"slices/max_gap": max(_gaps(ev).values())} if _gaps(ev) else {}
        )
        for column, gap in ev.slice_gaps.items():
            log.info("%s: test %s by %s: largest gap %.4f between slices", spec.name, ev.metric, column, gap)
    seconds = time.perf_counter() - started
    t.log_params(h.run_id, params)
    t.log_metrics(
        h.run_id,
        timings
        | {"time/explain_seconds": seconds}
        | ({"time/explain_to_train": seconds / trained.seconds} if trained.seconds else {}),
    )
    return ev


def _gaps(ev: Evaluation) -> dict[str, float]:
    """The slice columns whose gap could be judged (two slices with enough rows)."""
    return {c: g for c, g in ev.slice_gaps.items() if g == g}


def slice_table(
    h: RunHandle, kind, trained: Trained, data: Prepared, metric: str
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The primary metric, sensitivity/specificity or accuracy, and row counts per slice of each
    spec ``slices`` column on the test split; and each column's largest gap of the primary metric.
    A slice holding one class only has no ranking metric (empty), and is not judged."""
    from modelmill.learn.explain import Replay, slice_gaps

    y = np.asarray(data.test[1])
    binary = set(np.unique(y)) <= {0, 1}
    replay = Replay(trained.model, data.test[0]).fit()  # one prediction of the test rows, replayed per slice
    indexed = Prepared(data.train, (np.arange(len(y)), *data.test[1:]), data.info, data.labels)
    shown = [metric, "sensitivity", "specificity", "accuracy"]
    rows = []
    for column in data.test_slices.columns:
        labels = data.test_slices[column].to_numpy()
        for value in sorted(set(labels)):
            mask = labels == value
            row = {"column": column, "slice": value, "rows": int(mask.sum())}
            if binary:
                row["positives"] = int(y[mask].sum())
            if not binary or 0 < row["positives"] < row["rows"]:
                m = kind.slice_metrics(h.spec, replay, indexed, mask)
                row |= {k: m[k] for k in shown if k in m}
            rows.append(row)
    table = pd.DataFrame(rows)
    for k in shown:
        if k in table:
            table[k] = table[k].astype(float)
    if metric not in table:
        table[metric] = np.nan
    return table, slice_gaps(table, metric, {s.column: s.min_rows for s in h.spec.slices})


@under_budget
def promote_stage(h: RunHandle, data: Prepared, trained: Trained, ev: Evaluation) -> Decision:
    """Register the new version; it takes ``champion`` only if it beats the current one. One run
    of a pipeline at a time compares and moves the alias (a lock per pipeline), so two runs at
    once never both become champion on a stale comparison. Its alerts are sent once the lock is
    released: a slow receiver never holds another run or a person's ``rollback``."""
    later: list[tuple[str, str]] = []
    with promotion_lock(h.spec, h.settings.home_dir):
        repair_moves(h.tracker(), h.spec)  # a person's move a killed process left half done
        decision = _promote(h, data, trained, ev, later)
    for event, cause in later:
        alert(h, event, cause)
    return decision


def _promote(h: RunHandle, data: Prepared, trained: Trained, ev: Evaluation, alerts_after: list) -> Decision:
    kind = get_kind(h.spec.problem)
    t = h.tracker()
    champion = t.alias(h.spec, CHAMPION)
    champion_score, new_score, compared = None, ev.primary, None
    if champion is not None:
        model = t.load_model(champion, h.spec)  # refuses (and fails the run) if its files were tampered with
        mask, compared = _compared_rows(h, champion, data)
        try:
            if mask is None:
                champion_score = kind.score(h.spec, model, data)
            elif compared.enough:  # both models on the rows neither trained on
                champion_score = kind.slice_metrics(h.spec, model, data, mask)[h.spec.metric.name]
                new_score = kind.slice_metrics(h.spec, trained.model, data, mask)[h.spec.metric.name]
        except Exception as e:  # noqa: BLE001 - a champion that cannot score is kept, and said so
            log.warning("%s: champion v%s could not be scored: %s", h.spec.name, champion.version, e)
    decision = decide(
        new_score,
        champion_score,
        champion.version if champion else None,
        direction=h.spec.metric.direction,
        margin=h.spec.promotion.margin,
        compared=compared,
    )
    drop = metric_drop(decision, direction=h.spec.metric.direction, limit=h.spec.monitoring.metric_drop)
    if drop is not None:
        alerts_after.append(
            (
                "drift",
                f"test {ev.metric} {ev.primary:.4f} is {drop:.4f} worse than champion v{champion.version}'s {decision.champion_score:.4f} on the same data, over monitoring.metric_drop {h.spec.monitoring.metric_drop}",
            )
        )
    gaps = _gaps(ev)
    if decision.promote and (widest := widest_gap(gaps, h.spec.promotion.max_slice_gap)):
        t.set_tags(
            h.run_id,
            {"modelmill.slice_gap_blocked": f"{widest[0]}: {widest[1]:.4f} > {h.spec.promotion.max_slice_gap}"},
        )
    decision = judge(
        decision,
        gaps=gaps,
        max_slice_gap=h.spec.promotion.max_slice_gap,
        metric=ev.metric,
        promote=h.promote,
        mode=h.spec.promotion.mode,
        baseline=ev.baseline_primary,
        direction=h.spec.metric.direction,
        allow_worse_than_baseline=h.spec.promotion.allow_worse_than_baseline,
    )
    awaiting = decision.awaiting
    example_in, example_out = kind.examples(trained.model, data)
    raw = h.spec.features.columns() if kind.ROW_MODEL else None  # rows as they come: typed by the model's first step
    labels = (
        data.labels if h.spec.problem.endswith(("_classification", "_multiclass")) else None
    )  # classifiers serve label + probabilities
    rules = None
    if kind.ROW_MODEL:  # the gate's row rules travel with the model, checked wherever it is served
        from modelmill.quality.served_rules import served_rules
        from modelmill.quality.validate import load_suite_dict

        rules = served_rules(h.spec, load_suite_dict(h.spec.suite_path(h.settings)))
    threshold = float(getattr(trained.model, "best_threshold_", 0.5)) if h.spec.positive_label is not None else None
    ref = t.log_model(
        h.run_id,
        h.spec,
        kind.servable(h.spec, trained.model),
        example_in,
        example_out,
        raw_columns=raw,
        labels=labels,
        label_names=kind.label_display(h.spec, labels) if labels is not None else None,
        row_rules=rules,
        threshold=threshold,
    )
    alias = CHAMPION if decision.promote else (CANDIDATE if awaiting else CHALLENGER)
    if h.promote or decision.promote:
        t.set_alias(h.spec, alias, ref.version)
    version_tags = {
        "modelmill.data_digest": t.run(h.run_id).data.tags.get("modelmill.data_digest"),
        "modelmill.primary": f"{ev.primary:.6f}",
        "modelmill.as_of": h.as_of or "latest",
    }
    if decision.promote:
        version_tags |= {
            "modelmill.move": "promoted",
            "modelmill.previous_champion": decision.champion_version or "none",
            "modelmill.champion_since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    t.set_version_tags(h.spec, ref.version, version_tags)
    card_facts = _card_facts(
        h,
        trained,
        ev,
        ref.version,
        ("the champion" if decision.champion_version is None else f"the champion: {decision.reason}")
        if decision.promote
        else f"the {alias}: {decision.reason}"
        if h.promote
        else f"not promoted: {decision.reason}",
    )
    log_card(h, card_facts)
    metrics = {mkey(PROMOTION, "new_score"): decision.new_score, mkey(PROMOTION, "promoted"): float(decision.promote)}
    if decision.champion_score is not None:
        metrics[mkey(PROMOTION, "champion_score")] = decision.champion_score
    t.log_metrics(h.run_id, metrics)
    label = "champion" if decision.promote else (alias if h.promote else "not promoted")
    t.set_tags(h.run_id, {
        "mlflow.note.content": decision_sentence(h.spec.name, ref.version, decision.promote, decision.reason, ev.metric, ev.primary, h.promote, "the candidate awaiting approval" if awaiting else "the challenger")
        + "".join(f" Warning: {w}." for w in ev.warnings),
        "modelmill.decision": "promoted" if decision.promote else (alias if h.promote else "not promoted"),
        "modelmill.decision_reason": decision.reason,
        "modelmill.model_version": ref.version,
        "modelmill.champion_before": decision.champion_version or "none",
    })  # fmt: skip
    t.rename_run(
        h.run_id, run_name(ev.metric, ev.primary, ev.baseline_primary, h.spec.metric.direction, label, ref.version)
    )
    log.info(
        "%s: v%s %s (%s)",
        h.spec.name,
        ref.version,
        "is the new champion" if decision.promote else f"is {alias}",
        decision.reason,
    )
    return decision


def _card_facts(h: RunHandle, trained: Trained, ev: Evaluation, version: str, status: str):
    from modelmill.data.catalog import CATALOG
    from modelmill.ops.card import CardFacts

    run = h.tracker().run(h.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    src = h.spec.source
    entry = CATALOG.get(src.dataset) if src.dataset else None
    where = (
        f"catalog dataset `{src.dataset}` ({entry.citation})"
        if entry
        else (f"SQL query in ${src.sql.url_env}" if src.sql else f"`{src.path or src.url}`")
    )
    failed = int(metrics.get(mkey(VALIDATION, "failed"), 0))
    gate = f"suite `{h.spec.suite}`: {int(metrics.get(mkey(VALIDATION, 'evaluated'), 0))} checks, {failed} failed ({tags.get('modelmill.validation', 'not run')})"
    calibration = {k: str(v) for k, v in trained.params.items() if k in ("calibration", "decision_threshold")}
    for k in ("brier", "mean_probability", "positive_rate"):
        if k in ev.metrics:
            calibration[f"test {k.replace('_', ' ')}"] = f"{ev.metrics[k]:.4f}"
    return CardFacts(
        version=version, run_id=h.run_id, decision=status, data_source=where, licence=entry.licence if entry else "the data owner's (a user's own data)",
        digest=tags.get("modelmill.data_digest", "unknown"), rows=int(params.get("data.rows", 0)), period=params.get("data.period"), gate=gate,
        candidate=trained.best, hyperparams=trained.hyperparams, metric=ev.metric, direction=h.spec.metric.direction, metrics=ev.metrics,
        calibration=calibration, slices=ev.slices, slice_gaps=ev.slice_gaps, importance=ev.importance, shap_importance=ev.shap_importance,
        shap_method=params.get("explain.shap_method"), warnings=ev.warnings, split=_split_info(params),
        trigger=tags.get("modelmill.trigger", "manual"), trigger_reason=tags.get("modelmill.trigger_reason"),
    )  # fmt: skip


def _split_info(params: dict) -> dict:
    return {k.removeprefix("split."): v for k, v in params.items() if k.startswith("split.") and k.endswith("_rows")}


def log_card(h: RunHandle, facts) -> None:
    """The version's model card: markdown and HTML on the run, the text as the version's description."""
    from modelmill.ops.card import card_html, model_card

    t = h.tracker()
    text = model_card(h.spec, facts)
    t.log_text(h.run_id, text, "card/model_card.md")
    t.log_text(h.run_id, card_html(text, f"{h.spec.name} v{facts.version}"), "card/model_card.html")
    t.describe_version(h.spec, facts.version, text)


def finish(h: RunHandle, ev: Evaluation, decision: Decision) -> RunSummary:
    t = h.tracker()
    log_history(h)
    t.end_run(h.run_id, FINISHED)
    tags = t.run(h.run_id).data.tags
    champion = t.alias(h.spec, CHAMPION)
    version = tags.get("modelmill.model_version")
    if decision.promote:
        alert(
            h, "promoted", f"v{version} is the new champion with test {ev.metric} {ev.primary:.4f}: {decision.reason}"
        )
    elif tags.get("modelmill.decision") == CANDIDATE:
        alert(
            h,
            "candidate",
            f"v{version} (test {ev.metric} {ev.primary:.4f}) awaits approval: `modelmill approve {h.spec.name} {version} --reason …`",
        )
    else:
        alert(
            h,
            "not_promoted",
            f"v{version} (test {ev.metric} {ev.primary:.4f}) did not become the champion: {decision.reason}",
        )
    return RunSummary(
        pipeline=h.spec.name, status="trained", run_id=h.run_id, metric=ev.metric, direction=h.spec.metric.direction,
        value=ev.primary, baseline=ev.baseline_primary, lift=ev.lift, decision=decision.reason, promoted=decision.promote,
        version=tags.get("modelmill.model_version"), champion_version=champion.version if champion else None,
        where=t.run_url(h.run_id), headline=ev.headline, warnings=ev.warnings or None,
    )  # fmt: skip


def kill(h: RunHandle, cause: str) -> None:
    """The run was interrupted (SIGTERM, Ctrl-C): end it KILLED with the cause, before exiting."""
    t = h.tracker()
    t.set_tags(h.run_id, {
        "modelmill.status": "killed", "modelmill.failure": "interrupted", "modelmill.error": f"{h.spec.name}: {cause}",
        "mlflow.note.content": f"{h.spec.name}: the run was interrupted ({cause}); nothing was registered and the champion is unchanged.",
    })  # fmt: skip
    t.rename_run(h.run_id, f"killed: {cause}")
    t.end_run(h.run_id, KILLED)


def fail(h: RunHandle, error: BaseException) -> RunSummary:
    """Mark the run FAILED with the cause; nothing was registered and the champion is unchanged."""
    t = h.tracker()
    rejected = isinstance(error, DataRejected)
    message = one_line_cause(error)
    t.set_tags(h.run_id, {
        "modelmill.error": message.splitlines()[0] if message else type(error).__name__,
        "modelmill.status": "rejected" if rejected else "failed",
        "mlflow.note.content": failure_sentence(h.spec.name, rejected, message),
    })  # fmt: skip
    t.rename_run(
        h.run_id,
        f"{'rejected by the validation gate' if rejected else 'failed'}: {message.splitlines()[0] if message else type(error).__name__}",
    )
    try:
        log_history(h)
    except Exception as e:  # noqa: BLE001 - the failure being recorded matters more than its plot
        log.warning("%s: history plot not logged: %s", h.spec.name, e)
    t.end_run(h.run_id, FAILED)
    alert(h, "rejected" if rejected else "failed", message or type(error).__name__)
    champion = t.alias(h.spec, CHAMPION)
    return RunSummary(
        pipeline=h.spec.name, status="rejected" if rejected else "failed", run_id=h.run_id, metric=h.spec.metric.name, direction=h.spec.metric.direction,
        error=message, champion_version=champion.version if champion else None, where=t.run_url(h.run_id),
    )  # fmt: skip
