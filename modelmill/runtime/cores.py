"""The machine's cores shared by pipelines that run side by side on it.

``run --all --workers N`` on a local cluster gives each worker process one BLAS/OpenMP thread, so
N pipelines use N cores. When fewer pipelines than workers are left (the tail of a run: the
longest pipeline alone while the other workers sit idle), a network's fit may take the idle cores.
Each running pipeline marks itself busy with a file named by its process id in one folder (named
by ``MODELMILL_SHARED_CORES``); a network reads its share, ``cores // busy``, at each epoch,
and the sentence encoder and its fine-tuning at each batch (``follow_share``).

Without that variable (a pipeline on its own, or on a cluster elsewhere) nothing here applies.

Every command that fits or scores first sets a **thread budget** (:func:`thread_budget`,
:func:`apply_budget`): the cores free when it starts (a busy machine's other jobs leave fewer),
split between its workers, unless the user names a number. OpenMP threads spin while they wait
for a core, so a thread per core on a busy machine costs more than it brings (the benchmark's T1
rows). Each stage then runs its fits under that budget (:func:`limited`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelmill.runtime.reconcile import pid_alive

SHARED = "MODELMILL_SHARED_CORES"

#: thread pools of numeric libraries: read when a library loads, and inherited by child processes
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

log = logging.getLogger("modelmill.train")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextmanager
def busy() -> Iterator[None]:
    """Marks this process busy with a pipeline while the block runs (when cores are shared)."""
    folder = os.environ.get(SHARED)
    if not folder:
        yield
        return
    mark = Path(folder) / str(os.getpid())
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.touch()
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def _live_marks(folder: str, clear_dead: bool = False) -> int:
    """How many marks in ``folder`` belong to live processes (with ``clear_dead``, the others go)."""
    try:
        marks = [m.path for m in os.scandir(folder)]
    except FileNotFoundError:
        return 0
    live = 0
    for mark in marks:
        name = os.path.basename(mark)
        if name.isdigit() and pid_alive(int(name)):
            live += 1
        elif clear_dead:
            Path(mark).unlink(missing_ok=True)
    return live


def clear_dead_marks() -> None:
    """Remove the marks of processes that died mid-pipeline (a killed worker leaves its mark)."""
    if folder := os.environ.get(SHARED):
        _live_marks(folder, clear_dead=True)


def thread_share() -> int | None:
    """Threads for this process now: the cores over the live processes busy with a pipeline, at
    least 1; ``None`` when cores are not shared or this process is not busy with a pipeline (the
    command that started the workers, say): then the usual thread rules apply."""
    folder = os.environ.get(SHARED)
    if not folder or not os.path.exists(os.path.join(folder, str(os.getpid()))):
        return None
    return max(1, cores() // max(1, _live_marks(folder)))


def torch_threads(explicit: int | None = None) -> int:
    """The threads a torch fit or encoding takes now: ``explicit`` when asked for; else this
    process's share of the shared cores; else ``OMP_NUM_THREADS``; else every core it may use."""
    return max(1, int(explicit or thread_share() or int(os.environ.get("OMP_NUM_THREADS") or 0) or cores()))


def follow_share(torch, label: str, step: str) -> None:
    """Give ``torch`` this process's current share of the shared cores, when it has changed (more
    threads once the pipelines beside it have finished), with one log line naming ``step``.
    Nothing happens when cores are not shared; a caller with its own ``threads`` does not call it."""
    threads = thread_share()
    if threads is not None and threads != torch.get_num_threads():
        log.info("%s: %d threads from %s (the cores shared with the pipelines running beside it)", label, threads, step)
        torch.set_num_threads(threads)


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine so far, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait; user..steal


def free_cores(sample: float = 0.25, times=_cpu_times) -> float:
    """The cores idle now, among those this process may use: the machine's idle share over
    ``sample`` seconds times its cores, at most this process's own cores. Without ``/proc``, all
    of this process's cores."""
    try:
        idle0, total0 = times()
        time.sleep(sample)
        idle1, total1 = times()
    except (OSError, ValueError, IndexError):
        return float(cores())
    if total1 <= total0:
        return float(cores())
    machine = os.cpu_count() or cores()
    return min(float(cores()), machine * (idle1 - idle0) / (total1 - total0))


def thread_budget(explicit: int | None = None, workers: int = 1, free=free_cores) -> tuple[int, str]:
    """Threads of each fit for a command with ``workers`` pipelines at once, and why: the number
    asked for (``--threads``, ``MODELMILL_THREADS``), else ``OMP_NUM_THREADS`` when the user set
    it, else the cores free now shared between the workers; at least 1."""
    if explicit:
        return int(explicit), "asked for"
    if env := os.environ.get("OMP_NUM_THREADS", "").strip():
        if env.isdigit() and int(env) >= 1:
            return int(env), "OMP_NUM_THREADS"
    idle = free()
    return max(1, int(idle + 0.5) // max(1, workers)), f"{idle:.1f} of {cores()} cores free"


def apply_budget(threads: int) -> None:
    """Give every numeric library ``threads`` threads: in the environment (libraries not yet
    loaded, and child processes) and through threadpoolctl (those already loaded)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def budget_now() -> int:
    """The threads a fit takes now: this process's share of the shared cores when pipelines run
    side by side, else the command's budget (``OMP_NUM_THREADS``), else every core it may use."""
    return max(1, thread_share() or int(os.environ.get("OMP_NUM_THREADS") or 0) or cores())


@contextmanager
def limited(threads: int | None = None) -> Iterator[int]:
    """Run the block with OpenMP and BLAS at ``threads`` (default :func:`budget_now`) in this
    thread: a Prefect task runs in a thread of its own, whose OpenMP setting is its own."""
    from threadpoolctl import threadpool_limits

    n = threads or budget_now()
    with threadpool_limits(limits=n):
        yield n


def under_budget(stage):
    """A stage whose fits, explanations and scoring run under :func:`limited`, in the thread the
    stage runs in (a decorator at the stage boundary, so the computation itself stays plain)."""

    @functools.wraps(stage)
    def wrapped(*args, **kwargs):
        with limited():
            return stage(*args, **kwargs)

    return wrapped


def threads_in_use() -> int:
    """The most threads any loaded OpenMP or BLAS library would use now (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] in ("openmp", "blas")), default=1)
