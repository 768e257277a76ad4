"""Leftovers of runs that were killed: MLflow runs still RUNNING whose process is gone, and the
temporary files of interrupted writes.

Every run records its owner (pid, host, process start time) as tags. SIGTERM and Ctrl-C are
caught and end the run as KILLED; SIGKILL, the OOM killer or a power cut cannot be caught, so the
next ``modelmill run`` / ``list`` / ``history`` / ``serve`` on the same host marks the runs whose
owner is gone FAILED with ``modelmill.failure=orphaned``. A run owned by another host is left
alone: this host cannot tell whether that process still lives. On a cluster, the attempt that
runs a pipeline again after its worker was lost ends that worker's runs, whatever its host
(``reconcile_lost_attempt``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

log = logging.getLogger("modelmill.runtime.reconcile")

OWNER_PID, OWNER_HOST, OWNER_START = "modelmill.owner_pid", "modelmill.owner_host", "modelmill.owner_start"
#: where a scoring batch writes (its temporary files beside it carry the writer's pid)
OUTPUT_TAG = "modelmill.output"
#: Temporary files carry their writer's pid: ``.<name>.pid<pid>.<random>.tmp`` (or ``.part``).
TEMP_PID = re.compile(r"^\..+\.pid(\d+)\..*(\.tmp|\.part|\.new)$")


def _start_time(pid: int) -> str | None:
    """The process's start (clock ticks since boot, with the boot id), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22: after "pid (comm)", the 20th


def temp_prefix(name: str) -> str:
    return f".{name}.pid{os.getpid()}."


def owner_tags() -> dict[str, str]:
    pid = os.getpid()
    return {OWNER_PID: str(pid), OWNER_HOST: socket.gethostname(), OWNER_START: _start_time(pid) or "unknown"}


def owner_alive(tags: dict[str, str]) -> bool | None:
    """True/False for a run owned by a process of this host; None when this host cannot tell."""
    if tags.get(OWNER_HOST) != socket.gethostname() or not tags.get(OWNER_PID, "").isdigit():
        return None
    started = _start_time(int(tags[OWNER_PID]))
    if started is None:
        return False
    recorded = tags.get(OWNER_START, "unknown")
    return recorded == "unknown" or started == recorded  # a reused pid is another process


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that id exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp(*folders: Path) -> int:
    """Remove temporary files whose writer is gone; returns how many."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.rglob(".*"):
            m = TEMP_PID.match(p.name)
            if m and p.is_file() and not pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary files left by interrupted writes", removed)
    return removed


def orphaned_runs(tracker, specs) -> list:
    """MLflow runs of these pipelines (training runs and scoring batches) still RUNNING whose
    owning process is gone."""
    ids = [e for s in specs for e in tracker.experiment_ids(s)]
    if not ids:
        return []
    running = tracker.client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000)
    return [r for r in running if owner_alive(r.data.tags) is False]


FLOW_RUN_RECONCILED = "modelmill.flow_run_reconciled"


def unreconciled_flow_runs(tracker, specs) -> dict[str, str]:
    """{MLflow run id: Prefect flow-run id} of orphaned runs whose flow run was not yet marked."""
    ids = [e for e in (tracker.experiment_id(s, create=False) for s in specs) if e is not None]
    if not ids:
        return {}
    found = tracker.client.search_runs(ids, filter_string="tags.`modelmill.failure` = 'orphaned'", max_results=1000)
    return {
        r.info.run_id: r.data.tags["modelmill.prefect_flow_run_id"]
        for r in found
        if FLOW_RUN_RECONCILED not in r.data.tags and r.data.tags.get("modelmill.prefect_flow_run_id", "none") != "none"
    }


def reconcile(tracker, specs) -> list:
    """Mark orphaned runs FAILED (``modelmill.failure=orphaned``); returns them."""
    found = orphaned_runs(tracker, specs)
    for run in found:
        tags = run.data.tags
        _mark_orphaned(
            tracker,
            run,
            f"orphaned: its process {tags.get(OWNER_PID)} on {tags.get(OWNER_HOST)} ended without finishing the run (killed?)",
        )
    return found


def reconcile_lost_attempt(tracker, spec, flow_run_ids: list[str], retried_on: str) -> list:
    """A cluster runs a pipeline again on another worker when the worker running it is lost (on
    any host: this host cannot see that process). The runs of the lost attempt, found by their
    Prefect flow runs, are marked FAILED (orphaned) and their flow runs recorded as reconciled
    (the caller crashes them); returns them."""
    experiment = tracker.experiment_id(spec, create=False)
    if experiment is None or not flow_run_ids:
        return []
    running = tracker.client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    found = [r for r in running if r.data.tags.get("modelmill.prefect_flow_run_id") in flow_run_ids]
    for run in found:
        tags = run.data.tags
        _mark_orphaned(
            tracker,
            run,
            f"orphaned: its worker (process {tags.get(OWNER_PID)} on {tags.get(OWNER_HOST)}) was lost; the pipeline ran again on {retried_on}",
        )
        tracker.set_tags(run.info.run_id, {FLOW_RUN_RECONCILED: "true"})
    return found


def _mark_orphaned(tracker, run, cause: str) -> None:
    tracker.set_tags(
        run.info.run_id,
        {
            "modelmill.failure": "orphaned",
            "modelmill.status": "failed",
            "modelmill.error": cause,
            "mlflow.note.content": f"The run was {cause}.",
        },
    )
    tracker.end_run(run.info.run_id, "FAILED")
    output, pid = run.data.tags.get(OUTPUT_TAG), run.data.tags.get(OWNER_PID, "")
    if output and pid.isdigit():  # a scoring batch's half-written files beside its output
        out = Path(output)
        for leftover in out.parent.glob(f".{out.name.removesuffix('.parquet')}*.pid{pid}.*tmp"):
            leftover.unlink(missing_ok=True)
    log.warning("%s: run %s %s; marked FAILED", run.data.tags.get("modelmill.pipeline"), run.info.run_id, cause)
