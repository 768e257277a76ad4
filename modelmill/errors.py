"""Errors with a one-line message naming the cause, and the CLI exit code each maps to."""

from __future__ import annotations


class ModelmillError(Exception):
    """Base class: ``str(err)`` is a one-line, user-facing explanation."""

    exit_code = 1


class SpecError(ModelmillError):
    """A pipeline spec or suite is missing or invalid."""


class SourceUnavailable(ModelmillError):
    """The data source could not be reached (network, missing mirror file)."""


class TrackingUnavailable(ModelmillError):
    """The MLflow tracking server named by MLFLOW_TRACKING_URI does not answer."""


class ChecksumMismatch(ModelmillError):
    """A downloaded or mirrored file does not have the expected sha256."""


class CorruptSource(ModelmillError):
    """A source file is empty, truncated, or cannot be parsed in its declared format."""


class StageTimeout(ModelmillError):
    """A stage ran longer than the spec's ``limits.stage_seconds``."""


class ModelIntegrityError(ModelmillError):
    """A model artifact does not match the sha256 recorded when it was logged: never unpickled."""


class DataRejected(ModelmillError):
    """The validation gate rejected the data: training did not start."""

    exit_code = 3

    def __init__(self, message: str, failed: list[str] | None = None):
        super().__init__(message)
        self.failed = list(failed or [])


class DiskFull(ModelmillError):
    """Too little free space where modelmill writes (MODELMILL_HOME)."""


def _disk_full(error: BaseException) -> bool:
    import errno

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "database or disk is full" in str(error) or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def one_line_cause(error: BaseException) -> str:
    """A failure as one line: the modelmill message, a full disk said plainly, or the first line
    of anything else with its type (never a SQL statement or a traceback)."""
    if isinstance(error, ModelmillError):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    if _disk_full(error):
        return "no space left on the device of MODELMILL_HOME: free some space (snapshots, MLflow artifacts and the cache live there); nothing was promoted"
    lines = [
        ln.strip()
        for ln in str(error).splitlines()
        if ln.strip() and not ln.strip().startswith("(raised as a result of")
    ]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
