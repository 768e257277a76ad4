"""Pipelines side by side on an existing engine: Prefect task runners from prefect-dask (default:
a local Dask cluster of N worker processes, or an existing cluster by address) or prefect-ray.

Each pipeline is one task whose body is the ordinary pipeline flow, so it still gets its own
Prefect flow run (a sub-flow of ``modelmill-all``) and its own MLflow run; a pipeline that fails
fails alone. Worker processes share the command's thread budget (the free cores over the workers,
at least one BLAS/OpenMP thread each, set before they start), so N workers fit in the cores
rather than fighting over them; a network whose pipeline is left running with
fewer others than workers takes the idle cores (``modelmill.runtime.cores``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect import flow, task

from modelmill.config.settings import get_settings
from modelmill.config.spec import available
from modelmill.errors import SpecError
from modelmill.runtime.cores import SHARED, THREAD_VARIABLES, busy, clear_dead_marks
from modelmill_flows.pipeline import heartbeats_where_watched, pipeline_flow, summary_of

RUNNERS = ("dask", "ray")


def threads_per_worker() -> None:
    """Set before the workers start: they inherit the environment. Each takes the command's budget
    per worker (the free cores split between them, or the number asked for), else one thread."""
    budget = os.environ.get("OMP_NUM_THREADS") or "1"
    for var in THREAD_VARIABLES:
        os.environ[var] = budget


def pipeline_worker_config() -> None:
    """Dask's defaults suit long-lived workers holding data, not a worker that trains a pipeline:
    its nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's
    dynamic mmap threshold: every allocation over 128 KiB becomes an mmap/munmap pair whose
    pages fault in again. Seen here: the intent pipeline took 269 s in a worker against 137 s in
    a plain process, two thirds of the worker's CPU time in the kernel. Unset, and one malloc
    arena (the pipeline runs in one thread of the worker, not the main one, whose own arena
    trims and grows as tensors come and go): 151 s (timings seen once, by hand; the benchmark's
    P5 row is the repeatable figure). Nor its statistical profiler: it samples every thread's
    stack each 10 ms for a dashboard these workers do not have, about 3 % of a core each (seen
    here: 1.35 s against 0.55 s of the worker's main thread during a 27 s fine-tuning epoch).

    Our workers live for one ``run --all``."""
    import dask

    dask.config.set(
        {
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            "distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": "1",
            "distributed.worker.profile.enabled": False,
        }
    )


def share_cores(folder: Path) -> None:
    """The local workers' networks take the cores left idle by finished pipelines
    (``modelmill.runtime.cores``); marks of processes no longer alive are cleared."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[SHARED] = str(folder)
    clear_dead_marks()


def share_temporary_api() -> None:
    """Start this process's temporary Prefect API now and point ``PREFECT_API_URL`` at it, so the
    local workers (started after this, inheriting the variable) record their sub-flows through it
    instead of each starting a temporary server of its own on the same database."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance this process's Prefect client uses
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url


def task_runner(workers: int, runner: str = "dask", address: str | None = None, scratch: Path | None = None):
    """The Prefect task runner for ``workers`` pipelines at once (or the cluster at ``address``)."""
    if runner not in RUNNERS:
        raise SpecError(f"--runner {runner}: choose one of {', '.join(RUNNERS)}")
    if workers < 1:
        raise SpecError(f"--workers {workers}: give at least 1")
    try:
        if runner == "dask":
            from prefect_dask import DaskTaskRunner
        else:
            from prefect_ray import RayTaskRunner
    except ImportError:
        raise SpecError(f"--runner {runner} needs prefect-{runner}: pip install 'modelmill[{runner}]'") from None
    if address is None:
        threads_per_worker()
        share_temporary_api()
        if scratch is not None:
            share_cores(scratch / "busy")
    if runner == "dask":
        if address:
            return DaskTaskRunner(address=address)
        pipeline_worker_config()
        kwargs = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        if scratch is not None:
            scratch.mkdir(parents=True, exist_ok=True)
            kwargs["local_directory"] = str(scratch)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)
    if address:
        return RayTaskRunner(address=address)
    init = {"num_cpus": workers, "include_dashboard": False}
    if scratch is not None:
        init["_temp_dir"] = str(scratch)
    return RayTaskRunner(init_kwargs=init)


#: configuration a worker takes from the process that submitted the pipelines (never secrets: a
#: remote worker needs its own credentials in its environment)
FORWARDED = ("MODELMILL_", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_HTTP_REQUEST_", "PREFECT_API_URL")
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "AUTH", "SQL_URL")


def forwarded_environment() -> dict[str, str]:
    """What a worker takes from this process. The project folder is a path on this machine: with
    snapshots on an object store and runs on a tracking server, a worker has no use for it and
    keeps its own (``MODELMILL_HOME`` of its environment, or ``.modelmill`` in its working
    directory) as a local cache; otherwise the workers share this one (same machine, or a
    shared filesystem)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED) and not any(w in k for w in SECRET_WORDS)}
    settings = get_settings()
    if settings.store_uri and not settings.tracking_uri.startswith("sqlite:"):
        env.pop("MODELMILL_HOME", None)
        env.pop(SHARED, None)
    return env


