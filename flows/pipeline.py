"""The generic pipeline flow (any spec) and the flow that runs them all."""

from __future__ import annotations

import logging

from prefect import flow
from prefect.runtime import flow_run

from modelmill import stages
from modelmill.errors import StageTimeout
from modelmill.settings import get_settings
from modelmill.spec import available, load_spec
from tasks import stages as t


@flow(name="modelmill-pipeline", flow_run_name="{pipeline}", log_prints=True)
def pipeline_flow(pipeline: str, as_of: str | None = None, promote: bool = True, trigger: str = "manual") -> dict:
    """Ingest → validate → drift → featurize/train → evaluate → promote, for one pipeline spec.

    Raises on failure (the MLflow run is marked FAILED with its cause first); the exception
    carries the run summary as ``.summary``.
    """
    _forward_core_logs()
    settings = get_settings()
    spec = load_spec(pipeline, settings)
    handle = t.start_run(spec, settings, flow_run_id=flow_run.id, as_of=as_of, promote=promote, trigger=trigger)
    limit = spec.limits.stage_seconds

    def stage(task, *args):
        """Run one stage task under the spec's wall-clock limit."""
        try:
            return task.with_options(timeout_seconds=limit)(*args)
        except TimeoutError as e:
            raise StageTimeout(f"{spec.name}: stage {task.name} ran longer than its limit of {limit} s (limits.stage_seconds)") from e

    try:
        snapshot = stage(t.ingest, handle)
        stage(t.validate, handle, snapshot)
        stage(t.drift, handle, snapshot)
        data, trained = stage(t.train, handle, snapshot)
        evaluation = stage(t.evaluate, handle, data, trained)
        decision = stage(t.promote, handle, data, trained, evaluation)
        summary = t.finish(handle, evaluation, decision)
    except Exception as error:
        summary = stages.fail(handle, error)
        t.publish_summary(summary)
        error.summary = summary  # type: ignore[attr-defined]
        raise
    t.publish_summary(summary)
    return summary.__dict__


@flow(name="modelmill-all", log_prints=True)
def all_pipelines_flow(pipelines: list[str] | None = None, trigger: str = "manual") -> list[dict]:
    """Run each pipeline as a subflow; one pipeline's failure does not stop the others."""
    names = pipelines or list(available(get_settings()))
    results = []
    for name in names:
        state = pipeline_flow(name, trigger=trigger, return_state=True)
        results.append(summary_of(name, state))
    failed = [r["pipeline"] for r in results if r["status"] != "trained"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(results)} pipelines did not train: {', '.join(failed)}")
    return results


def _forward_core_logs() -> None:
    """Send the core's log lines (logger ``modelmill``) to the flow run's logs in the Prefect UI.

    The CLI sets ``PREFECT_LOGGING_EXTRA_LOGGERS``, but a flow run started by a worker, by
    ``serve``'s runner or from Python has neither that nor an INFO level on our logger.
    """
    from prefect.logging.handlers import APILogHandler

    core = logging.getLogger("modelmill")
    if core.getEffectiveLevel() > logging.INFO:
        core.setLevel(logging.INFO)
    if not any(isinstance(h, APILogHandler) for h in core.handlers):
        core.addHandler(APILogHandler())


def summary_of(name: str, state) -> dict:
    """The run summary of a finished pipeline_flow state, successful or not."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        return result
    summary = getattr(result, "summary", None)
    if summary is not None:
        return summary.__dict__
    return stages.RunSummary(pipeline=name, status="failed", run_id=None, metric="", error=str(result)).__dict__
