"""The validation gate: a Great Expectations 1.x suite (JSON in ``expectations/``) run on a snapshot.

GX is imported lazily (it costs seconds) and only here. The gate returns a report that lists each
expectation with its outcome and unexpected counts; :func:`gate` raises :class:`DataRejected`
when the suite fails, so training never starts on rejected data.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.config.bounded import load_json
from modelmill.errors import DataRejected, SpecError

log = logging.getLogger("modelmill.quality.validate")


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    kwargs: dict
    success: bool
    raised: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: object
    message: str | None
    examples: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass
class ValidationReport:
    suite: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    def add(self, outcomes: list[ExpectationOutcome]) -> None:
        """Checks run outside GX (see :mod:`modelmill.quality.rules`), reported like expectations."""
        self.outcomes.extend(outcomes)
        self.success = self.success and all(o.success for o in outcomes)

    @property
    def failed(self) -> list[str]:
        return [o.label for o in self.outcomes if not o.success]

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)

    def to_dict(self) -> dict:
        return {
            "suite": self.suite,
            "success": self.success,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "results": [o.__dict__ for o in self.outcomes],
        }

    def to_html(self) -> str:
        head = "<tr><th>expectation</th><th>column</th><th>result</th><th>unexpected</th><th>examples</th><th>observed / error</th></tr>"
        rows = []
        for o in self.outcomes:
            status = "raised" if o.raised else ("pass" if o.success else "FAIL")
            colour = "#e6f4ea" if o.success else "#fce8e6"
            unexpected = (
                "" if o.unexpected_count is None else f"{o.unexpected_count} ({(o.unexpected_percent or 0):.2f}%)"
            )
            detail = (
                o.message
                if (o.raised or o.message)
                else ("" if o.observed is None else json.dumps(o.observed, default=str)[:200])
            )
            rows.append(
                f'<tr style="background:{colour}"><td>{html.escape(o.expectation)}</td><td>{html.escape(o.column or "")}</td>'
                f"<td>{status}</td><td>{unexpected}</td><td>{html.escape(', '.join(map(str, o.examples)))}</td>"
                f"<td>{html.escape(str(detail or ''))}</td></tr>"
            )
        verdict = "PASSED" if self.success else f"FAILED ({len(self.failed)} of {self.evaluated})"
        return (
            f"<html><head><meta charset='utf-8'><title>{html.escape(self.suite)}</title></head><body>"
            f"<h1>Validation: {html.escape(self.suite)} — {verdict}</h1><p>{self.rows} rows checked.</p>"
            f"<table border='1' cellpadding='4' style='border-collapse:collapse'>{head}{''.join(rows)}</table></body></html>"
        )


def load_suite_dict(path: Path) -> dict:
    data = load_json(path, "expectation suite")
    if not isinstance(data, dict) or not data.get("expectations"):
        raise SpecError(f"expectation suite {path} has no expectations")
    return data


def _outcome(r) -> ExpectationOutcome:
    cfg = r.expectation_config
    info = r.exception_info or {}
    # One flat dict when nothing raised, or a dict of such dicts keyed by metric when one did.
    infos = [info] if "raised_exception" in info else list(info.values())
    raised = [i for i in infos if isinstance(i, dict) and i.get("raised_exception")]
    res = r.result or {}
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    return ExpectationOutcome(
        expectation=cfg.type,
        column=kwargs.get("column"),
        kwargs=kwargs,
        success=bool(r.success),
        raised=bool(raised),
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=res.get("unexpected_percent"),
        observed=res.get("observed_value"),
        message=(raised[0].get("exception_message") if raised else None),
        examples=[v for v in (res.get("partial_unexpected_list") or [])[:5]],
    )


#: Data Docs assets that are not worth logging with every run (animated help GIFs, web fonts).
_DOCS_SKIPPED = ("static/fonts", ".gif")


#: GX result formats: the first pass only asks pass/fail (GX then skips collecting unexpected
#: values, indices and examples: 7x faster at 5M rows); a suite with failures is run again in full
FAST, FULL = "BOOLEAN_ONLY", "SUMMARY"


def validate_frame(
    df: pd.DataFrame, suite_path: Path, docs_dir: Path | None = None, *, detail: bool = False
) -> ValidationReport:
    """Run the suite on ``df`` with an ephemeral GX context; never raises on failed expectations.

    The suite runs first with GX's ``BOOLEAN_ONLY`` result format; only when an expectation fails
    or errors is it run again with ``SUMMARY`` (unexpected counts, examples, observed values), so
    a clean day pays for pass/fail only and a rejected one gets the full record. ``detail``: the
    full record in any case (``modelmill check``).

    With ``docs_dir``, GX also builds its Data Docs site there (the suite and this validation
    result, in the format GX users know), through a checkpoint with an ``UpdateDataDocsAction``.
    """
    suite_dict = _date_bounds(load_suite_dict(suite_path), df)
    typed, bad = per_cell_numbers(df, suite_dict["expectations"])
    try:
        report = _run_suite(suite_dict, suite_path, typed, docs_dir, detail)
    finally:
        _let_go_of_gx()
    report.add(type_outcomes(df, bad))
    return report


def _run_suite(
    suite_dict: dict, suite_path: Path, df: pd.DataFrame, docs_dir: Path | None, detail: bool
) -> ValidationReport:
    import great_expectations as gx

    context = _gx_context()
    try:
        suite = gx.ExpectationSuite(**suite_dict)
    except Exception as e:  # GX raises several types for an invalid suite definition
        raise SpecError(f"expectation suite {suite_path.name} is invalid: {str(e).splitlines()[0]}") from e
    # GX logs and *drops* an expectation it cannot build (a typo in its type or kwargs): a gate
    # that silently lost a check is worse than no gate.
    if len(suite.expectations) != len(suite_dict["expectations"]):
        kept = {e.expectation_type for e in suite.expectations}
        lost = [e.get("type") for e in suite_dict["expectations"] if e.get("type") not in kept] or [
            "(invalid arguments)"
        ]
        raise SpecError(
            f"expectation suite {suite_path.name} has expectations GX cannot build: {', '.join(map(str, lost))}"
        )
    definition = (
        context.data_sources.add_pandas("modelmill")
        .add_dataframe_asset("snapshot")
        .add_batch_definition_whole_dataframe("whole")
    )
    frame = _gx_frame(df)
    if docs_dir is not None:
        suite = context.suites.add(suite)
    for result_format in (FULL,) if detail else (FAST, FULL):
        if docs_dir is None:
            result = definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                suite, result_format=result_format
            )
        else:
            result = _validate_with_docs(context, definition, suite, frame, docs_dir, result_format)
        if result.success:
            break
    outcomes = [_outcome(r) for r in result.results]
    return ValidationReport(suite=suite.name, success=bool(result.success), rows=len(df), outcomes=outcomes)


def _gx_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _numeric_arrays_hold_no_decimals()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _let_go_of_gx() -> None:
    """GX keeps the last context it made process-wide (its "project"), and through its data
    sources the frame last validated: the snapshot's rows stayed alive through training after the
    gate (with 0.24 GiB of GX's own at 2M rows). modelmill keeps no GX project between
    validations; what is left are reference cycles, which ``Snapshot.release`` collects."""
    from great_expectations.data_context import set_context

    set_context(None)


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _numeric_arrays_hold_no_decimals() -> None:
    """GX's pandas mean, sum and standard-deviation metrics first look for ``decimal.Decimal``
    objects in the column, one Python value at a time (``great_expectations.util.
    does_ndarray_contain_decimal_dtype``): 0.2 s per such rule at 5M rows, 13% of the credit
    suite's gate. An array of a numeric dtype cannot hold one, so for those the answer (False) is
    given without the scan; object arrays are still scanned by GX's own function."""
    import great_expectations.util as gx_util

    scan = gx_util.does_ndarray_contain_decimal_dtype
    if getattr(scan, "numeric_shortcut", False):
        return

    def contains_decimal(data) -> bool:
        if isinstance(data, np.ndarray) and data.dtype.kind in "biufcmM":
            return False
        return scan(data)

    contains_decimal.numeric_shortcut = True
    gx_util.does_ndarray_contain_decimal_dtype = contains_decimal


def _date_bounds(suite: dict, df: pd.DataFrame) -> dict:
    """A day bound ("2024-01-01") on a datetime column, as the midnight GX can compare with it
    (GX reads a bare day as a ``date``, which pandas refuses to compare with its timestamps)."""
    dated = {c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])}
    out = []
    for e in suite["expectations"]:
        kw = e.get("kwargs", {})
        if kw.get("column") in dated:
            kw = {
                k: (f"{v}T00:00:00" if k in ("min_value", "max_value") and isinstance(v, str) and _DAY.match(v) else v)
                for k, v in kw.items()
            }
            e = {**e, "kwargs": kw}
        out.append(e)
    return {**suite, "expectations": out}


