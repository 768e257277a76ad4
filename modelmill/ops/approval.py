"""Champion moves made by a person: approve a candidate (``promotion.mode: manual``) and roll
back to an earlier champion. Each move happens under the pipeline's promotion lock (the one
training runs take to compare and promote), refuses a version that is not fit to serve, and is
recorded on the version's tags and in the pipeline's audit trail in MLflow."""

from __future__ import annotations

import getpass
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from modelmill.config.spec import PipelineSpec
from modelmill.errors import ModelIntegrityError, ModelmillError
from modelmill.registry.tracking import CANDIDATE, CHALLENGER, CHAMPION, SCORING_SUFFIX, SHADOW_TAG, ModelRef, Tracker
from modelmill.runtime.locks import file_lock, lock_dir

log = logging.getLogger("modelmill.ops.approval")

#: the registered model's tag that holds a champion move from before its alias moves to its end
MOVE_INTENT = "modelmill.move_intent"
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
    """The champion alias to ``version`` as one step: the intent is recorded on the registered
    model before the alias moves and removed once the version's tags and the audit row are
    written; a process killed in between leaves the intent for :func:`repair_moves`."""
    at = now.astimezone(UTC).isoformat(timespec="seconds")
    intent = {"action": action, "version": version, "previous_champion": previous or "none", "user": user, "reason": reason, "at": at}  # fmt: skip
    tracker.set_model_tag(spec, MOVE_INTENT, json.dumps(intent))
    tracker.set_alias(spec, CHAMPION, version)
    return _record(tracker, spec, intent)


def _record(tracker: Tracker, spec: PipelineSpec, intent: dict[str, str]) -> Move:
    """What a champion move writes once its alias moved: the version's move tags, no other alias
    on it, the audit row; then the intent is cleared."""
    action, version, previous, at = intent["action"], intent["version"], intent["previous_champion"], intent["at"]
    tracker.set_version_tags(
        spec, version, dict(zip(MOVE_TAGS, (action, intent["user"], at, intent["reason"], previous, at), strict=True))
    )
    for alias in (CANDIDATE, CHALLENGER):
        ref = tracker.alias(spec, alias)
        if ref is not None and ref.version == version:
            tracker.delete_alias(spec, alias)
    audit = tracker.log_audit(spec, dict(intent))
    tracker.delete_model_tag(spec, MOVE_INTENT)
    log.info(
        "%s: %s v%s by %s (%s); champion was %s",
        spec.name,
        action,
        version,
        intent["user"],
        intent["reason"],
        "none" if previous == "none" else f"v{previous}",
    )
    return Move(
        spec.name,
        action,
        version,
        None if previous == "none" else previous,
        intent["user"],
        intent["reason"],
        at,
        audit,
    )


def repair_moves(tracker: Tracker, spec: PipelineSpec) -> Move | None:
    """Finish or drop a champion move a killed process left half done (call under the promotion
    lock): if the alias moved, its tags and audit row are written now, the reason saying so;
    if not, the intent is dropped. One warning either way."""
    raw = tracker.model_tags(spec).get(MOVE_INTENT)
    if not raw:
        return None
    intent = json.loads(raw)
    champion = tracker.alias(spec, CHAMPION)
    if champion is None or champion.version != intent["version"]:
        tracker.delete_model_tag(spec, MOVE_INTENT)
        log.warning(
            "%s: an interrupted %s of v%s (by %s at %s) never moved the champion; dropped",
            spec.name, intent["action"], intent["version"], intent["user"], intent["at"],
        )  # fmt: skip
        return None
    log.warning(
        "%s: completing the %s of v%s by %s at %s, whose process ended after the champion moved",
        spec.name, intent["action"], intent["version"], intent["user"], intent["at"],
    )  # fmt: skip
    return _record(tracker, spec, intent | {"reason": f"{intent['reason']} (completed after an interruption)"})


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
        repair_moves(tracker, spec)
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
    expect: str | None = None,
) -> Move:
    """``champion`` moves back to ``to`` (default: the champion before the current one).
    ``expect``: the champion this rollback replaces; another move that came first refuses it. A
    plain rollback of a champion that came by a rollback is refused too: it would bring back the
    very version that was rolled back from."""
    if not reason.strip():
        raise Refused("give a --reason: every champion move records why")
    with promotion_lock(spec, home):
        repair_moves(tracker, spec)
        champion = tracker.alias(spec, CHAMPION)
        if champion is None:
            raise Refused(f"{spec.name} has no champion to roll back")
        tags = tracker.model_version(spec, champion.version).tags
        moved = f"{tags.get('modelmill.move')} by {tags.get('modelmill.moved_by')} at {tags.get('modelmill.moved_at')}"
        if expect is not None and champion.version != str(expect).removeprefix("v"):
            raise Refused(
                f"{spec.name}: the champion is v{champion.version} ({moved}), not v{str(expect).removeprefix('v')} as this "
                "rollback expected: another move came first; look (`modelmill status`) and name the version with --to"
            )
        if to is None:
            to = tags.get("modelmill.previous_champion")
            if to in (None, "none"):
                raise Refused(f"{spec.name} v{champion.version} has no previous champion recorded: name one with --to")
            if tags.get("modelmill.move") == "rollback":
                raise Refused(
                    f"{spec.name} v{champion.version} is the champion by a rollback ({moved}): a plain rollback would "
                    f"bring back v{to}, the version rolled back from; name the version with --to"
                )
        to = str(to).removeprefix("v")
        if to == champion.version:
            raise Refused(f"{spec.name} v{to} is already the champion")
        check_servable(tracker, spec, to)
        return _move(
            tracker, spec, "rollback", to, champion.version, reason, user or current_user(), now or datetime.now(UTC)
        )
