"""``modelmill score``: the champion scores a batch file."""

from __future__ import annotations

from modelmill.cli.common import (
    EXIT_OK,
    add_threads_option,
    check_free_space,
    flow_failed,
    housekeeping,
    launch_prefect_api,
    prefect_ready,
    prepare_environment,
    set_threads,
)
from modelmill.config.settings import Settings
from modelmill.runtime.guardian import guard


def cmd_score(args, settings: Settings) -> int:
    """Score a batch file with a pipeline's champion (a Prefect flow, like a training run)."""
    from modelmill.config.spec import load_spec

    spec = load_spec(args.pipeline, settings)
    check_free_space(settings)
    prepare_environment(settings)
    guard()
    launch_prefect_api(settings)
    housekeeping(settings, [spec], prefect=True)
    set_threads(args, settings)
    from modelmill_flows.pipeline import heartbeats_where_watched
    from modelmill_flows.scoring import score_flow

    prefect_ready()
    with heartbeats_where_watched():
        state = score_flow(
            args.pipeline,
            input=args.input,
            output=args.output,
            shadow=args.shadow,
            reasons=args.reasons,
            return_state=True,
        )
    if flow_failed(state, "score"):
        return 1
    r = state.result()
    print(f"{r['pipeline']}: champion v{r['version']} scored {r['scored']} of {r['rows']} rows -> {r['output']}")
    if r["rejected"]:
        print(
            f"{r['rejected']} rows rejected by the suite's feature rules, not scored: {r['rejected_output']} (column rejected_because)"
        )
    if r.get("shadow"):
        sh = r["shadow"]
        print(
            f"shadow v{sh['version']}: agrees with the champion on {sh['agreement']:.1%} of scored rows, score correlation {sh['score_correlation']:.3f}, its score drift (PSI) {sh['score_psi']:.3f}"
        )
    if est := r.get("estimate"):
        if "reason" in est:
            print(f"no estimate of {est['metric']} before the outcomes arrive: {est['reason']}")
        elif est.get("value") is not None:
            test = f"; on its test split {est['test']:.4f}" if est.get("test") is not None else ""
            print(
                f"{est['metric']} expected on this batch once its outcomes arrive (CBPE): {est['value']:.4f} "
                f"(95 % interval {est['low']:.4f}-{est['high']:.4f}){test}"
            )
        if est.get("alert"):
            print(f"live_drop: {est['alert']}")
    drift = f"; score drift vs training (PSI) {r['score_psi']:.3f}" if r["score_psi"] == r["score_psi"] else ""
    if drift and not r["psi_meaningful"]:
        from modelmill.quality.drift import MIN_ROWS_FOR_PSI

        drift += f" (on {r['scored']} rows: below {MIN_ROWS_FOR_PSI}, chance alone gives a PSI this large; not drift)"
    print(f"input sha256 {r['input_sha256']}{drift}; MLflow run {r['run_id']}")
    return EXIT_OK


def register(sub) -> None:
    sc = sub.add_parser("score", help="score a batch file with a pipeline's champion (output: Parquet)")
    sc.add_argument("pipeline", help="pipeline name or spec file")
    sc.add_argument(
        "--input",
        help="CSV / Parquet / xlsx file, or for an image pipeline a folder of images or an npz (default: the spec's scoring.input)",
    )
    add_threads_option(sc)
    sc.add_argument("--output", help="Parquet file to write (default: the spec's scoring.output)")
    sc.add_argument(
        "--shadow",
        action="store_true",
        help="the candidate (else the challenger) scores the batch too; the output keeps the champion's predictions",
    )
    sc.add_argument(
        "--reasons", type=int, default=0, metavar="K",
        help="binary or regression tables: add each row's K reasons (the columns that pushed its score most towards the positive class, or its prediction most upwards, by SHAP value) with their values",
    )  # fmt: skip
    sc.set_defaults(fn=cmd_score)
