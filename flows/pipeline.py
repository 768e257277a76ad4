"""The generic pipeline flow (any spec) and the flow that runs them all."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from prefect import flow
from prefect.runtime import flow_run

from modelmill.config.settings import get_settings
from modelmill.config.spec import load_spec
from modelmill.errors import StageTimeout, one_line_cause
from modelmill.pipeline import stages
from modelmill.runtime.redact import RedactingFilter
from modelmill.runtime.servers import TEMPORARY_API
from modelmill_tasks import stages as t


@flow(name="modelmill-pipeline", flow_run_name="{pipeline}", log_prints=True)
def pipeline_flow(
    pipeline: str,
    as_of: str | None = None,
    promote: bool = True,
    trigger: str = "manual",
    force: bool = False,
    reason: str | None = None,
) -> dict:
    """Ingest → validate → drift → featurize/train → evaluate → explain → promote, for one pipeline spec.

    A run whose data, spec, suite and code are those of the champion's (or the last trained) run
    ends after ingest as ``skipped`` — nothing retrained or registered — unless ``force``.
    ``trigger`` says what started the run (schedule, manual, or the event ``monitoring.retrain_on``
    names), ``reason`` that event's cause; both are recorded on the run and in its model card.

    Raises on failure (the MLflow run is marked FAILED with its cause first); the exception
    carries the run summary as ``.summary``.
    """
    _forward_core_logs()
    settings = get_settings()
    spec = load_spec(pipeline, settings, names_only=started_by_a_deployment())
    handle = t.start_run(
        spec,
        settings,
        flow_run_id=flow_run.id,
        as_of=as_of,
        promote=promote,
        trigger=trigger,
        force=force,
        reason=reason,
    )
    limit = spec.limits.stage_seconds

    def stage(task, *args):
        """Run one stage task under the spec's wall-clock limit."""
        try:
            return task.with_options(timeout_seconds=limit)(*args)
        except TimeoutError as e:
            raise StageTimeout(
                f"{spec.name}: stage {task.name} ran longer than its limit of {limit} s (limits.stage_seconds)"
            ) from e

    try:
        snapshot = stage(t.ingest, handle)
        matched = stage(t.unchanged_since, handle)
        if matched is not None:
            summary = t.skip(handle, matched)
            t.publish_summary(summary)
            return summary.__dict__
        stage(t.validate, handle, snapshot)
        stage(t.drift, handle, snapshot)
        data, trained = stage(t.train, handle, snapshot)
        evaluation = stage(t.evaluate, handle, data, trained)
        evaluation = stage(t.explain, handle, data, trained, evaluation)
        decision = stage(t.promote, handle, data, trained, evaluation)
        summary = t.finish(handle, evaluation, decision)
    except Exception as error:
        summary = stages.fail(handle, error)
        t.publish_summary(summary)
        error.summary = summary  # type: ignore[attr-defined]
        raise
    except BaseException as interrupt:  # SIGTERM (the CLI's or Prefect's handler) or Ctrl-C
        stages.kill(handle, _interrupt_cause(interrupt))
        raise
    t.publish_summary(summary)
    return summary.__dict__


def started_by_a_deployment() -> bool:
    """Whether this flow run was created from a deployment (a schedule, ``modelmill trigger``, any
    API caller): its parameters then come from whoever may call the Prefect API, not the operator."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and context.flow_run is not None and context.flow_run.deployment_id is not None


@contextmanager
def heartbeats_where_watched():
    """Flow runs started inside send Prefect's heartbeats only to an API that outlives them.

    A flow run's heartbeat thread beats every 180 s so that a server can tell a crashed run
    (its automations); each run waits up to a second for that thread to end. A temporary API,
    stopped with the command that launched it, watches nothing (runs of dead processes are ours
    to mark: ``modelmill.runtime.reconcile``), so its runs go without and skip that wait."""
    url = os.environ.get("PREFECT_API_URL")
    if not url or url != os.environ.get(TEMPORARY_API):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _interrupt_cause(interrupt: BaseException) -> str:
    from prefect.exceptions import TerminationSignal

    if isinstance(interrupt, TerminationSignal) or type(interrupt).__name__ == "Terminated":
        return "terminated by SIGTERM"
    if isinstance(interrupt, KeyboardInterrupt):
        return "interrupted by Ctrl-C (SIGINT)"
    return f"interrupted ({type(interrupt).__name__})"


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
        handler = APILogHandler()
        handler.addFilter(RedactingFilter())  # no password of a URL reaches Prefect's database
        core.addHandler(handler)


def mark_crashed(flow_run_ids: list[str], message: str) -> None:
    """Set flow runs (and their unfinished task runs) left RUNNING by a dead process to Crashed."""
    if not flow_run_ids:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            try:
                run = client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                continue
            if run.state is not None and run.state.is_final():
                continue
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
            for task_run in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            ):
                if task_run.state is not None and not task_run.state.is_final():
                    client.set_task_run_state(task_run.id, Crashed(message=message), force=True)


def summary_of(name: str, state) -> dict:
    """The run summary of a finished pipeline_flow state, successful or not."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        return result
    summary = getattr(result, "summary", None)
    if summary is not None:
        return summary.__dict__
    cause = one_line_cause(result) if isinstance(result, BaseException) else str(result).splitlines()[0]
    return stages.RunSummary(pipeline=name, status="failed", run_id=None, metric="", error=cause).__dict__
