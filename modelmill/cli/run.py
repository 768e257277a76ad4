"""``modelmill run`` and ``modelmill backfill``: pipelines as Prefect flow runs, now or as of past dates."""

from __future__ import annotations

import sys
import time

from modelmill.cli.common import (
    add_threads_option,
    check_free_space,
    exit_code,
    housekeeping,
    launch_prefect_api,
    log,
    prefect_ready,
    prepare_environment,
    set_threads,
    warm_up,
    with_shipped,
)  # fmt: skip
from modelmill.config.settings import Settings
from modelmill.errors import ModelmillError
from modelmill.runtime.guardian import guard
from modelmill.runtime.redact import redact


def cmd_run(args, settings: Settings) -> int:
    from modelmill.config.spec import available, load_spec
    from modelmill.data.fetch import check_mirror
    from modelmill.ops.report import summary_table

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
    housekeeping(settings, with_shipped(specs, settings), prefect=True)
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
    side_by_side = args.workers > 1 or args.dask_address or args.ray_address or args.runner != "dask"
    if not (args.dask_address or args.ray_address):  # a cluster elsewhere has its own cores
        set_threads(args, settings, workers=args.workers if side_by_side else 1)
    import modelmill_flows.pipeline  # noqa: F401 - Prefect's import, while its API comes up

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
    from modelmill.registry.tracking import Tracker

    tracker = Tracker.of(settings)
    for s in summaries:
        if s.get("run_id"):
            experiment = tracker.run(s["run_id"]).info.experiment_id
            print(
                f"{s['pipeline']}: this run {s['where']}\n{'':{len(s['pipeline']) + 2}}all runs {tracker.experiment_url(experiment)}"
            )
    print(f"\nMLflow store: {redact(settings.tracking_uri)}   (open it with `modelmill ui`)")
    return exit_code(summaries)


def _run_one_after_another(names: list[str], args) -> list[dict]:
    from modelmill_flows.pipeline import heartbeats_where_watched, pipeline_flow, summary_of

    summaries = []
    for i, name in enumerate(names, 1):
        log.info("▶ [%d/%d] %s", i, len(names), name)
        t0 = time.time()
        with heartbeats_where_watched():
            state = pipeline_flow(
                name, as_of=args.as_of, promote=not args.no_promote, force=args.force, return_state=True
            )
        s = summary_of(name, state)
        summaries.append(s)
        log.info(
            "■ %s: %s in %.0fs%s", name, s["status"], time.time() - t0, f" — {s['error']}" if s.get("error") else ""
        )
    return summaries


def _longest_first(names: list[str], specs: list, settings: Settings) -> list[str]:
    """The names (with their loaded specs, in the same order), longest last run first."""
    from modelmill.ops.history import longest_first
    from modelmill.registry.tracking import Tracker

    tracker = Tracker.of(settings)
    seconds = {n: tracker.last_seconds(spec) for n, spec in zip(names, specs, strict=True)}
    ordered = longest_first(names, seconds)
    if any(s is not None for s in seconds.values()):
        log.info(
            "longest first, by each pipeline's last trained run: %s",
            ", ".join(f"{n} {seconds[n]:.0f}s" if seconds[n] is not None else n for n in ordered),
        )
    return ordered


def _run_side_by_side(names: list[str], specs: list, args, settings: Settings) -> list[dict]:
    """The pipelines as tasks of one ``modelmill-all`` flow on a Dask (or Ray) task runner."""
    from modelmill_flows.parallel import all_pipelines_flow, task_runner
    from modelmill_flows.pipeline import heartbeats_where_watched

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


def cmd_backfill(args, settings: Settings) -> int:
    from modelmill.config.spec import load_spec
    from modelmill.data.fetch import check_mirror
    from modelmill.data.ingest import date_column
    from modelmill.ops.history import backfill_dates
    from modelmill.ops.report import summary_table

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
    set_threads(args, settings)
    from modelmill_flows.pipeline import heartbeats_where_watched, pipeline_flow, summary_of

    warm_up([spec])
    prefect_ready()
    summaries = []
    for i, as_of in enumerate(dates, 1):
        log.info(
            "▶ [%d/%d] %s as of %s%s",
            i,
            len(dates),
            spec.name,
            as_of,
            "" if args.promote else " (champion alias untouched)",
        )
        with heartbeats_where_watched():
            state = pipeline_flow(
                args.pipeline,
                as_of=as_of,
                promote=args.promote,
                trigger="backfill",
                force=args.force,
                return_state=True,
            )
        s = summary_of(spec.name, state)
        s["pipeline"] = f"{spec.name}@{as_of}"
        summaries.append(s)
    print(summary_table(summaries))
    print(f"\nSee the trend with `modelmill history {spec.name}`.")
    return exit_code(summaries)


def register(sub) -> None:
    r = sub.add_parser("run", help="run pipelines now (a Prefect flow each)")
    r.add_argument("pipelines", nargs="*", help="pipeline names or spec files")
    r.add_argument("--all", action="store_true", help="every pipeline in the pipelines folder")
    r.add_argument("--as-of", help="train on data dated up to this day (YYYY-MM-DD)")
    r.add_argument("--no-promote", action="store_true", help="never move the champion alias")
    r.add_argument("--force", action="store_true", help="retrain even if data, spec, suite and code are unchanged")
    add_threads_option(r)
    r.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N pipelines side by side (a local Dask cluster of N worker processes)",
    )
    r.add_argument(
        "--runner",
        choices=("dask", "ray"),
        default="dask",
        help="the task runner for --workers: prefect-dask (default) or prefect-ray",
    )
    r.add_argument(
        "--dask-address", metavar="tcp://HOST:PORT", help="run the pipelines on an existing Dask cluster instead"
    )
    r.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="run the pipelines on an existing Ray cluster instead (implies --runner ray)",
    )
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("backfill", help="train as of past dates to build a history")
    b.add_argument("pipeline")
    b.add_argument("--start", required=True)
    b.add_argument("--end", required=True)
    b.add_argument("--every", choices=["day", "week", "month", "quarter"], default="month")
    b.add_argument("--promote", action="store_true", help="let backfill runs move the champion alias")
    b.add_argument("--force", action="store_true", help="retrain dates whose run would be unchanged")
    add_threads_option(b)
    b.set_defaults(fn=cmd_backfill)
