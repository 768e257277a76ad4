"""A pipeline run again because an event its spec names in ``monitoring.retrain_on`` happened
(a ``live_drop`` of its champion, a scoring batch's drift): a flow run of its served deployment."""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from modelmill.config.spec import PipelineSpec
from modelmill_flows.pipeline import pipeline_flow


def retrain(spec: PipelineSpec, event: str, reason: str, report: Callable[[str], None] = print) -> str | None:
    """Run the pipeline again because ``event`` happened, when its spec's ``monitoring.retrain_on``
    asks for it: a flow run of its served deployment, created through the Prefect API with the
    event and its cause as parameters (recorded on the MLflow run and the model card), and run
    by ``modelmill serve``. Not when a run of that deployment is already waiting or running (one
    retrain answers a burst of events), nor without a served deployment (said, not raised: the
    event itself has already been alerted). Returns the new flow run's id, or None."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    if event not in spec.monitoring.retrain_on:
        return None
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(f"{pipeline_flow.name}/{spec.name}")
        except ObjectNotFound:
            report(
                f"{spec.name}: monitoring.retrain_on asks for a run after {event}, but no deployment "
                f"{pipeline_flow.name}/{spec.name} is served here (`modelmill serve`): run it with `modelmill run {spec.name}`"
            )
            return None
        waiting = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[spec.name])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED])
                )
            ),
        )
        now = time.time()
        ahead = [
            r for r in waiting if r.state.type != StateType.SCHEDULED or r.expected_start_time.timestamp() <= now + 60
        ]
        if ahead:
            report(f"{spec.name}: after {event}, a run is already on its way ({ahead[0].name}); no second one")
            return None
    flow_run = run_deployment(
        f"{pipeline_flow.name}/{spec.name}",
        parameters={"pipeline": spec.name, "trigger": event, "reason": reason[:4000]},
        timeout=0,
        tags=["modelmill", "retrain", event],
        as_subflow=False,  # its own run: the scoring or outcomes run that asked ends first
    )
    report(f"{spec.name}: retrain after {event} (monitoring.retrain_on): flow run {flow_run.name} ({flow_run.id})")
    return str(flow_run.id)
