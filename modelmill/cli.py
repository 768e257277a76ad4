"""``modelmill`` command line: run pipelines, list them, pull datasets, open the UI.

The core stays free of prefect: flows are imported inside the commands that run them, after the
environment (Prefect home, MLflow store) has been set from :class:`Settings`.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import time
from pathlib import Path


from modelmill.errors import DiskFull, ModelmillError, one_line_cause
from modelmill.guardian import guard
from modelmill.servers import TEMPORARY_API
from modelmill.settings import Settings, get_settings

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
ORPHANED = "orphaned: its process ended without finishing the run (killed?)"
log = logging.getLogger("modelmill")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the running stage unwinds and records it."""


def check_free_space(settings: Settings) -> None:
    """Refuse to start on a (nearly) full disk: say it in one line before anything is written."""
    import shutil

    home = settings.home_dir
    probe = next((p for p in [home, *home.parents] if p.exists()), Path("/"))
    free_mb = shutil.disk_usage(probe).free / 2**20
    if free_mb < settings.min_free_mb:
        raise DiskFull(f"only {free_mb:.0f} MB free on the device of MODELMILL_HOME={home} (at least {settings.min_free_mb} MB needed; MODELMILL_MIN_FREE_MB sets it): free some space")


#: the temporary Prefect API this command launched (at most one), stopped when the process exits
_temporary_api: list = []


def launch_prefect_api(settings: Settings, local: bool = True) -> None:
    """A command that runs flows without ``PREFECT_API_URL`` needs a temporary Prefect API. Prefect
    would start one at the first flow and wait for it there (~7 s on a new project's database);
    launched here, before the command's own start-up (MLflow, housekeeping, imports), it comes up
    meanwhile. Only before Prefect is imported in this process (its settings are read then), and
    not for a cluster elsewhere (``local=False``), whose workers could not reach a loopback API."""
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules or not local:
        return
    from modelmill.servers import temporary_prefect_api

    server = temporary_prefect_api(settings.home_dir).launch()
    _temporary_api.append(server)
    os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_API] = f"{server.url}/api"
    # Stopped at exit, after Prefect's own exit handlers (registered later, so run earlier) have
    # sent its last logs and events: stopped before them, they retry for a minute.
    atexit.register(_stop_prefect_api)


