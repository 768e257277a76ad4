"""Champion moves made by a person: approve a candidate (``promotion.mode: manual``) and roll
back to an earlier champion. Each move happens under the pipeline's promotion lock (the one
training runs take to compare and promote), refuses a version that is not fit to serve, and is
recorded on the version's tags and in the pipeline's audit trail in MLflow."""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from modelmill.config.spec import PipelineSpec
from modelmill.errors import ModelIntegrityError, ModelmillError
from modelmill.registry.tracking import CANDIDATE, CHALLENGER, CHAMPION, SCORING_SUFFIX, SHADOW_TAG, ModelRef, Tracker
from modelmill.runtime.locks import file_lock, lock_dir

log = logging.getLogger("modelmill.ops.approval")

#: version tags a champion move writes
MOVE_TAGS = (
    "modelmill.move",
    "modelmill.moved_by",
    "modelmill.moved_at",
    "modelmill.move_reason",
    "modelmill.previous_champion",
    "modelmill.champion_since",
)


class Refused(ModelmillError):
    """A champion move that must not happen (wrong pipeline, unverified or rejected model…)."""


@dataclass(frozen=True)
class Move:
    pipeline: str
    action: str
    version: str
    previous: str | None
    user: str
    reason: str
    at: str
    audit_run_id: str


def current_user() -> str:
    """Who makes the move: ``MODELMILL_USER``, else the operating-system user."""
    return os.environ.get("MODELMILL_USER") or getpass.getuser()


def promotion_lock(spec: PipelineSpec, home):
    return file_lock(lock_dir(home) / f"promote-{spec.name}.lock", f"{spec.name}: promotion")


def shadow_batches(tracker: Tracker, spec: PipelineSpec, version: str) -> int:
    """How many scoring batches a version has shadowed the champion on."""
    exp = tracker.experiment_id(spec, create=False, suffix=SCORING_SUFFIX)
    if exp is None:
        return 0
    runs = tracker.client.search_runs(
        [exp], filter_string=f"tags.`{SHADOW_TAG}` = '{version}' and attributes.status = 'FINISHED'", max_results=10_000
    )
    return len(runs)


def check_servable(tracker: Tracker, spec: PipelineSpec, version: str) -> None:
    """Refuse a version of another pipeline, one whose files fail their sha256, one that was
    never recorded with one, or one whose training run was rejected or failed."""
    mv = tracker.model_version(spec, version)
    if mv is None:
        known = ", ".join(f"v{v.version}" for v in tracker.versions(spec)) or "none"
        raise Refused(f"{spec.name} has no model version {version} (its versions: {known})")
    run = tracker.run(mv.run_id) if mv.run_id else None
    owner = run.data.tags.get("modelmill.pipeline") if run else None
    if owner != spec.name:
        raise Refused(
            f"{spec.registered_model_name} v{version} was trained by {owner or 'no modelmill run'}, not by pipeline {spec.name}"
        )
    if run.data.tags.get("modelmill.validation") == "rejected" or run.info.status != "FINISHED":
        raise Refused(
            f"{spec.name} v{version} comes from a run that was {'rejected by the gate' if run.data.tags.get('modelmill.validation') == 'rejected' else run.info.status.lower()}: not servable"
        )
    try:
        tracker.verify_model(ModelRef(mv.name, str(mv.version), mv.run_id, f"models:/{mv.name}/{mv.version}"))
    except ModelIntegrityError as e:
        raise Refused(str(e)) from e


def _move(
    tracker: Tracker,
    spec: PipelineSpec,
    action: str,
    version: str,
    previous: str | None,
    reason: str,
    user: str,
    now: datetime,
) -> Move:
    at = now.astimezone(UTC).isoformat(timespec="seconds")
    tracker.set_alias(spec, CHAMPION, version)
    tracker.set_version_tags(
        spec, version, dict(zip(MOVE_TAGS, (action, user, at, reason, previous or "none", at), strict=True))
    )
    for alias in (CANDIDATE, CHALLENGER):
        ref = tracker.alias(spec, alias)
        if ref is not None and ref.version == version:
            tracker.delete_alias(spec, alias)
    row = {
        "action": action,
        "version": version,
        "previous_champion": previous or "none",
        "user": user,
        "reason": reason,
        "at": at,
    }
    audit = tracker.log_audit(spec, row)
    log.info(
        "%s: %s v%s by %s (%s); champion was %s",
        spec.name,
        action,
        version,
        user,
        reason,
        f"v{previous}" if previous else "none",
    )
    return Move(spec.name, action, version, previous, user, reason, at, audit)


def approve(
    tracker: Tracker,
    spec: PipelineSpec,
    home,
    version: str | None,
    reason: str,
    *,
    user: str | None = None,
    now: datetime | None = None,
) -> Move:
    """``champion`` moves to ``version`` (default: the ``candidate`` alias)."""
    if not reason.strip():
        raise Refused("give a --reason: every champion move records why")
    with promotion_lock(spec, home):
        if version is None:
            candidate = tracker.alias(spec, CANDIDATE)
            if candidate is None:
                raise Refused(f"{spec.name} has no candidate awaiting approval: name a VERSION")
            version = candidate.version
        version = str(version).removeprefix("v")
        champion = tracker.alias(spec, CHAMPION)
        if champion is not None and champion.version == version:
            raise Refused(f"{spec.name} v{version} is already the champion")
        check_servable(tracker, spec, version)
        needed = spec.promotion.require_shadow
        if needed and (done := shadow_batches(tracker, spec, version)) < needed:
            raise Refused(
                f"{spec.name} v{version} has shadowed {done} scoring batch(es); promotion.require_shadow asks for {needed} (`modelmill score {spec.name} --shadow`)"
            )
        return _move(
            tracker,
            spec,
            "approve",
            version,
            champion.version if champion else None,
            reason,
            user or current_user(),
            now or datetime.now(UTC),
        )


def rollback(
    tracker: Tracker,
    spec: PipelineSpec,
    home,
    to: str | None,
    reason: str,
    *,
    user: str | None = None,
    now: datetime | None = None,
) -> Move:
    """``champion`` moves back to ``to`` (default: the champion before the current one)."""
    if not reason.strip():
        raise Refused("give a --reason: every champion move records why")
    with promotion_lock(spec, home):
        champion = tracker.alias(spec, CHAMPION)
        if champion is None:
            raise Refused(f"{spec.name} has no champion to roll back")
        if to is None:
            tags = tracker.model_version(spec, champion.version).tags
            to = tags.get("modelmill.previous_champion")
            if to in (None, "none"):
                raise Refused(f"{spec.name} v{champion.version} has no previous champion recorded: name one with --to")
        to = str(to).removeprefix("v")
        if to == champion.version:
            raise Refused(f"{spec.name} v{to} is already the champion")
        check_servable(tracker, spec, to)
        return _move(
            tracker, spec, "rollback", to, champion.version, reason, user or current_user(), now or datetime.now(UTC)
        )
