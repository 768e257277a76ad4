"""Ingest: fetch the source, parse it, and write an immutable content-addressed snapshot."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec, SqlSource, is_glob
from modelmill.data.catalog import get_entry
from modelmill.data.digests import sha256_file
from modelmill.data.fetch import LocalFile, fetch_catalog_file, fetch_user_file, is_url, locate_user_file
from modelmill.data.imagefiles import IMAGE_SUFFIXES, folder_files, read_image_folder, read_image_table, read_npz
from modelmill.data.objectstore import ObjectStore, snapshot_key
from modelmill.data.readers import PYARROW_CSV_OPTIONS, READERS, read_table, table_format, wisconsin_source
from modelmill.errors import CorruptSource, SourceUnavailable, SpecError
from modelmill.runtime.reconcile import temp_prefix

log = logging.getLogger("modelmill.data.ingest")


@dataclass(frozen=True)
class Snapshot:
    """One immutable Parquet snapshot of a pipeline's source data, and where it came from."""

    key: str
    path: Path
    digest: str
    rows: int
    columns: list[str]
    sources: list[dict] = field(default_factory=list)
    as_of: str | None = None
    #: (records a user's CSV holds by its lines, rows the parser read), when this ingest parsed it
    parsed: tuple[int, int] | None = field(default=None, compare=False)
    #: where the object store holds it (MODELMILL_STORE_URI), when one is set up
    store_location: str | None = field(default=None, compare=False)
    _frame: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    def load(self, categorical: Sequence[str] = ()) -> pd.DataFrame:
        """The snapshot's rows, read from its Parquet file once per object; stages share the
        frame, so treat it as read-only. ``categorical``: text columns read as pandas categoricals
        (Arrow dictionaries: a small code per row instead of a string — a 10M-row table's
        categorical features take a tenth of the memory)."""
        if self._frame is None:
            path = self.local_path()
            schema = pq.read_schema(path)
            text = [
                c
                for c in categorical
                if c in schema.names
                and (pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))
            ]
            # block by block, each Arrow column freed once converted: 2.5 GiB at the peak of a 10M-row read, not 3.1
            whole = {"split_blocks": True, "self_destruct": True}
            object.__setattr__(
                self, "_frame", pd.read_parquet(path, read_dictionary=text or None, to_pandas_kwargs=whole)
            )
            return_memory()  # the decoded Parquet pages
        return self._frame

    def release(self) -> None:
        """Drop the shared frame (the stages that need rows are done with it). For a large one,
        the reference cycles still holding its columns (GX's, after the gate) are collected now,
        so its memory goes back before training rather than whenever Python next collects."""
        large = self._frame is not None and len(self._frame) >= COLLECT_ROWS
        object.__setattr__(self, "_frame", None)
        if large:
            gc.collect()
        return_memory()

    def __getstate__(self) -> dict:
        """Another process (a distributed task runner) gets the path, not the rows."""
        return {**self.__dict__, "_frame": None}

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    @property
    def location(self) -> str:
        """What a run records: the object store's location when there is one, else the local path."""
        return self.store_location or str(self.path)

    def local_path(self) -> Path:
        """The snapshot's file on this machine: its own path, or (a worker on another machine)
        its copy from the object store, checksum verified."""
        if self.path.is_file() or not self.store_location:
            return self.path
        from modelmill.config.settings import get_settings
        from modelmill.data.objectstore import local_snapshot

        return local_snapshot(self.store_location, get_settings()) or self.path

    def lineage(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        d["path"] = str(self.path)
        return d


#: frames from this many rows up are collected at release (a collection costs ~0.15 s after the gate)
COLLECT_ROWS = 100_000


def return_memory() -> None:
    """Give the pages Arrow's allocator keeps after large frames are freed back to the system
    (mimalloc holds them otherwise: ~300 MB per million rows read, seen as resident memory)."""
    pa.default_memory_pool().release_unused()


def fetch_sources(spec: PipelineSpec, settings: Settings) -> dict[str, LocalFile]:
    src = spec.source
    base = spec.spec_path.parent if spec.spec_path else None
    if src.sql is not None:
        return {}  # rows come from a query, read in read_source
    if is_glob(src.path):
        return _glob_sources(spec, settings, base)
    images = image_source(spec)
    if images == "images":
        root = locate_user_file(src.path or "", settings, base=base, folder=True)
        images, others = folder_files(root)  # the other files too: the reader counts them
        return {
            str(p.relative_to(root)): fetch_user_file(str(p), settings, base=base, expected_sha256=None)
            for p in images + others
        }
    if images == "paths":
        return _image_path_sources(spec, settings, base)
    if src.dataset is None:
        if isinstance(src.sha256, dict):
            raise SpecError("source.sha256 of one file is a single sha256, not a mapping")
        f = fetch_user_file(src.path or src.url or "", settings, base=base, expected_sha256=src.sha256)
        return {f.name: f}
    entry = get_entry(src.dataset)
    if src.url and len(entry.files) != 1:
        raise SpecError(f"source.url can override only single-file datasets; {entry.id} has {len(entry.files)} files")
    if entry.reader == "wisconsin":
        f = wisconsin_source()
        return {f.name: f}
    return {
        f.name: fetch_catalog_file(
            entry, f, settings, url_override=src.url, expected_sha256=_spec_sha(src.sha256, entry, f.name)
        )
        for f in entry.files
    }


def image_source(spec: PipelineSpec) -> str | None:
    """How a user's source holds images: ``images`` (a folder of image files), ``npz`` (an
    archive of arrays), ``paths`` (a CSV of image paths), or None (a table)."""
    src = spec.source
    if src.dataset is not None or src.sql is not None or is_glob(src.path):
        return None
    if src.images is not None and src.images.paths_column:
        return "paths"
    location = Path(src.path or urllib.parse.urlparse(src.url or "").path).expanduser()
    if not location.is_absolute() and spec.spec_path is not None and src.path:
        location = spec.spec_path.parent / location
    fmt = table_format(location, src.format)
    return fmt if fmt in ("images", "npz") else None


def _image_path_sources(spec: PipelineSpec, settings: Settings, base: Path | None) -> dict[str, LocalFile]:
    """A CSV of image paths (first) and every image it names, each checksummed; a path is
    relative to the CSV's folder, and confined like the CSV itself."""
    src = spec.source
    table_file = fetch_user_file(
        src.path or "", settings, base=base, expected_sha256=src.sha256 if isinstance(src.sha256, str) else None
    )
    paths = _image_paths(spec, read_table(table_file, src.format, src.read_options))
    files = {table_file.name: table_file}
    for value in dict.fromkeys(paths):
        location = Path(value).expanduser()
        files[value] = fetch_user_file(
            str(location if location.is_absolute() else table_file.path.parent / location),
            settings,
            base=base,
            expected_sha256=None,
        )
    return files


def _image_paths(spec: PipelineSpec, table: pd.DataFrame) -> pd.Series:
    column = spec.source.images.paths_column
    if column not in table.columns:
        raise SpecError(
            f"pipeline {spec.name}: source.images.paths_column {column!r} is not a column of {spec.source.path} (it has {', '.join(map(str, table.columns[:10]))})"
        )
    missing = table[column].isna()
    if missing.any():
        raise CorruptSource(
            f"pipeline {spec.name}: {int(missing.sum())} rows of {spec.source.path} have no image path in column {column} (first at row {int(missing.to_numpy().argmax()) + 1})"
        )
    return table[column].astype(str)


def read_images(spec: PipelineSpec, files: dict[str, LocalFile], counts: dict | None = None) -> pd.DataFrame:
    """A user's images as rows (:mod:`modelmill.data.imagefiles`), resized to ``source.images.size``."""
    src, how = spec.source, image_source(spec)
    size = tuple(src.images.size) if src.images is not None and src.images.size else None
    if how == "images":
        images = {name: f.path for name, f in files.items() if f.path.suffix.lower() in IMAGE_SUFFIXES}
        return read_image_folder(images, size, [name for name in files if name not in images])
    if how == "npz":
        (f,) = files.values()
        return read_npz(f.path, f.name, size)
    table_file, *images = files.values()
    table = read_table(table_file, src.format, src.read_options)
    records = check_parsed_rows(spec, table_file.path, len(table))
    if counts is not None and records is not None:
        counts |= {"records": records, "rows": len(table)}
    _image_paths(spec, table)
    return read_image_table(
        table, src.images.paths_column, dict(zip(list(files)[1:], (f.path for f in images), strict=True)), size
    )


def _spec_sha(sha256: str | dict[str, str] | None, entry, name: str) -> str | None:
    """The spec's own pin of one catalog file (a user's copy of the data)."""
    names = [f.name for f in entry.files]
    if isinstance(sha256, dict):
        if unknown := sorted(set(sha256) - set(names)):
            raise SpecError(f"source.sha256 names {', '.join(unknown)}, not a file of {entry.id} ({', '.join(names)})")
        return sha256.get(name)
    if sha256 and len(names) > 1:
        raise SpecError(
            f"{entry.id} has {len(names)} files: give source.sha256 as a mapping file name -> sha256 ({', '.join(names)})"
        )
    return sha256


#: the most files one glob source may read
MAX_GLOB_FILES = 10_000


def _glob_sources(spec: PipelineSpec, settings: Settings, base: Path | None) -> dict[str, LocalFile]:
    """Every file a ``source.path`` pattern matches (``data/sales-*.csv``, ``parts/**/*.parquet``),
    in name order, each confined and checksummed like a single file."""
    pattern = Path(spec.source.path).expanduser()
    root = pattern.anchor if pattern.is_absolute() else str(base or Path.cwd())
    relative = str(pattern.relative_to(pattern.anchor)) if pattern.is_absolute() else str(pattern)
    matches = sorted(p for p in Path(root).glob(relative) if p.is_file())
    if not matches:
        raise SourceUnavailable(f"pipeline {spec.name}: source path {spec.source.path} matches no file")
    if len(matches) > MAX_GLOB_FILES:
        raise SpecError(
            f"pipeline {spec.name}: source path {spec.source.path} matches {len(matches)} files, more than {MAX_GLOB_FILES}"
        )
    files = [fetch_user_file(str(p), settings, base=base, expected_sha256=None) for p in matches]
    return {
        str(p.relative_to(root)) if p.is_relative_to(root) else str(p): f for p, f in zip(matches, files, strict=True)
    }


def _concat(spec: PipelineSpec, files: dict[str, LocalFile]) -> pd.DataFrame:
    """The files' rows one after another; they must share their columns (a file that differs is
    named). ``source.file_column`` records each row's file."""
    src, frames, columns = spec.source, [], None
    for name, f in files.items():
        part = read_table(f, src.format, src.read_options)
        if columns is None:
            columns = list(part.columns)
        elif set(part.columns) != set(columns):
            extra, missing = sorted(set(part.columns) - set(columns)), sorted(set(columns) - set(part.columns))
            raise CorruptSource(
                f"pipeline {spec.name}: {name} does not have the columns of {next(iter(files))} (extra {extra}, missing {missing})"
            )
        if src.file_column:
            part[src.file_column] = name
        frames.append(part[[*columns, *([src.file_column] if src.file_column else [])]])
    return pd.concat(frames, ignore_index=True)


def sql_location(spec: PipelineSpec) -> str:
    """The database URL without its password, and which query: for logs and lineage."""
    return query_location(spec.source.sql, f"pipeline {spec.name}")


def query_location(sql: SqlSource, who: str) -> str:
    from sqlalchemy.engine import make_url

    raw = os.environ.get(sql.url_env, "").strip()
    if not raw:
        raise SpecError(
            f"{who}: source.sql reads its database URL from {sql.url_env}, which is not set (a SQLAlchemy URL, e.g. postgresql+psycopg2://user:pw@host/db)"
        )
    try:
        url = make_url(raw).render_as_string(hide_password=True)
    except Exception as e:  # sqlalchemy raises ArgumentError for a malformed URL
        raise SpecError(f"{who}: {sql.url_env} is not a SQLAlchemy URL: {e}") from e
    return f"{url}#query-{hashlib.sha256(sql.query.encode()).hexdigest()[:12]}"


def read_sql(spec: PipelineSpec) -> pd.DataFrame:
    """The query's rows, read in a transaction that is rolled back (use a read-only account)."""
    return read_query(spec.source.sql, f"pipeline {spec.name}")


def read_query(sql: SqlSource, who: str) -> pd.DataFrame:
    import sqlalchemy

    where = query_location(sql, who)
    engine = sqlalchemy.create_engine(os.environ[sql.url_env], pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            df = pd.read_sql(sqlalchemy.text(sql.query), conn)
            conn.rollback()
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as e:  # pandas wraps the driver's error
        cause = e.__cause__ if isinstance(e, pd.errors.DatabaseError) and e.__cause__ else e
        first = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        raise SourceUnavailable(f"{who}: source.sql failed on {where.split('#')[0]}: {first}") from e
    finally:
        engine.dispose()
    log.info("%s: %d rows from %s", who.removeprefix("pipeline "), len(df), where)
    return df


CURRENCY = r"[$€£¥₹]|\b(?:USD|EUR|GBP|CHF|JPY)\b"


def coerce_numbers(s: pd.Series, thousands: str | None, decimal: str) -> pd.Series:
    """Declared numeric text as numbers: currency signs and codes, surrounding spaces and the
    thousands separator removed, the decimal mark made a point; a blank cell (spaces only) is a
    missing value, as an empty one is. Values that still are not numbers leave the column as it
    was (text), for the gate to count and reject."""
    if pd.api.types.is_numeric_dtype(s) or s.isna().all():
        return s
    text = s.astype("str").str.replace(CURRENCY, "", regex=True).str.strip()
    if thousands is not None:
        text = text.str.replace(thousands, "", regex=False)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    blank = s.notna() & (s.astype("str").str.strip() == "")
    number = pd.to_numeric(text.mask(blank), errors="coerce")
    return number.astype("float64") if (number.notna() | s.isna() | blank).all() else s  # the gate counts the rest


def parse_dates(s: pd.Series, dayfirst: bool = False, unit: str | None = None) -> pd.Series:
    """A date column as datetimes (ISO, and 05/03/2024 as month/day unless ``dayfirst``; with
    ``unit``, numbers as epoch seconds or milliseconds); unparseable values become missing,
    which a suite's not-null rule counts."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    if unit is not None:
        return pd.to_datetime(pd.to_numeric(s, errors="coerce"), unit=unit, errors="coerce")
    return pd.to_datetime(s, errors="coerce", format="mixed", dayfirst=dayfirst)


_BLANK_LINE = re.compile(rb"(?m)^\r?\n")


def count_records(path: Path, header_lines: int) -> int:
    """The records of a CSV file as its lines tell them: non-blank lines, less the header (and
    skipped) lines; read in blocks, so memory stays flat."""
    lines, tail = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            body, tail = data[:cut], data[cut:]
            lines += body.count(b"\n") - len(_BLANK_LINE.findall(body))
    lines += bool(tail.strip(b"\r"))
    return max(lines - header_lines, 0)


def quoted_records(path: Path, options, header_lines: int) -> tuple[int, int] | None:
    """The records of a CSV file as a CSV reader counts them (a line break inside a quoted field
    is part of it), and how many of those quoted line breaks follow a line that reads as a whole
    record of its own: as many separators as the header, and a last value the file's last
    column holds elsewhere (a label, a category): a stray quote that swallowed rows, not a
    message written over several lines. None when the reader cannot follow the file's options
    (a separator of more than one character, quoting off)."""
    import csv

    sep, quote = options.sep or ",", options.quotechar or '"'
    if len(sep) != 1 or options.quoting == "none":
        return None

    def rows():
        with open(path, newline="", encoding=options.encoding or "utf-8", errors="replace") as f:
            for row in csv.reader(f, delimiter=sep, quotechar=quote):
                if row and row != [""]:  # a blank line, skipped as the parser skips it
                    yield row

    records, width, suspects = 0, None, []  # suspects: the last value of each record-like inner line
    for row in rows():
        width = width or len(row)
        records += 1
        for value in row:
            if "\n" in value:
                suspects += [
                    line.rsplit(sep, 1)[1].strip()
                    for line in value.split("\n")[:-1]
                    if line.count(sep) == width - 1 and line.rsplit(sep, 1)[1].strip()
                ]
    swallowed = 0
    if suspects:  # rare: a second pass for the values the last column takes
        last = {row[-1].strip() for row in rows() if len(row) == width}
        swallowed = sum(value in last for value in suspects)
    return max(records - header_lines, 0), swallowed


def check_parsed_rows(spec: PipelineSpec, path: Path, rows: int) -> int | None:
    """Rows the parser read against the records the CSV holds: a difference (rows the parser
    dropped, a stray quote that merged lines) is a one-line warning, and an error past
    ``limits.max_lost_rows``. The records are its non-blank lines; when those differ from the
    rows read, a CSV reader's count, where no quoted line break hides a whole record (a field
    written over several lines, as exports of messages have, is no loss). Returns the records
    counted (None: options that make lines and records differ on purpose, or not a CSV)."""
    options = spec.source.read_options
    if table_format(path, spec.source.format) != "csv" or options.nrows is not None or options.comment is not None:
        return None
    header = 0 if options.header is None else options.header + 1
    records = count_records(path, header + (options.skiprows or 0))
    counted = "non-blank lines"
    if records != rows and (quoted := quoted_records(path, options, header + (options.skiprows or 0))) is not None:
        if quoted[1] == 0 and quoted[0] != records:
            log.info(
                "%s: %s holds %d records over %d lines (line breaks inside quoted fields)",
                spec.name, path.name, quoted[0], records,
            )  # fmt: skip
            records, counted = quoted[0], "a field may span lines"
    lost = records - rows
    if lost:
        hint = "quoted fields spanning lines, or an unbalanced quote: set source.read_options.quoting: none if quotes are plain text"
        message = f"pipeline {spec.name}: {path.name} holds {records} records ({counted}) but {rows} rows were read: {abs(lost)} {'lost or merged' if lost > 0 else 'more'} ({hint})"
        if lost > spec.limits.max_lost_rows:
            raise CorruptSource(f"{message}; limits.max_lost_rows is {spec.limits.max_lost_rows}")
        log.warning("%s", message)
    return records


def declared_dates(spec: PipelineSpec) -> list[str]:
    """The columns a user's table has parsed as dates: ``source.parse_dates`` and ``roles.date``."""
    return list(dict.fromkeys([*spec.source.parse_dates, *([spec.roles["date"]] if "date" in spec.roles else [])]))


def read_source(spec: PipelineSpec, files: dict[str, LocalFile], counts: dict | None = None) -> pd.DataFrame:
    """The source as one frame. ``counts``, when given, receives the records a user's CSV holds
    and the rows read from it (``check_parsed_rows``)."""
    src = spec.source
    if src.sql is not None:
        df = read_sql(spec)
    elif is_glob(src.path):
        df = _concat(spec, files)
    elif image_source(spec) is not None:
        df = read_images(spec, files, counts)
    elif src.dataset is None:
        (f,) = files.values()
        df = read_table(f, src.format, src.read_options)
        records = check_parsed_rows(spec, f.path, len(df))
        if counts is not None and records is not None:
            counts |= {"records": records, "rows": len(df)}
    else:
        df = READERS[get_entry(src.dataset).reader](files)
    if len(df.columns) == 0:
        raise CorruptSource(f"pipeline {spec.name}: the source has no columns")
    if spec.drop:
        absent = [c for c in spec.drop if c not in df.columns]
        if absent:
            raise SpecError(f"pipeline {spec.name}: drop names columns the source does not have: {', '.join(absent)}")
        df = df.drop(columns=spec.drop)
    if src.dataset is None:  # a user's own table: its declared numbers and dates, typed
        for c in (c for c in spec.features.numeric if c in df.columns):
            df[c] = coerce_numbers(df[c], src.thousands, src.decimal)
        for c in declared_dates(spec):
            if c not in df.columns:
                raise SpecError(
                    f"pipeline {spec.name}: source.parse_dates names column {c}, which the source does not have"
                )
            df[c] = parse_dates(df[c], src.dayfirst, src.date_unit)
    return df


def date_column(spec: PipelineSpec) -> str | None:
    if "date" in spec.roles:
        return spec.roles["date"]
    return get_entry(spec.source.dataset).date_column if spec.source.dataset else None


def cut_as_of(spec: PipelineSpec, df: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """Keep the rows dated on or before ``as_of`` (for backfills)."""
    col = date_column(spec)
    if col is None or col not in df.columns:
        raise SpecError(f"pipeline {spec.name} has no date column: it cannot run as of a date")
    cutoff = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    return df[pd.to_datetime(df[col], errors="coerce") < cutoff].reset_index(drop=True)


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose Parquet min/max statistics are worth writing: all but text. Nothing
    reads a snapshot by predicate, and text statistics (a min and max string per page) were 40%
    of the Parquet write of a 1M-row, 14-text-column table."""
    return [f.name for f in schema if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]


def write_snapshot(df: pd.DataFrame, key: str, settings: Settings, sources: list[dict], as_of: str | None) -> Snapshot:
    """The frame as a snapshot: converted to Arrow once (Arrow-backed columns without a copy)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    with _snapshot_file(key, settings) as (tmp, commit):
        pq.write_table(table, tmp, write_statistics=statistics_columns(table.schema))
        return commit(len(df), [str(c) for c in df.columns], sources, as_of)


@contextmanager
def _snapshot_file(key: str, settings: Settings):
    """A temporary Parquet file in the snapshot folder, and ``commit`` making it the snapshot
    ``<digest>.parquet``, where the digest is the sha256 of the written file (a reused snapshot is
    checked against its name before it is trusted). Anything left unfinished is removed."""
    folder = settings.snapshot_dir / key
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(key), suffix=".tmp")
    os.close(fd)

    def commit(rows: int, columns: list[str], sources: list[dict], as_of: str | None) -> Snapshot:
        digest = sha256_file(Path(tmp))
        path = folder / f"{digest}.parquet"
        os.replace(tmp, path)  # atomic: the same bytes, or a copy altered since is put right
        snap = Snapshot(key, path, digest, rows, columns, sources, as_of)
        meta = folder / f"{digest}.json"
        if not meta.exists():
            record = snap.lineage() | {"created": datetime.now(UTC).isoformat(timespec="seconds")}
            mfd, mtmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(digest), suffix=".json.tmp")
            with os.fdopen(mfd, "w") as out:
                json.dump(record, out, indent=2, default=str)
            os.replace(mtmp, meta)
        return snap

    try:
        yield tmp, commit
    finally:
        Path(tmp).unlink(missing_ok=True)


