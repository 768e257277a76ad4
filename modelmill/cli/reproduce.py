"""``modelmill reproduce``: rebuild a registered version and compare it with its record."""

from __future__ import annotations

from modelmill.cli.common import EXIT_FAILED, EXIT_OK, add_threads_option, prepare_environment, set_threads
from modelmill.config.settings import Settings


def cmd_reproduce(args, settings: Settings) -> int:
    """Rebuild VERSION from its recorded snapshot, spec, suite and fingerprint in a scratch store;
    exit 0 when the selection and test metrics match (exactly, or within the stated tolerance of a
    network), 1 with the inputs that differ when they do not, or when it cannot be rebuilt."""
    from modelmill.pipeline.reproduce import reproduce

    prepare_environment(settings)
    set_threads(args, settings)
    r = reproduce(args.pipeline, args.version, settings)
    print(f"{r.pipeline} v{r.version} (run {r.run_id}): {r.status.replace('_', ' ')}")
    if r.selection is not None:
        same = "same" if r.selection[0] == r.selection[1] else "DIFFERENT"
        print(f"selection: recorded {r.selection[0]}, rebuilt {r.selection[1]} ({same})")
    if r.table is not None and len(r.table):
        differ = int((r.table["difference"].abs() > r.tolerance).sum())
        print(
            f"test metrics, the baseline's included: {len(r.table) - differ} of {len(r.table)} match (tolerance {r.tolerance:g}); the model's:"
        )
        for row in r.table[~r.table["metric"].str.startswith("baseline_")].itertuples():
            flag = "" if abs(row.difference) <= r.tolerance else "   <- differs"
            print(f"  {row.metric:<28} recorded {row.recorded:.10g}  rebuilt {row.rebuilt:.10g}{flag}")
    for line in r.inputs:
        print(f"input differs: {line}")
    return EXIT_OK if r.ok else EXIT_FAILED


def register(sub) -> None:
    rp = sub.add_parser(
        "reproduce",
        help="rebuild a registered version from its recorded snapshot, spec and suite, and compare selection and test metrics",
    )
    rp.add_argument("pipeline", help="pipeline name or spec file")
    rp.add_argument("version", help="the registered model version")
    add_threads_option(rp)
    rp.set_defaults(fn=cmd_reproduce)
