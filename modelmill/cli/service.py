"""``modelmill serve``, ``trigger`` and ``prefect-yaml``: schedules, manual triggers and deployments."""

from __future__ import annotations

import os
from pathlib import Path

from modelmill.cli.common import EXIT_FAILED, EXIT_OK, exit_code, housekeeping, log, prepare_environment
from modelmill.config.settings import Settings
from modelmill.errors import ModelmillError, SpecError
from modelmill.runtime.guardian import guard


def cmd_serve(args, settings: Settings) -> int:
    from modelmill.config.spec import load_all
    from modelmill.runtime.servers import credentials, mlflow_server, prefect_server, record_served

    specs = load_all(settings)
    prepare_environment(settings)
    guard()
    started, started_note = [], None
    local_prefect, local_mlflow = not os.environ.get("PREFECT_API_URL"), not os.environ.get("MLFLOW_TRACKING_URI")
    creds = credentials(settings.home_dir) if (local_prefect or local_mlflow) else None
    try:
        if local_prefect:
            srv = prefect_server(settings.home_dir, args.prefect_port, creds=creds).start()
            started.append(srv)
            os.environ["PREFECT_API_URL"] = f"{srv.url}/api"
            os.environ["PREFECT_API_AUTH_STRING"] = creds.prefect_auth
        if local_mlflow:
            srv = mlflow_server(settings.home_dir, args.mlflow_port, settings.tracking_uri, creds=creds).start()
            started.append(srv)
            os.environ["MLFLOW_TRACKING_URI"] = srv.url
            os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
                creds.mlflow_user,
                creds.mlflow_password,
            )
        if started:  # a `modelmill run` beside it records there
            started_note = record_served(
                settings.home_dir,
                os.environ["PREFECT_API_URL"].removesuffix("/api") if local_prefect else None,
                os.environ["MLFLOW_TRACKING_URI"] if local_mlflow else None,
            )
        if creds is not None:
            print(f"Credentials of the local servers (Prefect basic auth, MLflow admin): {creds.path} (mode 0600)")
        housekeeping(settings, specs, prefect=True)
        print(f"Prefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}")
        print(f"MLflow UI:  {os.environ['MLFLOW_TRACKING_URI']}")
        for spec in specs:
            print(
                f"  deployment modelmill-pipeline/{spec.name:24} cron '{spec.schedule.cron}' ({spec.schedule.timezone})"
            )
        from modelmill_flows.deployments import serve_all

        serve_all(
            specs,
            on_ready=lambda: print(
                "Serving; trigger a run with `modelmill trigger PIPELINE`. Ctrl-C stops everything.", flush=True
            ),
        )
    except KeyboardInterrupt:
        pass
    finally:
        if started_note is not None:
            started_note.unlink(missing_ok=True)
        for srv in reversed(started):
            srv.stop()
    return EXIT_OK


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ModelmillError(f"--param takes key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k, {"true": True, "false": False}.get(v.lower(), v)


def cmd_trigger(args, settings: Settings) -> int:
    from modelmill.config.spec import load_spec
    from modelmill.ops.report import summary_table
    from modelmill.registry.tracking import Tracker

    spec = load_spec(args.pipeline, settings)
    if not os.environ.get("PREFECT_API_URL"):
        raise ModelmillError(
            "no PREFECT_API_URL: start `modelmill serve` (or a Prefect server) and point PREFECT_API_URL at it"
        )
    prepare_environment(settings)
    from modelmill_flows.deployments import trigger

    given = dict(_param(p) for p in args.param)
    if "pipeline" in given:
        raise SpecError(f"--param pipeline: the deployment modelmill-pipeline/{spec.name} names its pipeline itself")
    params = {"pipeline": spec.name, "trigger": "manual", **given}
    try:
        flow_run_id, state = trigger(
            spec.name, params, watch=not args.no_watch, timeout=args.timeout, report=lambda m: log.info("%s", m)
        )
    except TimeoutError as e:
        raise ModelmillError(f"{e} (is `modelmill serve` running?)") from e
    if state is None:
        return EXIT_OK
    tracker = Tracker.of(settings)
    run = tracker.find_run(spec, flow_run_id)
    if run is None:
        print(f"{spec.name}: flow run ended {state}; no MLflow run was recorded")
        return EXIT_FAILED
    summary = run_summary(tracker, spec, run, state)
    print(summary_table([summary]))
    print(f"\n{tracker.run_url(run.info.run_id)}")
    return exit_code([summary])


def run_summary(tracker, spec, run, state: str) -> dict:
    """The summary row of a finished MLflow run, as `modelmill run` prints it: a skipped run
    shows the version and test figures of the run it matched (it logs none of its own)."""
    from modelmill.registry.runview import from_primary_metrics
    from modelmill.registry.tracking import CHAMPION

    tags = run.data.tags
    status = tags.get("modelmill.status") or ("trained" if state == "COMPLETED" else "failed")
    figures_of, version = run, tags.get("modelmill.model_version")
    if status == "skipped" and tags.get("modelmill.matched_run"):
        figures_of, version = tracker.run(tags["modelmill.matched_run"]), tags.get("modelmill.matched_version")
    champion = tracker.alias(spec, CHAMPION)
    return {
        "pipeline": spec.name, "status": status, "metric": spec.metric.name, "direction": spec.metric.direction,
        **from_primary_metrics(spec.metric.name, figures_of.data.metrics),
        "version": version, "promoted": tags.get("modelmill.decision") == "promoted",
        "error": tags.get("modelmill.error"), "champion_version": champion.version if champion else None,
    }  # fmt: skip


def cmd_prefect_yaml(args, settings: Settings) -> int:
    import yaml

    from modelmill.config.spec import load_all

    prepare_environment(settings)
    from modelmill_flows.deployments import prefect_yaml

    text = "# Generated by `modelmill prefect-yaml` from pipelines/*.yaml; a test keeps it in sync.\n"
    if args.pool != "process":
        text += f"# Deployments on the {args.pool} work pool: `modelmill prefect-yaml --pool {args.pool}`.\n"
    text += yaml.dump(prefect_yaml(load_all(settings), args.pool), Dumper=_named_anchors(), sort_keys=False, width=100)
    if args.write:
        Path(args.write).write_text(text)
    else:
        print(text, end="")
    return EXIT_OK


def _named_anchors():
    import yaml

    class NamedAnchors(yaml.SafeDumper):
        """Aliases named after what they stand for: a work pool's section by its type
        (``*docker``), the containers' environment (``*stack_env``), the image's ``pull`` steps
        (``*image_workdir``)."""

        def generate_anchor(self, node):
            if isinstance(node, yaml.SequenceNode):
                return "image_workdir"
            fields = {k.value: v.value for k, v in node.value if isinstance(v, yaml.ScalarNode)}
            return str(fields["name"]).removeprefix("modelmill-") if "name" in fields else "stack_env"

    return NamedAnchors


def register(sub) -> None:
    sv = sub.add_parser("serve", help="serve every spec's schedule as a Prefect deployment")
    sv.add_argument("--prefect-port", type=int, default=4200)
    sv.add_argument("--mlflow-port", type=int, default=5000)
    sv.set_defaults(fn=cmd_serve)

    tr = sub.add_parser("trigger", help="run a deployment now through the Prefect API and follow it")
    tr.add_argument("pipeline")
    tr.add_argument("--param", action="append", default=[], help="flow parameter key=value (as_of, promote)")
    tr.add_argument("--no-watch", action="store_true", help="return once the run is created")
    tr.add_argument("--timeout", type=float, default=3600)
    tr.set_defaults(fn=cmd_trigger)

    py = sub.add_parser("prefect-yaml", help="render prefect.yaml from the specs")
    py.add_argument("--write", metavar="FILE")
    py.add_argument(
        "--pool",
        choices=("process", "docker", "kubernetes"),
        default="process",
        help="the work pool type the deployments run on (default: process)",
    )
    py.set_defaults(fn=cmd_prefect_yaml)
