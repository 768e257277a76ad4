"""What every command shares: exit codes, the environment a run needs (the Prefect home, the MLflow
store, the temporary Prefect API) and the housekeeping before a command looks at runs."""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys
from pathlib import Path

from modelmill.config.settings import Settings
from modelmill.errors import DiskFull, SpecError, one_line_cause
from modelmill.runtime.redact import redact
from modelmill.runtime.servers import TEMPORARY_API

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
ORPHANED = "orphaned: its process ended without finishing the run (killed?)"
log = logging.getLogger("modelmill")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the running stage unwinds and records it."""


def check_free_space(settings: Settings) -> None:
    """Refuse to start on a (nearly) full disk: say it in one line before anything is written."""
    import shutil

    home = settings.home_dir
    probe = next((p for p in [home, *home.parents] if p.exists()), Path("/"))
    free_mb = shutil.disk_usage(probe).free / 2**20
    if free_mb < settings.min_free_mb:
        raise DiskFull(
            f"only {free_mb:.0f} MB free on the device of MODELMILL_HOME={home} (at least {settings.min_free_mb} MB needed; MODELMILL_MIN_FREE_MB sets it): free some space"
        )


#: the temporary Prefect API this command launched (at most one), stopped when the process exits
_temporary_api: list = []


def launch_prefect_api(settings: Settings, local: bool = True) -> None:
    """A command that runs flows without ``PREFECT_API_URL`` needs a temporary Prefect API. Prefect
    would start one at the first flow and wait for it there (~7 s on a new project's database);
    launched here, before the command's own start-up (MLflow, housekeeping, imports), it comes up
    meanwhile. Only before Prefect is imported in this process (its settings are read then), and
    not for a cluster elsewhere (``local=False``), whose workers could not reach a loopback API."""
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules or not local:
        return
    from modelmill.runtime.servers import temporary_prefect_api

    server = temporary_prefect_api(settings.home_dir).launch()
    _temporary_api.append(server)
    os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_API] = f"{server.url}/api"
    # Stopped at exit, after Prefect's own exit handlers (registered later, so run earlier) have
    # sent its last logs and events: stopped before them, they retry for a minute.
    atexit.register(_stop_prefect_api)


def adopt_served(settings: Settings) -> None:
    """When ``modelmill serve`` is up for this project and no server is named in the environment,
    this command uses its servers: its runs show on that Prefect UI, and reach MLflow through the
    server that keeps the artifacts."""
    if os.environ.get("PREFECT_API_URL") or os.environ.get("MLFLOW_TRACKING_URI"):
        return
    from modelmill.runtime.servers import served_environment

    served = served_environment(settings.home_dir)
    if served is not None:
        os.environ.update(served)
        where = served.get("PREFECT_API_URL", "").removesuffix("/api") or served["MLFLOW_TRACKING_URI"]
        log.info("using the servers of `modelmill serve` for this project (flow runs recorded at %s)", where)


def prefect_ready() -> None:
    """Wait for the temporary Prefect API, if this command launched one (at once once it is up)."""
    for server in _temporary_api:
        server.wait(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")))


def warm_up(specs) -> None:
    """While the temporary Prefect API is still coming up, import what the stages will need: GX
    for the gate, then each pipeline's problem kind (scikit-learn, torch). Time that was spent
    waiting; it stops at the first import after the API answers."""
    if not _temporary_api:
        return
    from modelmill.learn.kinds import kind_module

    for module in dict.fromkeys(["great_expectations", *(kind_module(s.problem) for s in specs)]):
        if _temporary_api[0].answers():
            return
        importlib.import_module(module)


def _stop_prefect_api() -> None:
    while _temporary_api:
        _temporary_api.pop().stop()


def forget_prefect_api() -> None:
    """When a command ends, the processes it starts next no longer inherit its temporary API
    (which lives on until this process exits)."""
    if _temporary_api and os.environ.get("PREFECT_API_URL") == f"{_temporary_api[0].url}/api":
        del os.environ["PREFECT_API_URL"]
        os.environ.pop(TEMPORARY_API, None)


def housekeeping(settings: Settings, specs, *, prefect: bool = False) -> None:
    """Before a command looks at runs: fail fast if the tracking server is down, remove temporary
    files of interrupted writes, and mark runs whose process died FAILED (orphaned). With
    ``prefect`` (commands that talk to Prefect anyway), their flow runs are set to Crashed too."""
    from modelmill.registry.tracking import Tracker
    from modelmill.runtime.reconcile import FLOW_RUN_RECONCILED, clean_stale_temp, reconcile, unreconciled_flow_runs

    tracker = Tracker.of(settings)
    tracker.check_reachable()
    clean_stale_temp(settings.snapshot_dir, settings.cache_dir, settings.home_dir / "scored")
    reconcile(tracker, specs)
    if prefect and (pending := unreconciled_flow_runs(tracker, specs)):
        from modelmill_flows.pipeline import mark_crashed

        prefect_ready()
        mark_crashed(list(pending.values()), ORPHANED)
        for run_id in pending:
            tracker.set_tags(run_id, {FLOW_RUN_RECONCILED: "true"})


def prepare_environment(settings: Settings) -> None:
    """Point Prefect and MLflow at the project data folder unless servers are configured."""
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Our own progress lines go to the terminal; Prefect's console handlers only say what is
    # critical (its records still reach the Prefect API and UI).
    for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # batch runs send nothing home
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")  # its errors reach us as exceptions: one line each
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "modelmill")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints each ended run's link with the tracking URI as given (a password included);
    # modelmill prints its own links, redacted
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for noisy in ("mlflow", "alembic", "great_expectations", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def add_threads_option(parser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads of each fit and scoring batch (default: MODELMILL_THREADS, else the cores free now)",
    )


def set_threads(args, settings: Settings, workers: int = 1) -> int:
    """The command's thread budget, set before any numeric library loads, and said in one line."""
    from modelmill.runtime.cores import apply_budget, thread_budget

    asked = getattr(args, "threads", None)
    if asked is not None and asked < 1:
        raise SpecError(f"--threads {asked}: give at least 1")
    threads, why = thread_budget(asked or settings.threads, workers)
    apply_budget(threads)
    each = " each" if workers > 1 else ""
    log.info("threads: %d per fit%s (%s; --threads or MODELMILL_THREADS to choose)", threads, each, why)
    return threads


def exit_code(summaries: list[dict]) -> int:
    statuses = {s["status"] for s in summaries}
    if "failed" in statuses:
        return EXIT_FAILED
    if "rejected" in statuses:
        return EXIT_REJECTED
    return EXIT_OK


def with_shipped(specs, settings: Settings) -> list:
    """These specs and every spec of the pipelines folder, once each."""
    from modelmill.config.spec import load_all

    names = {s.name for s in specs}
    return [*specs, *(s for s in load_all(settings) if s.name not in names)]


def flow_failed(state, command: str) -> bool:
    """Whether a flow run the command ran failed; if so its cause, in one line on stderr."""
    if not state.is_failed():
        return False
    try:
        state.result()
    except Exception as e:  # the cause, in one line
        log.debug("traceback", exc_info=True)
        print(f"modelmill {command}: {redact(one_line_cause(e))}", file=sys.stderr)
    return True