def prefect_ready() -> None:
    """Wait for the temporary Prefect API, if this command launched one (at once once it is up)."""
    for server in _temporary_api:
        server.wait(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")))


def warm_up(specs) -> None:
    """While the temporary Prefect API is still coming up, import what the stages will need: GX
    for the gate, then each pipeline's problem kind (scikit-learn, torch). Time that was spent
    waiting; it stops at the first import after the API answers."""
    if not _temporary_api:
        return
    from modelmill.kinds import kind_module

    for module in dict.fromkeys(["great_expectations", *(kind_module(s.problem) for s in specs)]):
        if _temporary_api[0].answers():
            return
        importlib.import_module(module)


def _stop_prefect_api() -> None:
    while _temporary_api:
        _temporary_api.pop().stop()


def _forget_prefect_api() -> None:
    """When a command ends, the processes it starts next no longer inherit its temporary API
    (which lives on until this process exits)."""
    if _temporary_api and os.environ.get("PREFECT_API_URL") == f"{_temporary_api[0].url}/api":
        del os.environ["PREFECT_API_URL"]
        os.environ.pop(TEMPORARY_API, None)


def _on_sigterm(signum, frame):
    raise Terminated("terminated by SIGTERM")


def housekeeping(settings: Settings, specs, *, prefect: bool = False) -> None:
    """Before a command looks at runs: fail fast if the tracking server is down, remove temporary
    files of interrupted writes, and mark runs whose process died FAILED (orphaned). With
    ``prefect`` (commands that talk to Prefect anyway), their flow runs are set to Crashed too."""
    from modelmill.reconcile import FLOW_RUN_RECONCILED, clean_stale_temp, reconcile, unreconciled_flow_runs
    from modelmill.tracking import Tracker

    tracker = Tracker(settings)
    tracker.check_reachable()
    clean_stale_temp(settings.snapshot_dir, settings.cache_dir)
    reconcile(tracker, specs)
    if prefect and (pending := unreconciled_flow_runs(tracker, specs)):
        from flows.pipeline import mark_crashed

        prefect_ready()
        mark_crashed(list(pending.values()), ORPHANED)
        for run_id in pending:
            tracker.set_tags(run_id, {FLOW_RUN_RECONCILED: "true"})


def prepare_environment(settings: Settings) -> None:
    """Point Prefect and MLflow at the project data folder unless servers are configured."""
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Our own progress lines go to the terminal; Prefect's console handlers only say what is
    # critical (its records still reach the Prefect API and UI).
    for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # batch runs send nothing home
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")  # its errors reach us as exceptions: one line each
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "modelmill")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for noisy in ("mlflow", "alembic", "great_expectations", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", "%H:%M:%S"))
    root = logging.getLogger("modelmill")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    logging.captureWarnings(True)


def exit_code(summaries: list[dict]) -> int:
    statuses = {s["status"] for s in summaries}
    if "failed" in statuses:
        return EXIT_FAILED
    if "rejected" in statuses:
        return EXIT_REJECTED
    return EXIT_OK


def cmd_run(args, settings: Settings) -> int:
    from modelmill.fetch import check_mirror
    from modelmill.report import summary_table
    from modelmill.spec import available, load_spec

    names = list(available(settings)) if args.all else args.pipelines
    if not names:
        print("modelmill run: name one or more pipelines, or --all", file=sys.stderr)
        return 2
    specs = [load_spec(n, settings) for n in names]  # fail fast on unknown names / invalid specs / a missing mirror
    check_mirror(settings)
    check_free_space(settings)
    prepare_environment(settings)
    guard()
    launch_prefect_api(settings, local=not (args.dask_address or args.ray_address))
    housekeeping(settings, _with_shipped(specs, settings), prefect=True)
    if args.workers < 1:
        print(f"modelmill run: --workers {args.workers}: give at least 1", file=sys.stderr)
        return 2
    if args.dask_address and args.ray_address:
        print("modelmill run: --dask-address or --ray-address, not both", file=sys.stderr)
        return 2
    if args.ray_address:
        args.runner = "ray"
    elif args.dask_address and args.runner == "ray":
        print("modelmill run: --dask-address is for the dask runner; for Ray give --ray-address", file=sys.stderr)
        return 2
    import flows.pipeline  # noqa: F401 - Prefect's import, while its API comes up

    side_by_side = args.workers > 1 or args.dask_address or args.ray_address or args.runner != "dask"
    if not side_by_side:  # workers import for themselves
        warm_up(specs)
    prefect_ready()
    if side_by_side:
        summaries = _run_side_by_side(names, specs, args, settings)
    else:
        summaries = _run_one_after_another(names, args)
    print()
    print(summary_table(summaries))
    print()
    from modelmill.tracking import Tracker

    tracker = Tracker(settings)
    for s in summaries:
        if s.get("run_id"):
            experiment = tracker.run(s["run_id"]).info.experiment_id
            print(f"{s['pipeline']}: this run {s['where']}\n{'':{len(s['pipeline']) + 2}}all runs {tracker.experiment_url(experiment)}")
    print(f"\nMLflow store: {settings.tracking_uri}   (open it with `modelmill ui`)")
    return exit_code(summaries)


def _with_shipped(specs, settings: Settings) -> list:
    """These specs and every spec of the pipelines folder, once each."""
    from modelmill.spec import load_all

    names = {s.name for s in specs}
    return [*specs, *(s for s in load_all(settings) if s.name not in names)]


def cmd_check(args, settings: Settings) -> int:
    """Dry run: parse the spec, read the data, run the gate, say what would be trained. Nothing
    is trained, no snapshot is written and nothing reaches MLflow."""
    from modelmill import integrity
    from modelmill.fetch import check_mirror
    from modelmill.ingest import fetch_sources, read_source
    from modelmill.kinds import get_kind
    from modelmill.spec import load_spec
    from modelmill.validate import gate, validate_frame

    spec = load_spec(args.pipeline, settings)
    kind = get_kind(spec.problem)
    kind.check_spec(spec)
    check_mirror(settings)
    df = read_source(spec, fetch_sources(spec, settings))
    report = validate_frame(df, spec.suite_path(settings), detail=True)  # every check's bad-row count
    report.add(integrity.findings(spec, df, classification=kind.EXAMPLE_ROWS))
    print(f"{spec.name}: {len(df)} rows x {len(df.columns)} columns from {spec.source.path or spec.source.url or spec.source.dataset or 'a SQL query'}")
    rows = [("check", "result", "bad rows", "examples / error")]
    for o in report.outcomes:
        result = "ERROR" if o.raised else ("pass" if o.success else "FAIL")
        bad = "" if o.unexpected_count is None else f"{o.unexpected_count} of {len(df)}"
        detail = (o.message or "") if (o.raised or o.message) and not o.success else ", ".join(map(str, o.examples))
        rows.append((o.label, result, bad, detail[:100]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    if kind.EXAMPLE_ROWS:
        repeated = int(integrity.duplicated(spec, df).sum())
        print(f"\nrepeated rows: {repeated} (duplicates: {spec.duplicates}{' - dropped before the split' if repeated and spec.duplicates == 'drop' else ''})")
    print(f"\nwould train ({spec.problem}, split {spec.split.method}, metric {spec.metric.name} to {spec.metric.direction}):")
    for c in [spec.baseline, *spec.candidates]:
        role = "baseline " if c is spec.baseline else "candidate"
        print(f"  {role} {c.name}: {c.estimator}{f' params {c.params}' if c.params else ''}{f' grid {c.grid}' if c.grid else ''}")
    gate(report, spec.name)
    print(f"\nthe gate passes: `modelmill run {args.pipeline}` would train these")
    return EXIT_OK


def cmd_score(args, settings: Settings) -> int:
    """Score a batch file with a pipeline's champion (a Prefect flow, like a training run)."""
    from modelmill.spec import load_spec

    spec = load_spec(args.pipeline, settings)
    check_free_space(settings)
    prepare_environment(settings)
    guard()
    launch_prefect_api(settings)
    housekeeping(settings, [spec], prefect=True)
    from flows.pipeline import heartbeats_where_watched
    from flows.scoring import score_flow

    prefect_ready()
    with heartbeats_where_watched():
        state = score_flow(args.pipeline, input=args.input, output=args.output, return_state=True)
    if state.is_failed():
        try:
            state.result()
        except Exception as e:  # the cause, in one line
            print(f"modelmill score: {one_line_cause(e)}", file=sys.stderr)
        return 1
    r = state.result()
    print(f"{r['pipeline']}: champion v{r['version']} scored {r['scored']} of {r['rows']} rows -> {r['output']}")
    if r["rejected"]:
        print(f"{r['rejected']} rows rejected by the suite's feature rules, not scored: {r['rejected_output']} (column rejected_because)")
    print(f"input sha256 {r['input_sha256']}; score drift vs training (PSI) {r['score_psi']:.3f}; MLflow run {r['run_id']}")
    return EXIT_OK


def cmd_list(args, settings: Settings) -> int:
    from modelmill.spec import load_all
    from modelmill.tracking import CHAMPION, Tracker

    prepare_environment(settings)
    housekeeping(settings, load_all(settings))
    tracker = Tracker(settings)
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
        rows.append((spec.name, spec.domain, spec.problem, last, status, f"v{champ.version}" if champ else "none", metric))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_OK


def cmd_datasets(args, settings: Settings) -> int:
    from modelmill.catalog import CATALOG, get_entry
    from modelmill.fetch import check_mirror, fetch_catalog_file

    if args.action == "list":
        for e in CATALOG.values():
            print(f"{e.id:24} {e.title}  [{e.licence}]\n{'':24} {e.citation}")
        return EXIT_OK
    ids = args.ids or list(CATALOG)
    check_mirror(settings)
    for i in ids:
        entry = get_entry(i)
        if not entry.files:
            log.info("%s: bundled with scikit-learn, nothing to download", i)
            continue
        for f in entry.files:
            lf = fetch_catalog_file(entry, f, settings, refresh=args.refresh)
            log.info("%s/%s: %s (sha256 %s…)", i, f.name, lf.path, lf.sha256[:12])
    return EXIT_OK


def cmd_ui(args, settings: Settings) -> int:
    import subprocess

    from modelmill.spec import load_all
    from modelmill.tracking import Tracker

    uri = settings.tracking_uri
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port}")
    prepare_environment(settings)
    tracker = Tracker(settings)
    for spec in load_all(settings):  # each experiment's runs table in modelmill's view
        exp = tracker.experiment_id(spec, create=False)
        if exp is not None:
            print(f"  {spec.name:24} {tracker.experiment_url(exp, f'http://127.0.0.1:{args.port}')}")
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", settings.artifact_root.as_uri()]
    return subprocess.call(cmd, env=env)


def cmd_history(args, settings: Settings) -> int:
    from modelmill.history import history_figure, history_frame
    from modelmill.spec import load_spec
    from modelmill.tracking import CHAMPION, Tracker

    prepare_environment(settings)
    spec = load_spec(args.pipeline, settings)
    housekeeping(settings, [spec])
    tracker = Tracker(settings)
    champion = tracker.alias(spec, CHAMPION)
    frame = history_frame(tracker.runs(spec), champion.version if champion else None, spec.metric.name)
    if frame.empty:
        print(f"{spec.name}: no runs yet")
        return EXIT_OK
    shown = frame.drop(columns=["run_id"]).rename(columns={"metric": spec.metric.name})
    shown["champion"] = shown["champion"].map({True: "★", False: ""})
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="—"))
    out = Path(args.out) if args.out else settings.home_dir / "history" / f"{spec.name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = history_figure(frame, spec.name, spec.metric.name)
    fig.savefig(out, dpi=110)
    print(f"\ntrend plot: {out}")
    return EXIT_OK


