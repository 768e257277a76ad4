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

    from modelmill.config.spec import NAME_PATTERN, ReadOptions, SqlSource
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
        granted = named if named.is_dir() else named.parent
        if named.exists() and not named.is_relative_to(specs) and settings.grant_root(granted):
            print(
                f"{granted}: a folder this project's specs may read from now (listed in {settings.granted_roots_file})"
            )
        if named.is_dir():
            return _init_images(args, settings, named, specs, spec_path, suite_path)
        path = locate_user_file(str(named), settings, base=specs)
        fmt = table_format(path, None)
        df = read_table(LocalFile(path.name, path, path.as_uri(), ""), fmt, read_options)
        location = os.path.relpath(path, specs.resolve())  # relative to the spec, never a machine's absolute path
        source = {"path": location, "format": fmt} | ({"read_options": {"sep": sep}} if sep else {})
        where = str(path)
    proposal = propose(args.name, df, source, target=args.target, problem=args.problem)
    _write(args.name, proposal, f"{len(df)} rows x {len(df.columns)} columns from {where}", spec_path, suite_path)
    return EXIT_OK


def _init_images(args, settings: Settings, folder: Path, specs: Path, spec_path: Path, suite_path: Path) -> int:
    """A proposal for a folder of images: their layout, classes and splits from the paths, their
    size and colour from up to :data:`INIT_SAMPLE` of them."""
    from modelmill.data.fetch import locate_user_file
    from modelmill.data.imagefiles import folder_files, read_image_folder
    from modelmill.data.schema_inference import INIT_SAMPLE, propose_images

    if args.problem not in (None, "image_classification"):
        raise SpecError(f"modelmill init: {folder} is a folder of images, not data for {args.problem}")
    root = locate_user_file(str(folder), settings, base=specs, folder=True)
    images, others = folder_files(root)
    names = [str(p.relative_to(root)) for p in images]
    step = max(1, len(images) // INIT_SAMPLE)
    picked = {names[i]: images[i] for i in range(0, len(images), step)}
    # the reader tells a non-image among the images from a README beside them
    sample = read_image_folder(picked, None, [str(p.relative_to(root)) for p in others], lenient=True)
    source = {"path": os.path.relpath(root, specs.resolve())}
    proposal = propose_images(args.name, source, names, sample)
    read = f"{len(picked)} read" if len(picked) < len(names) else "all read"
    _write(args.name, proposal, f"{len(names)} images ({read}) in {root}", spec_path, suite_path)
    return EXIT_OK


def _write(name: str, proposal, what: str, spec_path: Path, suite_path: Path) -> None:
    """Check the proposal parses as a spec of its kind, say what was inferred, write both files."""
    import yaml

    from modelmill.config.spec import PipelineSpec
    from modelmill.learn.kinds import get_kind

    spec = PipelineSpec(**proposal.spec)  # what init writes parses as a spec
    get_kind(spec.problem).check_spec(spec)
    print(f"{name}: {what}; problem {spec.problem}")
    rows = [("column", "taken as", "nulls", "why")] + [(c.name, c.role, str(c.nulls), c.why) for c in proposal.columns]
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    for r in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    for note in proposal.notes:
        print(f"  note: {note}")
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    suite_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(
        f"# Proposed by `modelmill init {name}`: check the roles and the candidates, then `modelmill check {name}`.\n"
        + yaml.safe_dump(proposal.spec, sort_keys=False, allow_unicode=True, width=100)
    )
    suite_path.write_text(json.dumps(proposal.suite, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {spec_path} and {suite_path} ({len(proposal.suite['expectations'])} expectations)")
    print(f"next: `modelmill check {name}` (the gate on this data), then `modelmill run {name}`")


def register(sub) -> None:
    i = sub.add_parser(
        "init", help="propose a spec and a suite from your own table (CSV, Parquet, xlsx or a SQL query)"
    )
    i.add_argument("name", help="the new pipeline's name")
    i.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="a CSV, Parquet or xlsx file, or a folder of images in class folders",
    )
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
        choices=(
            "tabular_classification",
            "tabular_multiclass",
            "tabular_regression",
            "text_classification",
            "recommendation",
            "forecasting",
            "image_classification",
        ),
        help="the problem kind (default: inferred from the target and the columns)",
    )
    i.add_argument("--sep", help="CSV field separator (default: a comma; '\\t' for TSV)")
    i.add_argument("--force", action="store_true", help="replace an existing spec and suite of that name")
    i.set_defaults(fn=cmd_init)
