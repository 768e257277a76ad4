"""``modelmill approve`` and ``modelmill rollback``: a person moves a pipeline's champion."""

from __future__ import annotations

from modelmill.cli.common import EXIT_OK, housekeeping, prepare_environment
from modelmill.config.settings import Settings


def _tracker(args, settings: Settings):
    from modelmill.config.spec import load_spec
    from modelmill.registry.tracking import Tracker

    spec = load_spec(args.pipeline, settings)
    prepare_environment(settings)
    housekeeping(settings, [spec])
    return spec, Tracker.of(settings)


def _said(move, tracker, spec) -> None:
    was = f"v{move.previous}" if move.previous else "none"
    print(
        f"{spec.name}: champion is now v{move.version} (was {was}); {move.action} by {move.user} at {move.at}: {move.reason}"
    )
    print(f"audit: {tracker.run_url(move.audit_run_id)}")


def cmd_approve(args, settings: Settings) -> int:
    from modelmill.ops.approval import approve

    spec, tracker = _tracker(args, settings)
    _said(approve(tracker, spec, settings.home_dir, args.version, args.reason), tracker, spec)
    return EXIT_OK


def cmd_rollback(args, settings: Settings) -> int:
    from modelmill.ops.approval import rollback
    from modelmill.registry.tracking import CHAMPION

    spec, tracker = _tracker(args, settings)
    expect = args.expect
    if expect is None and args.to is None:  # a plain rollback replaces the champion of this moment, no other
        champion = tracker.alias(spec, CHAMPION)
        expect = champion.version if champion else None
    _said(rollback(tracker, spec, settings.home_dir, args.to, args.reason, expect=expect), tracker, spec)
    return EXIT_OK


def register(sub) -> None:
    a = sub.add_parser("approve", help="make a version the champion (default: the candidate awaiting approval)")
    a.add_argument("pipeline")
    a.add_argument("version", nargs="?", help="model version (default: the `candidate` alias)")
    a.add_argument("--reason", required=True, help="why: recorded on the version and in the audit trail")
    a.set_defaults(fn=cmd_approve)

    r = sub.add_parser("rollback", help="move the champion back (default: to the champion before it)")
    r.add_argument("pipeline")
    r.add_argument("--to", metavar="VERSION", help="model version to move back to (default: the previous champion)")
    r.add_argument("--reason", required=True, help="why: recorded on the version and in the audit trail")
    r.add_argument(
        "--expect", metavar="VERSION",
        help="the champion this rollback replaces: refused if another move came first (default for a plain rollback: the champion when the command starts)",
    )  # fmt: skip
    r.set_defaults(fn=cmd_rollback)