#: CSV bytes parsed per streamed batch (a Parquet row group each: ~75k rows of a 20-column table)
STREAM_BLOCK = 8 << 20


class _NotStreamable(Exception):
    """This file's columns are not what the first block said (a type that changes further down,
    text in a declared number): it is read whole instead."""


def _stream_reader(spec: PipelineSpec, path: Path):
    """pyarrow's streaming CSV reader set up as pandas' pyarrow engine reads the file (pandas'
    missing-value strings, empty text read as missing), or None where the options differ."""
    import pyarrow.csv as pacsv
    from pandas._libs.parsers import STR_NA_VALUES

    src = spec.source
    if table_format(path, src.format) != "csv":
        return None
    options = src.read_options.for_reader("csv")
    if not set(options) <= PYARROW_CSV_OPTIONS or options.get("header", 0) != 0 or len(options.get("sep", ",")) != 1:
        return None
    usecols = options.get("usecols")
    try:
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                block_size=STREAM_BLOCK,
                skip_rows=options.get("skiprows") or 0,
                encoding=options.get("encoding") or "utf8",
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=options.get("sep", ","), quote_char=options.get("quotechar", '"')
            ),
            convert_options=pacsv.ConvertOptions(
                null_values=sorted(STR_NA_VALUES | set(options.get("na_values") or [])),
                strings_can_be_null=True,
                include_columns=usecols,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):  # nothing to read, or not parseable: read_source names why
        return None