def _run_rows(df: pd.DataFrame, expectations: list[dict]):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name="rows", expectations=expectations)
    definition = (
        _gx_context()
        .data_sources.add_pandas("modelmill")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole")
    )
    return definition.get_batch(batch_parameters={"dataframe": df}).validate(
        suite, result_format={"result_format": "COMPLETE"}
    )


def rows_failing(df: pd.DataFrame, expectations: list[dict]) -> list[tuple[str, list]]:
    """Each row-level expectation (GX JSON form) with the index labels of the rows it refuses,
    e.g. ``("expect_column_values_to_be_between(age)", [3, 17])``."""
    if not expectations or df.empty:
        return []
    df, bad = per_cell_numbers(df, expectations)
    out = [(f"{col} is a number", list(mask[mask].index)) for col, mask in bad.items()]
    try:
        result = _run_rows(df, expectations)
    finally:
        _let_go_of_gx()
    for r in result.results:
        o = _outcome(r)
        if o.raised:
            raise SpecError(f"suite rule {o.label} errored on the input: {o.message}")
        out.append((o.label, list((r.result or {}).get("unexpected_index_list") or [])))
    return out


def _validate_with_docs(context, definition, suite, frame: pd.DataFrame, docs_dir: Path, result_format: str):
    """One checkpoint run whose result GX renders into the Data Docs site (the second, full run
    of a failing suite replaces the first one's pages)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    docs_dir.mkdir(parents=True)
    site = {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    if "modelmill" not in (context.variables.data_docs_sites or {}):
        context.add_data_docs_site(site_name="modelmill", site_config=site)
    name = f"{suite.name}-{result_format.lower()}"
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=definition, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="data-docs", site_names=["modelmill"])],
            result_format=result_format,
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    for path in list(docs_dir.rglob("*")):
        if path.is_file() and any(s in path.as_posix() for s in _DOCS_SKIPPED):
            path.unlink()
    offline_data_docs(docs_dir)
    return next(iter(run.run_results.values()))


#: the Data Docs pages' CDN assets and the local copy each is read from (``datadocs_assets/``)
_DOCS_ASSETS = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
}  # fmt: skip
#: a tag of a page that loads anything from another host
_REMOTE_TAG = re.compile(
    r"""<script[^>]*\ssrc="(https?://[^"]+)"[^>]*>\s*</script>|<link[^>]*\shref="(https?://[^"]+)"[^>]*/?>"""
)

