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