def backfill_dates(start: str, end: str, every: str) -> list[str]:
    import pandas as pd

    freq = {"day": "D", "week": "W-FRI", "month": "ME", "quarter": "QE"}[every]
    dates = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=freq)
    if len(dates) == 0:
        raise ModelmillError(f"no {every} end between {start} and {end}")
    return [d.strftime("%Y-%m-%d") for d in dates]


def cmd_backfill(args, settings: Settings) -> int:
    from modelmill.fetch import check_mirror
    from modelmill.ingest import date_column
    from modelmill.report import summary_table
    from modelmill.spec import load_spec

    spec = load_spec(args.pipeline, settings)
    if date_column(spec) is None:
        raise ModelmillError(f"pipeline {spec.name} has no date column: backfill needs dated data")
    dates = backfill_dates(args.start, args.end, args.every)
    check_mirror(settings)
    check_free_space(settings)
    prepare_environment(settings)
    guard()
    launch_prefect_api(settings)
    housekeeping(settings, [spec], prefect=True)
    from flows.pipeline import heartbeats_where_watched, pipeline_flow, summary_of

    warm_up([spec])
    prefect_ready()
    summaries = []
    for i, as_of in enumerate(dates, 1):
        log.info("▶ [%d/%d] %s as of %s%s", i, len(dates), spec.name, as_of, "" if args.promote else " (champion alias untouched)")
        with heartbeats_where_watched():
            state = pipeline_flow(args.pipeline, as_of=as_of, promote=args.promote, trigger="backfill", force=args.force, return_state=True)
        s = summary_of(spec.name, state)
        s["pipeline"] = f"{spec.name}@{as_of}"
        summaries.append(s)
    print(summary_table(summaries))
    print(f"\nSee the trend with `modelmill history {spec.name}`.")
    return exit_code(summaries)