#: GX's logo, which the pages load from GX's web host (``static/images/`` holds a copy)
_REMOTE_LOGO = re.compile(r'src="https://great-expectations-web-assets[^"]*/logo-long\.png[^"]*"')
#: a background image of the pages' styles on another host (the dark theme's logo)
_REMOTE_CSS_IMAGE = re.compile(r"url\('https?://[^']+'\)")


def offline_data_docs(docs_dir: Path) -> None:
    """Point the Data Docs pages at local copies of their styles and scripts (copied under
    ``static/vendor/``), and drop every other tag that would load from another host: the pages
    read the same offline and make no request anywhere."""
    from importlib.resources import files

    vendor = docs_dir / "static" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    assets = files("modelmill.quality") / "datadocs_assets"
    for name in set(_DOCS_ASSETS.values()):
        (vendor / name).write_bytes((assets / name).read_bytes())
    for page in docs_dir.rglob("*.html"):
        static = Path(os.path.relpath(docs_dir / "static", page.parent)).as_posix()
        local = f"{static}/vendor"

        def swap(m: re.Match, local: str = local) -> str:
            url = m.group(1) or m.group(2)
            name = _DOCS_ASSETS.get(url)
            return (
                ""
                if name is None
                else m.group(0).replace(url, f"{local}/{name}").replace(' crossorigin="anonymous"', "")
            )

        text = _REMOTE_TAG.sub(swap, page.read_text(encoding="utf-8"))
        text = _REMOTE_LOGO.sub(f'src="{static}/images/logo-long.png"', text)  # GX's own copy, beside the pages
        page.write_text(_REMOTE_CSS_IMAGE.sub("none", text), encoding="utf-8")


#: rules whose arguments say which type a column's values are
_TYPED_RULES = {
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_mean_to_be_between",
}


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def numeric_columns(expectations: list[dict]) -> set[str]:
    """Columns the suite judges as numbers: a value set of numbers, or numeric bounds."""
    out = set()
    for e in expectations:
        kw = e.get("kwargs", {})
        if e.get("type") not in _TYPED_RULES or "column" not in kw:
            continue
        values = [*kw.get("value_set", []), *(kw[k] for k in ("min_value", "max_value") if kw.get(k) is not None)]
        if values and all(_is_number(v) for v in values):
            out.add(kw["column"])
    return out


