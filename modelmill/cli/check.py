"""``modelmill check``: a dry run of a pipeline's ingest and gate."""

from __future__ import annotations

from modelmill.cli.common import EXIT_OK
from modelmill.config.settings import Settings


def cmd_check(args, settings: Settings) -> int:
    """Dry run: parse the spec, read the data, run the gate, split the rows as ``run`` would and
    say what would be trained. Nothing is trained, no snapshot is written and nothing reaches
    MLflow: whatever ``run`` would refuse before training, this refuses too."""
    from modelmill.config.spec import load_spec
    from modelmill.data.fetch import check_mirror
    from modelmill.data.ingest import fetch_sources, read_source
    from modelmill.learn.kinds import get_kind
    from modelmill.quality import rules
    from modelmill.quality.validate import gate, validate_frame

    spec = load_spec(args.pipeline, settings)
    kind = get_kind(spec.problem)
    kind.check_spec(spec)
    check_mirror(settings)
    df = read_source(spec, fetch_sources(spec, settings))
    report = validate_frame(df, spec.suite_path(settings), detail=True)  # every check's bad-row count
    report.add(rules.findings(spec, df, classification=kind.EXAMPLE_ROWS and kind.TARGET_CLASSES))
    print(
        f"{spec.name}: {len(df)} rows x {len(df.columns)} columns from {spec.source.path or spec.source.url or spec.source.dataset or 'a SQL query'}"
    )
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
        repeated = int(rules.duplicated(spec, df).sum())
        print(
            f"\nrepeated rows: {repeated} (duplicates: {spec.duplicates}{' - dropped before the split' if repeated and spec.duplicates == 'drop' else ''})"
        )
    print(
        f"\nwould train ({spec.problem}, split {spec.split.method}, metric {spec.metric.name} to {spec.metric.direction}):"
    )
    for c in [spec.baseline, *spec.candidates]:
        role = "baseline " if c is spec.baseline else "candidate"
        print(
            f"  {role} {c.name}: {c.estimator}{f' params {c.params}' if c.params else ''}{f' grid {c.grid}' if c.grid else ''}"
        )
    gate(report, spec.name)
    # what run does next, short of fitting: the split, the model's input, the series' backtest
    frame = rules.deduplicate(spec, df)[0] if kind.EXAMPLE_ROWS else df
    info = kind.prepare(spec, frame).info
    shown = {k: v for k, v in info.items() if isinstance(v, int | str) and not isinstance(v, bool)}
    print(f"\nsplit: {', '.join(f'{k} {v}' for k, v in shown.items())}")
    print(f"\nthe gate passes: `modelmill run {args.pipeline}` would train these")
    return EXIT_OK


def register(sub) -> None:
    ck = sub.add_parser(
        "check", help="dry run: read the data, run the gate, show what would be trained (no training, no MLflow)"
    )
    ck.add_argument("pipeline", help="pipeline name or spec file")
    ck.set_defaults(fn=cmd_check)
