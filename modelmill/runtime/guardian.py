"""A guardian process: when a modelmill command dies — even by SIGKILL or the OOM killer, which it
cannot catch — the processes it started (the temporary Prefect API server of a run without
``PREFECT_API_URL``) are stopped instead of being left listening on a loopback port.

``python -m modelmill.runtime.guardian PID`` watches PID (Linux ``/proc``): every half second it notes
PID's child processes; once PID is gone it sends them SIGTERM, then SIGKILL to any still there
after five seconds. A pid is only signalled while its start time is the one noted (pids are
reused). The command starts one guardian for itself (:func:`guard`), in its own session so a
Ctrl-C in the terminal does not reach it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_started = False


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]


def children(pid: int) -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) and st[0] == pid:
            out[int(entry.name)] = st[1]
    return out


def _signal_all(pids: dict[int, str], sig: int) -> dict[int, str]:
    """Signal those still alive with their noted start time; return them."""
    alive = {}
    for pid, start in pids.items():
        st = _stat(pid)
        if st and st[1] == start:
            try:
                os.kill(pid, sig)
                alive[pid] = start
            except ProcessLookupError:
                pass
    return alive


def watch(parent: int, interval: float = 0.5) -> None:
    me = os.getpid()
    first = _stat(parent)
    if first is None:
        return
    seen: dict[int, str] = {}
    while (st := _stat(parent)) is not None and st[1] == first[1]:
        seen.update({p: s for p, s in children(parent).items() if p != me})
        time.sleep(interval)
    left = _signal_all(seen, signal.SIGTERM)
    deadline = time.time() + 5
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = {p: s for p, s in left.items() if (st := _stat(p)) and st[1] == s}
    _signal_all(left, signal.SIGKILL)


def guard() -> None:
    """Start this process's guardian (once; Linux only)."""
    global _started
    if _started or not Path("/proc/self/stat").exists():
        return
    subprocess.Popen(
        [sys.executable, "-m", "modelmill.runtime.guardian", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
    )  # fmt: skip
    _started = True


if __name__ == "__main__":
    watch(int(sys.argv[1]))
