"""One status row per pipeline: its last run, champion, drift, next run, and whether it is
failing or stale (no successful run within twice its schedule's period, or ``monitoring.max_age``).
The clock is a parameter, so a test moves time instead of waiting for it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from modelmill.config.spec import PipelineSpec
from modelmill.registry.tracking import CHAMPION, Tracker

WEEK = timedelta(days=7)
BAD = ("failed", "rejected", "killed")


@dataclass
class PipelineStatus:
    pipeline: str
    state: str  # ok, failing, stale, never run, first run (its first run still training)
    last_run: str | None
    last_result: str | None
    last_cause: str | None
    last_success: str | None
    champion: str | None
    champion_age_days: float | None
    #: the champion's primary metric on the outcomes of the rows it scored (its latest batch), and
    #: how long ago those outcomes arrived (``modelmill outcomes``)
    live: float | None
    live_age_days: float | None
    drift_psi_max: float | None
    next_run: str | None
    next_run_source: str | None
    failures_7d: int
    stale_after_hours: float | None  # None: never stale (a schedule deployed switched off)

    def as_dict(self) -> dict:
        return asdict(self)


def fire_times(cron: str, timezone: str, after: datetime, n: int = 2) -> list[datetime]:
    """The next ``n`` times a cron schedule fires after ``after`` (in UTC)."""
    from cronsim import CronSim

    it = CronSim(cron, after.astimezone(ZoneInfo(timezone)))
    return [next(it).astimezone(UTC) for _ in range(n)]


def stale_after(spec: PipelineSpec, now: datetime) -> timedelta | None:
    """How long without a successful run makes the pipeline stale (None: never, for a schedule
    deployed switched off without a ``monitoring.max_age``)."""
    seconds = spec.monitoring.max_age_seconds()
    if seconds is not None:
        return timedelta(seconds=seconds)
    if not spec.schedule.active:
        return None
    first, second = fire_times(spec.schedule.cron, spec.schedule.timezone, now)
    return 2 * (second - first)


def _iso(t) -> str | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).tz_convert("UTC").isoformat(timespec="seconds")


def _result(row) -> str:
    tag = row.get("tags.modelmill.status")
    if isinstance(tag, str) and tag:
        return tag
    return {"FINISHED": "trained", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}.get(
        row["status"], str(row["status"]).lower()
    )


def pipeline_status(
    tracker: Tracker, spec: PipelineSpec, now: datetime, next_runs: dict[str, datetime] | None = None
) -> PipelineStatus:
    """The status of one pipeline at ``now`` (timezone-aware)."""
    runs = tracker.runs(spec)
    limit = stale_after(spec, now)
    last = last_ok = None
    failures = 0
    drift = None
    if not runs.empty:
        runs = runs[runs["start_time"] <= pd.Timestamp(now)]
    if not runs.empty:
        last = runs.iloc[-1]
        ok = runs[runs["status"] == "FINISHED"]
        last_ok = ok.iloc[-1] if not ok.empty else None
        recent = runs[runs["start_time"] >= pd.Timestamp(now - WEEK)]
        failures = int(sum(_result(r) in ("failed", "rejected") for _, r in recent.iterrows()))
        if "metrics.drift/psi_max" in runs.columns and runs["metrics.drift/psi_max"].notna().any():
            drift = float(runs["metrics.drift/psi_max"].dropna().iloc[-1])
    champion = tracker.alias(spec, CHAMPION)
    age = live = live_age = None
    if champion is not None and champion.run_id:
        latest = tracker.latest_metric(champion.run_id, f"live/{spec.metric.name}")
        if latest is not None:
            live, at = latest
            live_age = round((pd.Timestamp(now) - at).total_seconds() / 86400, 2)
    if champion is not None:
        mv = tracker.model_version(spec, champion.version)
        since = mv.tags.get("modelmill.champion_since") if mv else None
        start = pd.Timestamp(since) if since else pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC")
        age = round((pd.Timestamp(now) - start).total_seconds() / 86400, 2)
    result = _result(last) if last is not None else None
    success_at = last_ok["start_time"] if last_ok is not None else None
    stale = limit is not None and (success_at is None or pd.Timestamp(now) - success_at > limit)
    state = "failing" if result in BAD else ("never run" if last is None else ("stale" if stale else "ok"))
    if state == "stale" and success_at is None and result == "running":
        state = "first run"  # still training: nothing has gone stale yet
    if state == "failing" and stale:
        state = "failing, stale"
    served = (next_runs or {}).get(spec.name)
    if served is not None:
        upcoming, source = served, "prefect"
    elif spec.schedule.active:
        upcoming, source = fire_times(spec.schedule.cron, spec.schedule.timezone, now, 1)[0], "cron"
    else:
        upcoming, source = None, "schedule off"
    cause = last.get("tags.modelmill.error") if last is not None and result in BAD else None
    return PipelineStatus(
        pipeline=spec.name, state=state, last_run=_iso(last["start_time"]) if last is not None else None, last_result=result,
        last_cause=cause if isinstance(cause, str) else None, last_success=_iso(success_at), champion=champion.version if champion else None,
        champion_age_days=age, live=live, live_age_days=live_age, drift_psi_max=drift, next_run=upcoming.astimezone(UTC).isoformat(timespec="seconds") if upcoming else None,
        next_run_source=source, failures_7d=failures, stale_after_hours=round(limit.total_seconds() / 3600, 1) if limit else None,
    )  # fmt: skip


def healthy(rows: list[PipelineStatus]) -> bool:
    """No pipeline failing or stale: what a health check asks (a pipeline that has never run yet
    has nothing to be unhealthy about; its first scheduled run will say)."""
    return all(r.state in ("ok", "never run", "first run") for r in rows)


def table(rows: list[PipelineStatus]) -> str:
    head = (
        "pipeline",
        "state",
        "last run",
        "result",
        "champion",
        "age (d)",
        "live (age d)",
        "drift",
        "next run",
        "fails 7d",
        "cause",
    )
    body = [
        (r.pipeline, r.state, (r.last_run or "never")[:16], r.last_result or "", f"v{r.champion}" if r.champion else "none",
         "" if r.champion_age_days is None else f"{r.champion_age_days:.1f}",
         "" if r.live is None else f"{r.live:.4f} ({r.live_age_days:.1f})", "" if r.drift_psi_max is None else f"{r.drift_psi_max:.3f}",
         f"{r.next_run[:16]} ({r.next_run_source})" if r.next_run else (r.next_run_source or ""), str(r.failures_7d), (r.last_cause or "")[:80])
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]
    )


def stale_alerts(tracker: Tracker, specs: list[PipelineSpec], settings, now: datetime) -> list[str]:
    """Send a ``stale`` alert for each pipeline that went stale, once per stale spell (an
    experiment tag remembers the last successful run it was sent for). Returns their names."""
    from modelmill.ops import alerts

    sent = []
    for spec in specs:
        row = pipeline_status(tracker, spec, now)
        exp = tracker.experiment_id(spec, create=False)
        if "stale" not in row.state or exp is None:  # a pipeline that never ran has nothing to watch yet
            continue
        spell = row.last_success or "none"
        if tracker.client.get_experiment(exp).tags.get(STALE_TAG) == spell:
            continue
        since = f"since {row.last_success}" if row.last_success else "ever"
        cause = f"no successful run {since} (stale after {row.stale_after_hours:g} h); last run {row.last_run or 'never'}: {row.last_result or 'none'}"
        alerts.send(alerts.Alert(spec.name, "stale", cause, tracker.experiment_url(exp)), spec, settings)
        tracker.set_experiment_tags(spec, {STALE_TAG: spell})
        sent.append(spec.name)
    return sent


STALE_TAG = "modelmill.stale_alerted_for"
