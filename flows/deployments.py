"""Each spec's cron schedule as a Prefect deployment of the generic pipeline flow.

``serve_all`` serves them from this process (``modelmill serve``); ``prefect_yaml`` renders the
same deployments for ``prefect deploy --all`` on a work pool: process (the default), Docker or
Kubernetes, whose job variables are in the file's ``definitions``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import TerminationSignal
from prefect.runner import Runner
from prefect.schedules import Cron

from modelmill.config.spec import PipelineSpec
from modelmill_flows.pipeline import pipeline_flow

FLOW_NAME = "modelmill-pipeline"
ENTRYPOINT = "flows/pipeline.py:pipeline_flow"
SCORE_ENTRYPOINT = "flows/scoring.py:score_flow"
OUTCOMES_ENTRYPOINT = "flows/scoring.py:outcomes_flow"
WORK_POOL = "modelmill-process"
#: the image `docker compose build` makes from the repo's Dockerfile (code in /app, data in /data)
IMAGE, IMAGE_WORKDIR = "modelmill-worker:latest", "/app"
#: what a pipeline's container needs to reach the stack (service names of docker-compose.yml);
#: credentials are not here: they belong to the pool's base job template or a Kubernetes Secret
STACK_ENV = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "modelmill",
    "MLFLOW_TRACKING_URI": "http://mlflow-server:5000",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MODELMILL_HOME": "/data",
    "MODELMILL_STORE_URI": "s3://modelmill/snapshots",
    "MODELMILL_STORE_ENDPOINT": "http://seaweedfs:8333",
}
POOL_TYPES = ("process", "docker", "kubernetes")


def work_pools() -> dict[str, dict]:
    """A deployment's ``work_pool`` section for each pool type: its name and job variables, which
    Prefect validates against the type's base job template (a test does it offline)."""
    return {
        "process": {"name": WORK_POOL},
        "docker": {
            "name": "modelmill-docker",
            "job_variables": {
                "image": IMAGE, "image_pull_policy": "Never", "networks": ["modelmill_backend"],
                "env": STACK_ENV, "mem_limit": "6g", "auto_remove": True,
            },
        },
        "kubernetes": {
            "name": "modelmill-kubernetes",
            "job_variables": {
                "image": IMAGE, "image_pull_policy": "IfNotPresent", "namespace": "modelmill", "env": STACK_ENV,
                "cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi", "memory_limit": "6Gi", "finished_job_ttl": 3600,
            },
        },
    }  # fmt: skip


def deployment_parameters(spec: PipelineSpec) -> dict:
    return {"pipeline": spec.name, "trigger": "schedule"}


def _side_jobs(specs: list[PipelineSpec]):
    """``(spec, kind, entrypoint, schedule, description)`` of each scheduled job beside a
    pipeline's training: its scoring batch (``score``) and its outcomes (``outcomes``)."""
    for spec in specs:
        if spec.scoring and spec.scoring.schedule:
            yield (
                spec,
                "score",
                SCORE_ENTRYPOINT,
                spec.scoring.schedule,
                f"{spec.name}: the champion scores {spec.scoring.input} into {spec.scoring.output}",
            )
        if spec.outcomes and spec.outcomes.schedule:
            yield (
                spec,
                "outcomes",
                OUTCOMES_ENTRYPOINT,
                spec.outcomes.schedule,
                f"{spec.name}: joins the outcomes in {spec.outcomes.where()} to the scored rows and measures the champion on them",
            )


