"""``modelmill datasets``: the dataset catalog, and downloads ahead of time."""

from __future__ import annotations

from modelmill.cli.common import EXIT_OK, log
from modelmill.config.settings import Settings


def cmd_datasets(args, settings: Settings) -> int:
    from modelmill.data.catalog import CATALOG, get_entry
    from modelmill.data.fetch import check_mirror, fetch_catalog_file

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


def register(sub) -> None:
    d = sub.add_parser("datasets", help="the dataset catalog")
    d.add_argument("action", choices=["pull", "list"])
    d.add_argument("ids", nargs="*")
    d.add_argument("--refresh", action="store_true", help="download again even if cached")
    d.set_defaults(fn=cmd_datasets)
