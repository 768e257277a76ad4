"""Advisory file locks between modelmill processes sharing a project data folder.

Two runs of the same pipeline at once must not both take the champion, and two runs on a
brand-new store must not both create MLflow's schema. Locks are ``flock`` on files under
``MODELMILL_HOME/locks/``: released by the kernel when the holder dies, so a killed run never
leaves one behind. They order processes on one machine (or one shared filesystem with working
``flock``); runs on several machines against one tracking server need PostgreSQL-backed servers
and are ordered per pipeline only within each machine — see docs/security.md.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from modelmill.errors import ModelmillError

log = logging.getLogger("modelmill.runtime.locks")


class LockTimeout(ModelmillError):
    """Another process held a lock for longer than we wait."""


@contextmanager
def file_lock(path: Path, what: str, timeout: float = 3600):
    """Hold an exclusive lock on ``path`` for the block, waiting up to ``timeout`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, said = time.time() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise LockTimeout(
                        f"{what}: another modelmill process held {path} for more than {timeout:.0f} s"
                    ) from None
                if not said:
                    log.info("%s: waiting for another run to finish (%s)", what, path.name)
                    said = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def lock_dir(home: Path) -> Path:
    return home / "locks"