def cmd_serve(args, settings: Settings) -> int:
    from modelmill.servers import credentials, mlflow_server, prefect_server
    from modelmill.spec import load_all

    specs = load_all(settings)
    prepare_environment(settings)
    guard()
    started = []
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
            os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = creds.mlflow_user, creds.mlflow_password
        if creds is not None:
            print(f"Credentials of the local servers (Prefect basic auth, MLflow admin): {creds.path} (mode 0600)")
        housekeeping(settings, specs, prefect=True)
        print(f"Prefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}")
        print(f"MLflow UI:  {os.environ['MLFLOW_TRACKING_URI']}")
        for spec in specs:
            print(f"  deployment modelmill-pipeline/{spec.name:24} cron '{spec.schedule.cron}' ({spec.schedule.timezone})")
        print("Serving; trigger a run with `modelmill trigger PIPELINE`. Ctrl-C stops everything.", flush=True)
        from flows.deployments import serve_all

        serve_all(specs)
    except KeyboardInterrupt:
        pass
    finally:
        for srv in reversed(started):
            srv.stop()
    return EXIT_OK


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ModelmillError(f"--param takes key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k, {"true": True, "false": False}.get(v.lower(), v)


def cmd_trigger(args, settings: Settings) -> int:
    from modelmill.report import summary_table
    from modelmill.runview import from_primary_metrics
    from modelmill.spec import load_spec
    from modelmill.tracking import CHAMPION, Tracker

    spec = load_spec(args.pipeline, settings)
    if not os.environ.get("PREFECT_API_URL"):
        raise ModelmillError("no PREFECT_API_URL: start `modelmill serve` (or a Prefect server) and point PREFECT_API_URL at it")
    prepare_environment(settings)
    from flows.deployments import trigger

    params = {"pipeline": spec.name, "trigger": "manual", **dict(_param(p) for p in args.param)}
    try:
        flow_run_id, state = trigger(spec.name, params, watch=not args.no_watch, timeout=args.timeout, report=lambda m: log.info("%s", m))
    except TimeoutError as e:
        raise ModelmillError(f"{e} (is `modelmill serve` running?)") from e
    if state is None:
        return EXIT_OK
    tracker = Tracker(settings)
    run = tracker.find_run(spec, flow_run_id)
    if run is None:
        print(f"{spec.name}: flow run ended {state}; no MLflow run was recorded")
        return EXIT_FAILED
    tags = run.data.tags
    status = tags.get("modelmill.status") or ("trained" if state == "COMPLETED" else "failed")
    champion = tracker.alias(spec, CHAMPION)
    summary = {
        "pipeline": spec.name, "status": status, "metric": spec.metric.name, "direction": spec.metric.direction,
        **from_primary_metrics(spec.metric.name, run.data.metrics),
        "version": tags.get("modelmill.model_version"), "promoted": tags.get("modelmill.decision") == "promoted",
        "error": tags.get("modelmill.error"), "champion_version": champion.version if champion else None,
    }  # fmt: skip
    print(summary_table([summary]))
    print(f"\n{tracker.run_url(run.info.run_id)}")
    return exit_code([summary])


def cmd_prefect_yaml(args, settings: Settings) -> int:
    import yaml

    from modelmill.spec import load_all

    prepare_environment(settings)
    from flows.deployments import prefect_yaml

    text = "# Generated by `modelmill prefect-yaml` from pipelines/*.yaml; a test keeps it in sync.\n"
    text += yaml.safe_dump(prefect_yaml(load_all(settings)), sort_keys=False, width=100)
    if args.write:
        Path(args.write).write_text(text)
    else:
        print(text, end="")
    return EXIT_OK


def _run_one_after_another(names: list[str], args) -> list[dict]:
    from flows.pipeline import heartbeats_where_watched, pipeline_flow, summary_of

    summaries = []
    for i, name in enumerate(names, 1):
        log.info("▶ [%d/%d] %s", i, len(names), name)
        t0 = time.time()
        with heartbeats_where_watched():
            state = pipeline_flow(name, as_of=args.as_of, promote=not args.no_promote, force=args.force, return_state=True)
        s = summary_of(name, state)
        summaries.append(s)
        log.info("■ %s: %s in %.0fs%s", name, s["status"], time.time() - t0, f" — {s['error']}" if s.get("error") else "")
    return summaries


def _longest_first(names: list[str], specs: list, settings: Settings) -> list[str]:
    """The names (with their loaded specs, in the same order), longest last run first."""
    from modelmill.history import longest_first
    from modelmill.tracking import Tracker

    tracker = Tracker(settings)
    seconds = {n: tracker.last_seconds(spec) for n, spec in zip(names, specs, strict=True)}
    ordered = longest_first(names, seconds)
    if any(s is not None for s in seconds.values()):
        log.info("longest first, by each pipeline's last trained run: %s", ", ".join(f"{n} {seconds[n]:.0f}s" if seconds[n] is not None else n for n in ordered))
    return ordered


def _run_side_by_side(names: list[str], specs: list, args, settings: Settings) -> list[dict]:
    """The pipelines as tasks of one ``modelmill-all`` flow on a Dask (or Ray) task runner."""
    from flows.parallel import task_runner
    from flows.pipeline import all_pipelines_flow, heartbeats_where_watched

    address = args.dask_address or args.ray_address
    given, names = names, _longest_first(names, specs, settings)
    runner = task_runner(args.workers, args.runner, address, scratch=settings.home_dir / "workers")
    where = address or f"a local {args.runner} cluster of {args.workers} workers"
    log.info("▶ %d pipelines side by side on %s: %s", len(names), where, ", ".join(names))
    t0 = time.time()
    with heartbeats_where_watched():
        state = all_pipelines_flow.with_options(task_runner=runner)(
            names, force=args.force, parallel=True, as_of=args.as_of, promote=not args.no_promote, return_state=True
        )
    result = state.result(raise_on_failure=False)
    if not isinstance(result, list):  # some pipeline failed: the flow raised after all of them ran
        if not hasattr(result, "summaries"):  # the flow itself broke (the cluster did not start…)
            raise result if isinstance(result, BaseException) else RuntimeError(str(result))
        result = result.summaries
    result = sorted(result, key=lambda s: given.index(s["pipeline"]))  # the table in the usual order
    for s in result:
        log.info("■ %s: %s%s", s["pipeline"], s["status"], f" — {s['error']}" if s.get("error") else "")
    log.info("■ all %d in %.0fs", len(names), time.time() - t0)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelmill", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run pipelines now (a Prefect flow each)")
    r.add_argument("pipelines", nargs="*", help="pipeline names or spec files")
    r.add_argument("--all", action="store_true", help="every pipeline in the pipelines folder")
    r.add_argument("--as-of", help="train on data dated up to this day (YYYY-MM-DD)")
    r.add_argument("--no-promote", action="store_true", help="never move the champion alias")
    r.add_argument("--force", action="store_true", help="retrain even if data, spec, suite and code are unchanged")
    r.add_argument("--workers", type=int, default=1, metavar="N", help="run N pipelines side by side (a local Dask cluster of N worker processes)")
    r.add_argument("--runner", choices=("dask", "ray"), default="dask", help="the task runner for --workers: prefect-dask (default) or prefect-ray")
    r.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="run the pipelines on an existing Dask cluster instead")
    r.add_argument("--ray-address", metavar="HOST:PORT", help="run the pipelines on an existing Ray cluster instead (implies --runner ray)")
    r.set_defaults(fn=cmd_run)

    ck = sub.add_parser("check", help="dry run: read the data, run the gate, show what would be trained (no training, no MLflow)")
    ck.add_argument("pipeline", help="pipeline name or spec file")
    ck.set_defaults(fn=cmd_check)

    sc = sub.add_parser("score", help="score a batch file with a pipeline's champion (output: Parquet)")
    sc.add_argument("pipeline", help="pipeline name or spec file")
    sc.add_argument("--input", help="CSV / Parquet / xlsx file (default: the spec's scoring.input)")
    sc.add_argument("--output", help="Parquet file to write (default: the spec's scoring.output)")
    sc.set_defaults(fn=cmd_score)

    ls = sub.add_parser("list", help="pipelines with domain, last run and champion")
    ls.set_defaults(fn=cmd_list)

    d = sub.add_parser("datasets", help="the dataset catalog")
    d.add_argument("action", choices=["pull", "list"])
    d.add_argument("ids", nargs="*")
    d.add_argument("--refresh", action="store_true", help="download again even if cached")
    d.set_defaults(fn=cmd_datasets)

    h = sub.add_parser("history", help="one row per run of a pipeline, and a trend plot")
    h.add_argument("pipeline")
    h.add_argument("--out", help="where to write the trend plot (default: $MODELMILL_HOME/history/PIPELINE.png)")
    h.set_defaults(fn=cmd_history)

    b = sub.add_parser("backfill", help="train as of past dates to build a history")
    b.add_argument("pipeline")
    b.add_argument("--start", required=True)
    b.add_argument("--end", required=True)
    b.add_argument("--every", choices=["day", "week", "month", "quarter"], default="month")
    b.add_argument("--promote", action="store_true", help="let backfill runs move the champion alias")
    b.add_argument("--force", action="store_true", help="retrain dates whose run would be unchanged")
    b.set_defaults(fn=cmd_backfill)

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
    py.set_defaults(fn=cmd_prefect_yaml)

    u = sub.add_parser("ui", help="open the MLflow UI on the local store")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    settings = get_settings()
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.fn(args, settings)
    except ModelmillError as e:
        print(f"modelmill: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - a full disk, a vanished folder…: the cause in one line
        log.debug("traceback", exc_info=True)
        print(f"modelmill: error: {one_line_cause(e)} (run with -v for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"modelmill: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the run in progress was marked KILLED", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        _forget_prefect_api()


if __name__ == "__main__":
    sys.exit(main())



