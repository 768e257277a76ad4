"""``modelmill init``: a first spec and suite from a user's own table, with what was inferred."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from modelmill.cli.common import EXIT_OK
from modelmill.config.settings import Settings
from modelmill.errors import SpecError


def cmd_init(args, settings: Settings) -> int:
    import yaml

    from modelmill.config.spec import NAME_PATTERN, PipelineSpec, ReadOptions, SqlSource
    from modelmill.data.fetch import LocalFile, locate_user_file
    from modelmill.data.ingest import read_query
    from modelmill.data.readers import read_table, table_format
    from modelmill.data.schema_inference import propose

    if (args.source is None) == (args.sql is None):
        raise SpecError("modelmill init: give the data with --from FILE or --sql QUERY (one of them)")
    if not re.fullmatch(NAME_PATTERN, args.name):
        raise SpecError(
            f"modelmill init: {args.name!r} is not a pipeline name (lower case letters, digits and _, starting with a letter)"
        )
    specs = settings.project_specs_dir
    suites = settings.suites_dir if settings.expectations_dir is not None else specs.parent / "expectations"
    spec_path, suite_path = specs / f"{args.name}.yaml", suites / f"{args.name}.json"
    existing = [str(p) for p in (spec_path, suite_path) if p.exists()]
    if existing and not args.force:
        raise SpecError(f"modelmill init: {' and '.join(existing)} already exist: give --force to replace them")
    sep = args.sep.replace("\\t", "\t") if args.sep else None
    read_options = ReadOptions(**({"sep": sep} if sep else {}))
    if args.sql is not None:
        sql = SqlSource(query=args.sql, url_env=args.url_env)
        df = read_query(sql, f"modelmill init {args.name}")
        source = {"sql": sql.model_dump(exclude_defaults=True) | {"query": sql.query}}
        where = "the SQL query"
    else:
        # relative to the working directory. A spec reads only from its own folder, MODELMILL_HOME,
        # MODELMILL_DATA_ROOTS and the folders granted here: the file the operator names on the
        # command line is theirs to read, so its folder is granted (in MODELMILL_HOME, which no
        # spec can write). The spec names it relative to its own folder.
        named = Path(args.source).expanduser().resolve()
        if named.is_file() and not named.is_relative_to(specs) and settings.grant_root(named.parent):
            print(
                f"{named.parent}: a folder this project's specs may read from now (listed in {settings.granted_roots_file})"
            )
        path = locate_user_file(str(named), settings, base=specs)
        fmt = table_format(path, None)
        df = read_table(LocalFile(path.name, path, path.as_uri(), ""), fmt, read_options)
        location = os.path.relpath(path, specs.resolve())  # relative to the spec, never a machine's absolute path
        source = {"path": location, "format": fmt} | ({"read_options": {"sep": sep}} if sep else {})
        where = str(path)
    proposal = propose(args.name, df, source, target=args.target, problem=args.problem)
    spec = PipelineSpec(**proposal.spec)  # what init writes parses as a spec
    from modelmill.learn.kinds import get_kind

    get_kind(spec.problem).check_spec(spec)
    print(f"{args.name}: {len(df)} rows x {len(df.columns)} columns from {where}; problem {spec.problem}")
    rows = [("column", "taken as", "nulls", "why")] + [(c.name, c.role, str(c.nulls), c.why) for c in proposal.columns]
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    for r in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    for note in proposal.notes:
        print(f"  note: {note}")
    specs.mkdir(parents=True, exist_ok=True)
    suites.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(
        f"# Proposed by `modelmill init {args.name}`: check the roles and the candidates, then `modelmill check {args.name}`.\n"
        + yaml.safe_dump(proposal.spec, sort_keys=False, allow_unicode=True, width=100)
    )
    suite_path.write_text(json.dumps(proposal.suite, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {spec_path} and {suite_path} ({len(proposal.suite['expectations'])} expectations)")
    print(f"next: `modelmill check {args.name}` (the gate on this data), then `modelmill run {args.name}`")
    return EXIT_OK


def register(sub) -> None:
    i = sub.add_parser(
        "init", help="propose a spec and a suite from your own table (CSV, Parquet, xlsx or a SQL query)"
    )
    i.add_argument("name", help="the new pipeline's name")
    i.add_argument("--from", dest="source", metavar="FILE", help="a CSV, Parquet or xlsx file")
    i.add_argument("--sql", metavar="QUERY", help="a SELECT instead of a file (its database URL in --url-env)")
    i.add_argument(
        "--url-env",
        default="MODELMILL_SQL_URL",
        metavar="VAR",
        help="environment variable holding the SQLAlchemy URL (default MODELMILL_SQL_URL)",
    )
    i.add_argument("--target", metavar="COL", help="the column to predict")
    i.add_argument(
        "--problem",
        choices=("tabular_classification", "text_classification", "recommendation"),
        help="the problem kind (default: inferred from the target and the columns)",
    )
    i.add_argument("--sep", help="CSV field separator (default: a comma; '\\t' for TSV)")
    i.add_argument("--force", action="store_true", help="replace an existing spec and suite of that name")
    i.set_defaults(fn=cmd_init)
