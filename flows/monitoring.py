"""The stale check `modelmill serve` runs on a schedule: a ``stale`` alert for each pipeline with
no successful run within twice its schedule's period (or its ``monitoring.max_age``)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from modelmill.config.settings import get_settings
from modelmill.config.spec import load_all
from modelmill.ops.status import stale_alerts
from modelmill.registry.tracking import Tracker
from modelmill_flows.pipeline import _forward_core_logs


@flow(name="modelmill-stale-check", log_prints=True)
def stale_check_flow() -> list[str]:
    """The pipelines a stale alert was sent for."""
    _forward_core_logs()
    settings = get_settings()
    return stale_alerts(Tracker.of(settings), load_all(settings), settings, datetime.now(UTC))