def _stream_schema(spec: PipelineSpec, schema: pa.Schema) -> pa.Schema:
    """The streamed snapshot's columns (all but ``drop``) and types (declared dates as
    ``read_source`` types them); raises :class:`_NotStreamable` where the first block's types are
    not final (``read_source`` would still change them)."""
    names = schema.names
    if len(set(names)) != len(names) or "" in names or any(pa.types.is_null(t) for t in schema.types):
        raise _NotStreamable("duplicate, empty or all-missing columns")  # pandas renames / retypes them
    if absent := [c for c in spec.drop if c not in names]:
        raise SpecError(f"pipeline {spec.name}: drop names columns the source does not have: {', '.join(absent)}")
    kept = [c for c in names if c not in spec.drop]
    dates = declared_dates(spec)
    if absent := [c for c in dates if c not in kept]:
        raise _NotStreamable(f"no date column {absent[0]}")  # read_source names the spec's error
    typed = schema.field  # declared numbers already numbers, declared dates already dates: as read_source leaves them
    if any(
        c in names and not (pa.types.is_integer(typed(c).type) or pa.types.is_floating(typed(c).type))
        for c in spec.features.numeric
    ):
        raise _NotStreamable("a declared number is read as text")
    if any(not (pa.types.is_timestamp(typed(c).type) or pa.types.is_date32(typed(c).type)) for c in dates):
        raise _NotStreamable("a declared date is not ISO")
    return pa.schema(
        [
            typed(c).with_type(pa.timestamp("s")) if c in dates and pa.types.is_date32(typed(c).type) else typed(c)
            for c in kept
        ]
    )


