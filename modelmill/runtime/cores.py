"""The machine's cores shared by pipelines that run side by side on it.

``run --all --workers N`` on a local cluster gives each worker process one BLAS/OpenMP thread, so
N pipelines use N cores. When fewer pipelines than workers are left (the tail of a run: the
longest pipeline alone while the other workers sit idle), a network's fit may take the idle cores.
Each running pipeline marks itself busy with a file named by its process id in one folder (named
by ``MODELMILL_SHARED_CORES``); a network reads its share, ``cores // busy``, at each epoch,
and the sentence encoder and its fine-tuning at each batch (``follow_share``).

Without that variable (a pipeline on its own, or on a cluster elsewhere) nothing here applies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelmill.runtime.reconcile import pid_alive

SHARED = "MODELMILL_SHARED_CORES"

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
