"""``modelmill outcomes``: the truth that arrived, joined to what the champion scored."""

from __future__ import annotations

from modelmill.cli.common import (
    EXIT_OK,
    flow_failed,
    housekeeping,
    launch_prefect_api,
    prefect_ready,
    prepare_environment,
)
from modelmill.config.settings import Settings


def _interval(b: dict) -> str:
    if b["low"] is None or b["low"] != b["low"]:
        return "no interval: too few rows of each class"
    return f"95 % interval {b['low']:.4f}-{b['high']:.4f}"


def cmd_outcomes(args, settings: Settings) -> int:
    """Join an outcomes file to the kept scored rows (a Prefect flow, like scoring)."""
    from modelmill.config.spec import load_spec

    spec = load_spec(args.pipeline, settings)
    prepare_environment(settings)
    launch_prefect_api(settings)
    housekeeping(settings, [spec], prefect=True)
    from modelmill_flows.scoring import outcomes_flow

    prefect_ready()
    state = outcomes_flow(args.pipeline, input=args.input, return_state=True)
    if flow_failed(state, "outcomes"):
        return 1
    r = state.result()
    print(f"{r['pipeline']}: {r['joined']} of {r['rows']} outcomes joined to scored rows")
    not_joined = {
        "sent before (counted once)": r["resent"],
        "name rows no kept batch scored": r["unknown"],
        "have no value, or one that is not a label of the model (a recommender's: are not interactions)": r[
            "unlabelled"
        ],
        "give one row two different values": r["conflicting"],
    }
    for what, n in not_joined.items():
        if n:
            print(f"  {n} {what}")
    if r["changed"]:
        print(f"  {r['changed']} of those sent before changed value; the value first received is kept")
    if r["unknown_output"]:
        print(f"  unknown keys: {r['unknown_output']}")
    for b in r["batches"]:
        test = f"; on its test split {b['test']:.4f}" if b["test"] is not None else ""
        if b.get("estimated_value") is not None:
            test += f"; estimated when scored {b['estimated_value']:.4f} ({b['estimated_low']:.4f}-{b['estimated_high']:.4f})"
        print(
            f"batch {b['batch']} (v{b['version']}, {b['rows']} {b['unit']}): {b['metric']} {b['value']:.4f} ({_interval(b)}){test}"
        )
    for alert in r["alerts"]:
        print(f"live_drop: {alert}")
    print(f"MLflow run {r['run_id']}")
    return EXIT_OK


def register(sub) -> None:
    oc = sub.add_parser("outcomes", help="join the true outcomes of scored rows and measure the champion on them")
    oc.add_argument("pipeline", help="pipeline name or spec file")
    oc.add_argument(
        "--input",
        help="CSV / Parquet / xlsx file: the spec's roles.id column (else the feature columns) and its target column; "
        "for a recommender, the interactions since (roles.user, roles.item) (default: the spec's outcomes, a file or a query)",
    )
    oc.set_defaults(fn=cmd_outcomes)