def stream_csv(spec: PipelineSpec, path: Path, tmp: str, stop: Callable[[], bool]) -> tuple[int, list[str]] | None:
    """A user's CSV straight into a Parquet file, a block at a time: pyarrow parses the next block
    while the last one is written (both outside the GIL), so memory stays at a few blocks whatever
    the file's size and no pandas frame is built. The file loads as the same frame as
    ``read_source``'s (a test checks it). Returns its rows and columns; None where this file
    needs ``read_source`` (other reader options, or types the first block does not settle), or
    when ``stop()`` says, between blocks, that the work is not needed."""
    from concurrent.futures import ThreadPoolExecutor

    reader = _stream_reader(spec, path)
    if reader is None:
        return None
    rows, done = 0, None
    try:
        schema = _stream_schema(spec, reader.schema)
        columns, retyped = schema.names, schema != reader.schema
        # left in reverse order: the pool waits for a write in flight before the writer closes
        with (
            pq.ParquetWriter(tmp, schema, write_statistics=statistics_columns(schema)) as writer,
            ThreadPoolExecutor(1) as pool,
        ):
            for batch in reader:
                if done is not None:
                    done.result()
                if stop():
                    return None
                batch = batch.select(columns).cast(schema) if retyped else batch.select(columns)
                rows += batch.num_rows
                done = pool.submit(writer.write_batch, batch)
            if done is not None:
                done.result()
        if rows == 0:
            raise _NotStreamable("no rows")
        return rows, list(columns)
    except (_NotStreamable, pa.ArrowInvalid, UnicodeDecodeError) as e:
        log.info("%s: %s cannot be streamed (%s): reading it whole", spec.name, path.name, str(e).splitlines()[0])
        return None
    finally:
        reader.close()