def build_deployments(specs: list[PipelineSpec]):
    from modelmill_flows.scoring import outcomes_flow, score_flow

    flows = {"score": score_flow, "outcomes": outcomes_flow}
    side = [
        flows[kind].to_deployment(
            name=f"{spec.name}-{kind}",
            schedules=[Cron(schedule.cron, timezone=schedule.timezone)],
            parameters={"pipeline": spec.name},
            description=description,
            tags=["modelmill", spec.domain, "scoring" if kind == "score" else kind],
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for spec, kind, _, schedule, description in _side_jobs(specs)
    ]
    return side + [
        pipeline_flow.to_deployment(
            name=spec.name,
            schedules=[Cron(spec.schedule.cron, timezone=spec.schedule.timezone, active=spec.schedule.active)],
            parameters=deployment_parameters(spec),
            description=spec.description.strip(),
            tags=["modelmill", spec.domain],
            # The installed module path works from any working directory.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for spec in specs
    ]


def stale_check_deployment():
    """The hourly check that alerts on pipelines gone stale (``modelmill.ops.status``)."""
    from prefect.schedules import Interval

    from modelmill_flows.monitoring import stale_check_flow

    return stale_check_flow.to_deployment(
        name="stale-check", schedules=[Interval(STALE_CHECK_EVERY)], description="alert on pipelines with no successful run within twice their schedule's period",
        tags=["modelmill", "monitoring"], entrypoint_type=EntrypointType.MODULE_PATH,
    )  # fmt: skip


#: how often `modelmill serve` looks for stale pipelines (seconds)
STALE_CHECK_EVERY = 3600


def serve_all(specs: list[PipelineSpec], limit: int | None = 1, on_ready: Callable[[], None] = lambda: None) -> None:
    """Register and serve every spec's deployment, and the stale check, until interrupted (flow
    runs one at a time). ``on_ready`` is called once every deployment exists on the server, so a
    ``trigger`` sent after it finds its deployment."""
    runner = Runner(pause_on_shutdown=True, limit=limit)
    for deployment in (*build_deployments(specs), stale_check_deployment()):
        runner.add_deployment(deployment)  # registers it on the server now
    on_ready()
    try:
        asyncio.run(runner.start())
    except TerminationSignal:
        pass


def next_runs(pipelines: list[str]) -> dict:
    """Each pipeline's next scheduled flow run on the Prefect server, where it has one."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    out = {}
    with get_client(sync_client=True) as client:
        for name in pipelines:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1,
            )  # fmt: skip
            if found and found[0].expected_start_time is not None:
                out[name] = found[0].expected_start_time
    return out


def prefect_yaml(specs: list[PipelineSpec], pool: str = "process") -> dict:
    """The ``prefect.yaml`` equivalent of :func:`build_deployments`, its deployments on a work pool
    of type ``pool``. Every pool type's section is in ``definitions`` (each deployment refers to
    one), so that moving to another pool is one regeneration. Image pools run the code baked into
    the image (``pull`` sets the working directory to it)."""
    if pool not in POOL_TYPES:
        raise ValueError(f"--pool {pool}: choose one of {', '.join(POOL_TYPES)}")
    pools = work_pools()
    image = (
        {}
        if pool == "process"
        else {"pull": [{"prefect.deployments.steps.set_working_directory": {"directory": IMAGE_WORKDIR}}]}
    )
    deployments = [
        {
            "name": spec.name,
            "entrypoint": ENTRYPOINT,
            "description": spec.description.strip(),
            "tags": ["modelmill", spec.domain],
            "parameters": deployment_parameters(spec),
            "schedules": [
                {"cron": spec.schedule.cron, "timezone": spec.schedule.timezone, "active": spec.schedule.active}
            ],
            "work_pool": pools[pool],
        }
        for spec in specs
    ] + [
        {
            "name": f"{spec.name}-{kind}",
            "entrypoint": entrypoint,
            "description": description,
            "tags": ["modelmill", spec.domain, "scoring" if kind == "score" else kind],
            "parameters": {"pipeline": spec.name},
            "schedules": [{"cron": schedule.cron, "timezone": schedule.timezone}],
            "work_pool": pools[pool],
        }
        for spec, kind, entrypoint, schedule, description in _side_jobs(specs)
    ]
    for d in deployments:
        d.update(image)
    return {
        "name": "modelmill",
        "prefect-version": "3.8.8",
        "definitions": {"work_pools": pools},
        "deployments": deployments,
    }


def trigger(
    pipeline: str, parameters: dict, *, watch: bool = True, timeout: float = 3600, report: Callable[[str], None] = print
) -> tuple[str, str | None]:
    """Create a run of ``modelmill-pipeline/<pipeline>`` through the API; follow it to its end.

    Returns the flow-run id and its final state type (``None`` when not watching).
    """
    flow_run = run_deployment(f"{FLOW_NAME}/{pipeline}", parameters=parameters, timeout=0)
    report(f"triggered flow run {flow_run.name} ({flow_run.id}) of deployment {FLOW_NAME}/{pipeline}")
    if not watch:
        return str(flow_run.id), None
    last, deadline = None, time.time() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run.id).state
            if state.name != last:
                report(f"  {flow_run.name}: {state.name}")
                last = state.name
            if state.is_final():
                return str(flow_run.id), state.type.value
            if time.time() > deadline:
                raise TimeoutError(f"flow run {flow_run.id} still {state.name} after {timeout:.0f}s")
            time.sleep(2)