def per_cell_numbers(df: pd.DataFrame, expectations: list[dict]) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Columns the suite judges as numbers but that were read as text (a few stray strings
    among numbers turn a whole column into text), typed cell by cell: the numbers stay numbers,
    each cell that is not one is missing for the suite's rules and counted apart. Returns the
    typed frame and, per such column, the mask of its cells that are not numbers."""
    bad: dict[str, pd.Series] = {}
    out = df
    for col in sorted(numeric_columns(expectations)):
        if col not in df.columns:
            continue
        s = df[col]
        if (
            pd.api.types.is_numeric_dtype(s)
            or pd.api.types.is_bool_dtype(s)
            or pd.api.types.is_datetime64_any_dtype(s)
            or is_array_column(s)
        ):
            continue
        number = pd.to_numeric(s.astype("str").str.strip().where(s.notna()), errors="coerce")
        mask = number.isna() & s.notna()
        if out is df:
            out = df.copy(deep=False)
        out[col] = number
        if mask.any():
            bad[col] = mask
    return out, bad


def type_outcomes(df: pd.DataFrame, bad: dict[str, pd.Series]) -> list[ExpectationOutcome]:
    """One failed check per column of :func:`per_cell_numbers` with cells that are not numbers:
    their count (not the column's rows) and a few of them."""
    out = []
    for col, mask in bad.items():
        n, values = int(mask.sum()), df.loc[mask, col]
        examples = [v.item() if isinstance(v, np.generic) else v for v in values.unique()[:5]]
        out.append(ExpectationOutcome(
            expectation="modelmill_cell_type", column=col, kwargs={}, success=False, raised=False, unexpected_count=n,
            unexpected_percent=100.0 * n / len(df) if len(df) else None, observed=None, examples=examples,
            message=f"column {col} holds numbers, as its suite's rules say, but {n} of its {len(df)} cells are not (e.g. {examples[0]!r})",
        ))  # fmt: skip
    return out


def _gx_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as GX checks it fastest, with the same outcome:

    - GX cannot take array-valued cells (image pixels): the suite sees each array's length;
    - GX compares a datetime column with its bounds in one vectorised step only at nanosecond
      resolution; at any other (Parquet and Arrow give microseconds) it calls a Python function
      per row: 2.4 s of a 541,909-row gate. Such columns are handed over in nanoseconds, unless a
      value lies outside the years 1677-2262 that nanoseconds can hold."""
    arrays = [c for c in df.columns if is_array_column(df[c])]
    out = df.copy(deep=False)  # the snapshot's frame is shared by the stages: GX gets its own
    for c in arrays:
        out[c] = df[c].map(lambda v: None if v is None else len(v))
    for c in df.columns:
        if pd.api.types.is_datetime64_dtype(df[c].dtype) and df[c].dtype != "datetime64[ns]":
            try:
                out[c] = df[c].astype("datetime64[ns]")
            except (OverflowError, pd.errors.OutOfBoundsDatetime):
                pass  # GX's per-row comparison, at the column's own resolution
    return out


def is_array_column(s: pd.Series) -> bool:
    if s.dtype != object:
        return False
    values = s.dropna()
    return not values.empty and isinstance(values.iloc[0], (list, tuple, np.ndarray))


_MISSING_COLUMN = re.compile(r'The column "(.+?)" in BatchData does not exist')
_SCHEMA_CHECKS = {
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_column_to_exist",
}


def _cause(o: ExpectationOutcome) -> str:
    """Why one expectation failed, told apart: it found bad values, or the rule itself errored."""
    if o.raised:
        return f"{o.label} errored: {(o.message or 'no message').splitlines()[0]}"
    if o.expectation.startswith("modelmill_") and o.message:
        return o.message
    if o.unexpected_count is not None:
        return f"{o.label} found {o.unexpected_count} bad values"
    return f"{o.label} failed (observed {json.dumps(o.observed, default=str)[:80]})"


def gate(report: ValidationReport, pipeline: str) -> None:
    """Raise :class:`DataRejected` naming the failed expectations (with their counts) if the
    suite failed, or :class:`SpecError` when the suite names a column the data does not have and
    no schema expectation of the suite says the data lost it."""
    if report.success:
        return
    bad = [o for o in report.outcomes if not o.success]
    missing = sorted({m.group(1) for o in bad if o.raised and (m := _MISSING_COLUMN.search(o.message or ""))})
    schema_failed = any(o.expectation in _SCHEMA_CHECKS and not o.raised for o in bad)
    if missing and not schema_failed:
        raise SpecError(f"suite {report.suite} names column {', '.join(missing)} which the data does not have")
    causes = [_cause(o) for o in bad]
    shown = "; ".join(causes[:4]) + (f"; and {len(causes) - 4} more" if len(causes) > 4 else "")
    raise DataRejected(
        f"{pipeline}: data rejected by suite {report.suite}: {len(bad)} of {report.evaluated} checks failed: {shown}",
        report.failed,
    )