def _ingest_streamed(spec: PipelineSpec, settings: Settings, key: str) -> tuple[Snapshot | None, dict[str, LocalFile]]:
    """A single user CSV: its sha256 is computed while the file is parsed (a thread each; the
    checksum of a 10M-row file is 15% of its ingest). The parse stops as soon as the checksum
    shows these bytes were parsed before, or that they fail the spec's pin, and nothing is kept
    before the checksum is in. Returns the snapshot (None: read the files whole) and the files."""
    from concurrent.futures import ThreadPoolExecutor

    location = spec.source.path or spec.source.url or ""
    folder = settings.snapshot_dir / key
    with ThreadPoolExecutor(1) as pool:
        checked = pool.submit(fetch_sources, spec, settings)
        if is_url(location):  # downloaded (and checked) first
            path = next(iter(checked.result().values())).path
        else:  # confined to the allowed folders before a byte is read, checksummed beside the parse
            path = locate_user_file(location, settings, base=spec.spec_path.parent if spec.spec_path else None)

        @cache
        def known() -> tuple[dict[str, LocalFile], str, Snapshot | None]:
            """Once the checksum is in: the files, their parse key, the snapshot they were parsed into before."""
            files = checked.result()
            pkey = parse_key(spec, files, None)
            before = _parsed_before(folder, key, pkey, lineage(files), None)
            if before is None and (store := ObjectStore.of(settings)) is not None:
                before = _parsed_in_store(
                    store, folder, key, pkey, lineage(files), None
                )  # parsed by a worker elsewhere
            return files, pkey, before

        with _snapshot_file(key, settings) as (tmp, commit):
            streamed = stream_csv(spec, path, tmp, stop=lambda: checked.done() and known()[2] is not None)
            files, pkey, snap = known()
            if snap is not None or streamed is None:
                return snap, files
            records = check_parsed_rows(spec, path, streamed[0])
            snap = replace(
                commit(*streamed, lineage(files), None), parsed=None if records is None else (records, streamed[0])
            )
    _remember(folder, pkey, snap.digest)
    return snap, files


