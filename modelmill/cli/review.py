"""``modelmill list``, ``history`` and ``ui``: what the pipelines did, in the terminal and the MLflow UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from modelmill.cli.common import EXIT_FAILED, EXIT_OK, housekeeping, prepare_environment
from modelmill.config.settings import Settings


def cmd_list(args, settings: Settings) -> int:
    from modelmill.config.spec import load_all
    from modelmill.registry.tracking import CHAMPION, Tracker

    prepare_environment(settings)
    housekeeping(settings, load_all(settings))
    tracker = Tracker.of(settings)
    rows = [("pipeline", "domain", "problem", "last run", "status", "champion", "metric")]
    for spec in load_all(settings):
        runs = tracker.runs(spec)
        last, status = "never", ""
        if not runs.empty:
            r = runs.iloc[-1]
            last = str(r["start_time"])[:19]
            status = r.get("tags.modelmill.status") or r["status"]
            status = status if isinstance(status, str) else r["status"]
        champ = tracker.alias(spec, CHAMPION)
        metric = ""
        if champ:
            mv = tracker.client.get_model_version(champ.name, champ.version)
            metric = f"{spec.metric.name}={float(mv.tags.get('modelmill.primary', 'nan')):.4f}"
        rows.append(
            (spec.name, spec.domain, spec.problem, last, status, f"v{champ.version}" if champ else "none", metric)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_OK


def cmd_status(args, settings: Settings) -> int:
    """One row per pipeline; exit 1 when any is failing or stale (a health check)."""
    import json
    from datetime import UTC, datetime

    from modelmill.config.spec import load_all
    from modelmill.ops.status import healthy, pipeline_status, table
    from modelmill.registry.tracking import Tracker
    from modelmill.runtime.servers import TEMPORARY_API

    prepare_environment(settings)
    specs = load_all(settings)
    housekeeping(settings, specs)
    next_runs = None
    url = os.environ.get("PREFECT_API_URL")
    if url and url != os.environ.get(TEMPORARY_API):  # a Prefect server: its scheduled runs
        from modelmill_flows.deployments import next_runs as scheduled

        next_runs = scheduled([s.name for s in specs])
    tracker, now = Tracker.of(settings), datetime.now(UTC)
    rows = [pipeline_status(tracker, spec, now, next_runs) for spec in specs]
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=1))
    else:
        print(table(rows))
    return EXIT_OK if healthy(rows) else EXIT_FAILED


def cmd_history(args, settings: Settings) -> int:
    from modelmill.config.spec import load_spec
    from modelmill.ops.history import history_figure, history_frame
    from modelmill.registry.tracking import CHAMPION, Tracker

    prepare_environment(settings)
    spec = load_spec(args.pipeline, settings)
    housekeeping(settings, [spec])
    tracker = Tracker.of(settings)
    champion = tracker.alias(spec, CHAMPION)
    frame = history_frame(tracker.runs(spec), champion.version if champion else None, spec.metric.name)
    if frame.empty:
        print(f"{spec.name}: no runs yet")
        return EXIT_OK
    shown = frame.drop(columns=["run_id"]).rename(columns={"metric": spec.metric.name})
    shown = shown.drop(columns=[c for c in ("live", "estimated") if shown[c].isna().all()])  # none yet: no dashes
    shown["champion"] = shown["champion"].map({True: "★", False: ""})
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="—"))
    out = Path(args.out) if args.out else settings.home_dir / "history" / f"{spec.name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = history_figure(frame, spec.name, spec.metric.name)
    fig.savefig(out, dpi=110)
    print(f"\ntrend plot: {out}")
    return EXIT_OK


def cmd_ui(args, settings: Settings) -> int:
    import socket
    import subprocess

    from modelmill.config.spec import load_all
    from modelmill.registry.tracking import Tracker
    from modelmill.runtime.servers import stop_group

    uri = settings.tracking_uri
    with socket.socket() as probe:  # a port already taken (another `modelmill ui`?): say so and fail
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            print(
                f"modelmill ui: port {args.port} is in use (another `modelmill ui` or MLflow server?): "
                "stop it or choose --port",
                file=sys.stderr,
            )
            return EXIT_FAILED
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port}")
    prepare_environment(settings)
    tracker = Tracker.of(settings)
    for spec in load_all(settings):  # each experiment's runs table in modelmill's view
        exp = tracker.experiment_id(spec, create=False)
        if exp is not None:
            print(f"  {spec.name:24} {tracker.experiment_url(exp, f'http://127.0.0.1:{args.port}')}")
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", settings.artifact_root.as_uri()]
    server = subprocess.Popen(cmd, env=env, start_new_session=True)  # its workers in its own group
    try:
        return server.wait()
    finally:  # Ctrl-C, SIGTERM or an error here: the server and its workers stop with the command
        if server.poll() is None:
            stop_group(server, grace=10)


def register(sub) -> None:
    ls = sub.add_parser("list", help="pipelines with domain, last run and champion")
    ls.set_defaults(fn=cmd_list)

    st = sub.add_parser(
        "status",
        help="one row per pipeline: last run, champion, its live figure, drift, next run, stale or failing (exit 1 if any is)",
    )
    st.add_argument("--json", action="store_true", help="the rows as JSON")
    st.set_defaults(fn=cmd_status)

    h = sub.add_parser("history", help="one row per run of a pipeline, and a trend plot")
    h.add_argument("pipeline")
    h.add_argument("--out", help="where to write the trend plot (default: $MODELMILL_HOME/history/PIPELINE.png)")
    h.set_defaults(fn=cmd_history)

    u = sub.add_parser("ui", help="open the MLflow UI on the local store")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)