@task(name="pipeline", task_run_name="{name}")
def pipeline_task(
    name: str,
    as_of: str | None = None,
    promote: bool = True,
    trigger: str = "manual",
    force: bool = False,
    environment: dict[str, str] | None = None,
) -> dict:
    """One pipeline on a worker: its flow as a sub-flow; the run summary, whether it trained or not.

    ``environment``: the submitting process's modelmill/MLflow configuration, applied first, so a
    worker of an existing cluster uses the same project folder, mirror and tracking server.
    """
    os.environ.update(environment or {})
    _terminal_lines(name)
    _reconcile_lost_attempts(name)
    with busy(), heartbeats_where_watched():
        state = pipeline_flow(name, as_of=as_of, promote=promote, trigger=trigger, force=force, return_state=True)
    return summary_of(name, state)


def _reconcile_lost_attempts(name: str) -> None:
    """Dask runs a task again on another worker when the worker running it is lost (killed, its
    machine gone). This task's earlier attempt left its pipeline's flow run (a sub-flow of this
    ``modelmill-all`` run, named after the pipeline) and its MLflow run RUNNING: both are ended
    here, as Crashed and FAILED (orphaned), before the pipeline runs again; the lost worker's host
    does not matter."""
    import socket

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.runtime import flow_run

    from modelmill.config.spec import load_spec
    from modelmill.registry.tracking import Tracker
    from modelmill.runtime.reconcile import reconcile_lost_attempt
    from modelmill_flows.pipeline import mark_crashed

    if not flow_run.id:
        return
    unfinished = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))
    mine = FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id]),
        name=FlowRunFilterName(any_=[name]),
        state=unfinished,
    )
    with get_client(sync_client=True) as client:
        earlier = client.read_flow_runs(flow_run_filter=mine)
    if not earlier:
        return
    ids = [str(r.id) for r in earlier]
    settings = get_settings()
    here = f"process {os.getpid()} on {socket.gethostname()}"
    reconcile_lost_attempt(Tracker.of(settings), load_spec(name, settings), ids, here)
    mark_crashed(ids, f"its worker was lost; the pipeline ran again on {here}")


def _terminal_lines(name: str) -> None:
    """A worker process's own progress lines on its stderr, prefixed by the pipeline they are about."""
    core = logging.getLogger("modelmill")
    if not any(getattr(h, "_modelmill_worker", False) for h in core.handlers):
        handler = logging.StreamHandler()
        handler._modelmill_worker = True  # type: ignore[attr-defined]
        core.addHandler(handler)
        core.setLevel(logging.INFO)
        core.propagate = False
    for h in core.handlers:
        if getattr(h, "_modelmill_worker", False):
            h.setFormatter(logging.Formatter(f"%(asctime)s  [{name}] %(message)s", "%H:%M:%S"))


@flow(name="modelmill-all", log_prints=True)
def all_pipelines_flow(
    pipelines: list[str] | None = None,
    trigger: str = "manual",
    force: bool = False,
    parallel: bool = False,
    as_of: str | None = None,
    promote: bool = True,
) -> list[dict]:
    """Run each pipeline as a subflow; one pipeline's failure does not stop the others.

    ``parallel``: each pipeline is a task on this flow's task runner (set with
    ``.with_options(task_runner=task_runner(...))``), so they run side by side.
    """
    names = pipelines or list(available(get_settings()))
    if parallel:
        environment = forwarded_environment()
        futures = [
            pipeline_task.submit(
                name, as_of=as_of, promote=promote, trigger=trigger, force=force, environment=environment
            )
            for name in names
        ]
        for future in futures:
            future.wait()
        results = [summary_of(name, future.state) for name, future in zip(names, futures, strict=True)]
    else:
        results = [
            summary_of(
                name, pipeline_flow(name, as_of=as_of, promote=promote, trigger=trigger, force=force, return_state=True)
            )
            for name in names
        ]
    failed = [r["pipeline"] for r in results if r["status"] not in ("trained", "skipped")]
    if failed:
        error = RuntimeError(f"{len(failed)} of {len(results)} pipelines did not train: {', '.join(failed)}")
        error.summaries = results  # type: ignore[attr-defined]
        raise error
    return results