PARSED_INDEX = "parsed.json"


@cache
def _reading_code_digest() -> str:
    import modelmill.data.readers

    return hashlib.sha256(Path(modelmill.data.readers.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()


def parse_key(spec: PipelineSpec, files: dict[str, LocalFile], as_of: str | None) -> str:
    """What a snapshot's content follows from: the source files' sha256, how they are read (the
    source section, ``drop``, the as-of date) and the reading code itself."""
    code = _reading_code_digest()
    typed = {"numeric": spec.features.numeric, "date": spec.roles.get("date")}  # coerced / parsed at read
    parts = {
        "files": sorted((f.name, f.sha256) for f in files.values()),
        "source": spec.source.model_dump(mode="json"),
        "typed": typed,
        "drop": spec.drop,
        "as_of": as_of,
        "code": code,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _parsed_before(folder: Path, key: str, pkey: str, sources: list[dict], as_of: str | None) -> Snapshot | None:
    """The snapshot these very files were parsed into before, if it is still there."""
    try:
        digest = json.loads((folder / PARSED_INDEX).read_text())[pkey]
        meta = json.loads((folder / f"{digest}.json").read_text())
    except (OSError, KeyError, json.JSONDecodeError):
        return None
    path = folder / f"{digest}.parquet"
    if not path.is_file():
        return None
    if sha256_file(path) != digest:
        log.warning("snapshot %s was altered since it was written: parsing the source again", path)
        return None
    log.info(
        "%s: source files unchanged: snapshot %s (%d rows) reused without parsing", key, digest[:12], int(meta["rows"])
    )
    return Snapshot(key, path, digest, int(meta["rows"]), list(meta["columns"]), sources, as_of)


def publish_snapshot(store: ObjectStore, key: str, snap: Snapshot, pkey: str | None) -> Snapshot:
    """The snapshot, its lineage record and its parse-map entry on the object store (each object
    only once: they are content-addressed); the parse-map entry last, so that it never names a
    snapshot that is not there."""
    name = snapshot_key(key, f"{snap.digest}.parquet")
    if not store.has(name):
        store.publish(snap.path, name)
    meta = snap.path.with_suffix(".json")
    if meta.is_file() and not store.has(snapshot_key(key, meta.name)):  # its manifest, signed
        store.publish_entry(json.loads(meta.read_text()), snapshot_key(key, meta.name))
    if pkey is not None and not store.has(entry := snapshot_key(key, f"parsed/{pkey}.json")):
        store.publish_entry({"digest": snap.digest}, entry)  # signed: it names the snapshot these files became
    return replace(snap, store_location=store.location(name))


def _parsed_in_store(
    store: ObjectStore, folder: Path, key: str, pkey: str, sources: list[dict], as_of: str | None
) -> Snapshot | None:
    """The snapshot these files were parsed into on another machine, from the object store
    (checksum verified), copied into the local snapshot folder."""
    entry = snapshot_key(key, f"parsed/{pkey}.json")
    if not store.has(entry):
        return None
    digest = store.read_entry(entry)["digest"]  # refused unless signed with the project's key
    meta = store.read_entry(snapshot_key(key, f"{digest}.json"))
    cached = store.fetch(store.location(snapshot_key(key, f"{digest}.parquet")), digest)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(digest), suffix=".tmp")
    os.close(fd)
    shutil.copyfile(cached, tmp)
    os.replace(tmp, folder / f"{digest}.parquet")
    (folder / f"{digest}.json").write_text(json.dumps(meta, indent=2))
    _remember(folder, pkey, digest)
    log.info(
        "%s: these source files were parsed on another worker: snapshot %s (%d rows) from the object store",
        key,
        digest[:12],
        int(meta["rows"]),
    )
    return Snapshot(key, folder / f"{digest}.parquet", digest, int(meta["rows"]), list(meta["columns"]), sources, as_of)


def _remember(folder: Path, pkey: str, digest: str) -> None:
    index = folder / PARSED_INDEX
    try:
        known = json.loads(index.read_text()) if index.is_file() else {}
    except json.JSONDecodeError:
        known = {}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(PARSED_INDEX), suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(known | {pkey: digest}, out, indent=1)
    os.replace(tmp, index)


def lineage(files: dict[str, LocalFile]) -> list[dict]:
    """Where a snapshot's rows came from, as its run records it."""
    return [
        {"file": f.name, "uri": f.uri, "sha256": f.sha256, "verified": f.verified, "pin_key": f.pin_key}
        for f in files.values()
    ]


def ingest(spec: PipelineSpec, settings: Settings, as_of: str | None = None) -> Snapshot:
    """Fetch, parse and snapshot the spec's source. The returned snapshot is never modified.

    Files whose sha256 (and reading) are those of an earlier run are not parsed again: that run's
    snapshot is reused (an unchanged day costs a checksum, not a parse of a 25 MB workbook)."""
    key = spec.source.dataset or spec.name
    src, snap, files = spec.source, None, None
    if src.sql is None and src.dataset is None and not is_glob(src.path) and image_source(spec) is None and not as_of:
        snap, files = _ingest_streamed(spec, settings, key)
    if snap is None:
        files = files or fetch_sources(spec, settings)
        snap = _ingest_whole(spec, settings, key, files, as_of)
    store = ObjectStore.of(settings)
    if store is not None:
        snap = publish_snapshot(
            store, key, snap, None if spec.source.sql is not None else parse_key(spec, files, as_of)
        )
    log.info("%s: snapshot %s (%d rows) from %s", spec.name, snap.digest[:12], snap.rows, sources_line(snap.sources))
    return snap


def sources_line(sources: list[dict], shown: int = 3) -> str:
    """A snapshot's sources for a log line: a few URIs, then how many more (an image folder has
    one source per file, whose full list is the run's lineage artifact, not a console line)."""
    uris = [s["uri"] for s in sources]
    more = f" and {len(uris) - shown} more files (listed in the run's data/lineage.json)" if len(uris) > shown else ""
    return ", ".join(uris[:shown]) + more


def _ingest_whole(
    spec: PipelineSpec, settings: Settings, key: str, files: dict[str, LocalFile], as_of: str | None
) -> Snapshot:
    sources = lineage(files)
    if spec.source.sql is not None:  # a database changes without a file to checksum: always queried
        sources = [
            {
                "file": "sql",
                "uri": sql_location(spec),
                "sha256": hashlib.sha256(spec.source.sql.query.encode()).hexdigest(),
                "verified": "live",
                "pin_key": None,
            }
        ]
    folder, pkey = settings.snapshot_dir / key, parse_key(spec, files, as_of)
    snap = None if spec.source.sql is not None else _parsed_before(folder, key, pkey, sources, as_of)
    if snap is None and spec.source.sql is None and (store := ObjectStore.of(settings)) is not None:
        snap = _parsed_in_store(store, folder, key, pkey, sources, as_of)  # parsed by a worker elsewhere
    if snap is not None:
        return snap
    counts: dict = {}
    df = read_source(spec, files, counts)
    if as_of:
        df = cut_as_of(spec, df, as_of)
    snap = replace(
        write_snapshot(df, key, settings, sources, as_of),
        parsed=(counts["records"], counts["rows"]) if counts else None,
    )
    del df
    return_memory()
    _remember(folder, pkey, snap.digest)
    return snap
