"""The validation gate on real data: the shipped suite passes the real snapshot, and a damaged
copy fails with the expectations, counts and example values named in the report."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from conftest import REPO, require_mirror
from modelmill.config.settings import Settings
from modelmill.config.spec import load_spec
from modelmill.data.ingest import fetch_sources, read_source
from modelmill.errors import DataRejected, SpecError
from modelmill.quality.validate import gate, validate_frame


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    s = Settings(home=tmp_path_factory.mktemp("v"), data_mirror=str(require_mirror()), pipelines_dir=REPO / "pipelines")
    spec = load_spec("credit_risk", s)
    return spec, s, read_source(spec, fetch_sources(spec, s))


def test_real_data_passes_its_suite(credit):
    spec, s, df = credit
    report = validate_frame(df, spec.suite_path(s))
    assert report.success and report.failed == [] and report.rows == 1000
    gate(report, spec.name)  # does not raise


def test_damaged_data_fails_with_counts_examples_and_a_readable_report(credit):
    spec, s, df = credit
    bad = df.copy()
    bad.loc[[3, 4], "age"] = [7, 140]
    bad.loc[5, "purpose"] = "A499"
    bad = bad.drop(columns=["telephone"])
    report = validate_frame(bad, spec.suite_path(s))
    assert not report.success
    by = {o.label: o for o in report.outcomes}
    assert by["expect_column_values_to_be_between(age)"].unexpected_count == 2
    assert sorted(by["expect_column_values_to_be_between(age)"].examples) == [7, 140]
    assert by["expect_column_values_to_be_in_set(purpose)"].examples == ["A499"]
    # A check on a column that is gone raised inside GX: told apart from a plain failure.
    assert by["expect_column_values_to_not_be_null(telephone)"].raised
    assert not by["expect_column_values_to_be_between(age)"].raised
    html = report.to_html()
    assert "FAILED" in html and "A499" in html and "raised" in html
    with pytest.raises(DataRejected) as e:
        gate(report, spec.name)
    assert "expect_table_columns_to_match_set" in e.value.failed and "\n" not in str(e.value)


def test_an_empty_frame_fails_the_row_count_check(credit):
    spec, s, df = credit
    report = validate_frame(df.head(0), spec.suite_path(s))
    assert "expect_table_row_count_to_be_between" in report.failed


def test_a_broken_suite_is_a_spec_error(tmp_path, credit):
    spec, s, df = credit
    p = tmp_path / "broken.json"
    p.write_text('{"name": "x", "expectations": [{"type": "expect_nothing_sensible", "kwargs": {}}]}')
    with pytest.raises(SpecError, match="broken.json"):
        validate_frame(df, p)
    p.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        validate_frame(df, p)


def test_a_snapshot_is_read_once_and_pickles_without_its_rows(tmp_path, credit):
    import pickle

    from modelmill.data.ingest import write_snapshot

    spec, s, df = credit
    snap = write_snapshot(df, "german-credit", s.model_copy(update={"home": tmp_path}), [], None)
    first = snap.load()
    assert snap.load() is first  # every stage of a run shares one read
    revived = pickle.loads(pickle.dumps(snap))
    assert revived._frame is None and revived == snap
    assert revived.load().equals(first)
    assert "_frame" not in snap.lineage() and snap.lineage()["digest"] == snap.digest


def test_a_clean_day_records_pass_fail_only_and_a_rejected_day_the_full_record(credit, tmp_path):
    """The gate asks GX for pass/fail first (BOOLEAN_ONLY); only a failing suite is run again in
    full, so its report and Data Docs carry counts and examples."""
    spec, s, df = credit
    clean = validate_frame(df, spec.suite_path(s), tmp_path / "clean")
    assert clean.success and all(o.unexpected_count is None for o in clean.outcomes)
    assert (tmp_path / "clean" / "index.html").is_file()
    detailed = validate_frame(df, spec.suite_path(s), detail=True)  # `modelmill check`
    assert {
        o.unexpected_count for o in detailed.outcomes if o.expectation == "expect_column_values_to_not_be_null"
    } == {0}
    bad = df.copy()
    bad.loc[3, "age"] = 140
    rejected = validate_frame(bad, spec.suite_path(s), tmp_path / "bad")
    by = {o.label: o for o in rejected.outcomes}
    assert by["expect_column_values_to_be_between(age)"].unexpected_count == 1 and by[
        "expect_column_values_to_be_between(age)"
    ].examples == [140]
    assert by["expect_column_values_to_not_be_null(age)"].unexpected_count == 0  # the whole suite, in full
    pages = "".join(p.read_text() for p in (tmp_path / "bad").rglob("*.html"))
    assert "140" in pages  # GX's own pages show the unexpected value


def test_the_benchmarks_pyarrow_yardstick_agrees_with_gx_rule_by_rule(credit):
    """scripts/arrow_checks.py, the hand-vectorised checks the gate is timed against, decides every
    rule of the credit suite (the one the benchmark times) as GX does, on the real data and on a
    damaged copy."""
    import json
    import sys

    import pyarrow as pa

    sys.path.insert(0, str(REPO / "scripts"))
    from arrow_checks import check_suite

    spec, s, df = credit
    bad = df.copy()
    bad.loc[[3, 4], "age"] = [7, 140]
    bad.loc[5, "purpose"] = "A499"
    bad.loc[6, "duration_months"] = None
    suite = json.loads(spec.suite_path(s).read_text())

    def key(kind: str, kwargs: dict) -> str:  # GX adds defaults to kwargs: key on the columns
        return f"{kind}{[kwargs.get(k) for k in ('column', 'column_list', 'column_A', 'column_B')]}"

    for frame in (df, bad):
        gx = {
            key(o.expectation, o.kwargs): o.success
            for o in validate_frame(frame, spec.suite_path(s), detail=True).outcomes
        }
        arrow = check_suite(pa.Table.from_pandas(frame, preserve_index=False), suite)
        assert {key(e["type"], e["kwargs"]): ok for e, ok in zip(suite["expectations"], arrow, strict=True)} == gx
    assert list(gx.values()).count(False) == 3


class _Unscannable(np.ndarray):
    """A numeric array that fails the test if anything walks it one value at a time."""

    def __iter__(self):
        raise AssertionError("a numeric column was scanned value by value for Decimal objects")


def test_numeric_columns_are_not_scanned_for_decimals_and_decimal_columns_still_are(tmp_path):
    import json

    import great_expectations.util as gx_util
    import pandas as pd

    suite = tmp_path / "means.json"
    rule = {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "x", "min_value": 1.5, "max_value": 2.5}}
    suite.write_text(json.dumps({"name": "means", "expectations": [rule]}))
    assert validate_frame(pd.DataFrame({"x": [1, 2, 3]}), suite).success  # GX's mean, the shortcut installed
    assert not gx_util.does_ndarray_contain_decimal_dtype(np.arange(5_000_000).view(_Unscannable))
    assert gx_util.does_ndarray_contain_decimal_dtype(np.array([Decimal("1.5"), 2.0], dtype=object))
    shortcut = gx_util.does_ndarray_contain_decimal_dtype
    validate_frame(pd.DataFrame({"x": [1, 2, 3]}), suite)
    assert gx_util.does_ndarray_contain_decimal_dtype is shortcut  # installed once, not wrapped again
    # a column of Decimal objects is still converted by GX before its mean: right both ways
    assert validate_frame(pd.DataFrame({"x": [Decimal(1), Decimal(2), Decimal(3)]}, dtype=object), suite).success
    assert not validate_frame(pd.DataFrame({"x": [Decimal(3), Decimal(4)]}, dtype=object), suite).success


class _Cell:
    """A value whose life can be watched (a weak reference)."""


def test_the_gate_lets_go_of_the_frame_it_validated_and_release_frees_it(tmp_path):
    """GX keeps its last context process-wide, and with it the frame last validated: a 10M-row
    snapshot stayed alive through training. Once the gate is done nothing of GX holds the rows but
    reference cycles, and releasing a large snapshot's frame collects them (Python's own
    collector is off here, so only that can)."""
    import gc
    import json
    import weakref

    import pandas as pd

    from modelmill.data.ingest import COLLECT_ROWS, Snapshot

    suite = tmp_path / "rows.json"
    suite.write_text(
        json.dumps(
            {
                "name": "rows",
                "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}],
            }
        )
    )
    cell = _Cell()
    watched = weakref.ref(cell)
    snap = Snapshot("rows", tmp_path / "rows.parquet", "", COLLECT_ROWS, ["x", "tag"])
    object.__setattr__(
        snap,
        "_frame",
        pd.DataFrame(
            {"x": np.arange(COLLECT_ROWS), "tag": pd.Series([cell] + [None] * (COLLECT_ROWS - 1), dtype=object)}
        ),
    )
    del cell
    gc.disable()
    try:
        assert validate_frame(snap.load(), suite, tmp_path / "docs").success  # as the validate stage calls it
        snap.release()
        assert watched() is None, "the validated rows outlived the snapshot's release"
    finally:
        gc.enable()


def test_datetime_bounds_are_checked_in_one_vectorised_step_at_any_resolution(tmp_path, monkeypatch):
    """Parquet and Arrow give microsecond datetimes; GX compares them with a suite's bounds a row at
    a time in Python unless they are in nanoseconds (2.4 s of the retail gate's 541,909 rows). The
    gate hands them over in nanoseconds, with the same outcome; dates nanoseconds cannot hold
    (before 1677) still get GX's row-by-row check."""
    import json

    import pandas as pd
    from great_expectations.expectations.metrics.column_map_metrics.column_values_between import ColumnValuesBetween

    calls = []
    vectorised = ColumnValuesBetween._pandas_vectorized.__func__

    def spy(cls, column, *args, **kwargs):
        calls.append(str(column.dtype))
        return vectorised(cls, column, *args, **kwargs)

    monkeypatch.setattr(ColumnValuesBetween, "_pandas_vectorized", classmethod(spy))
    suite = tmp_path / "dates.json"
    rule = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "day", "min_value": "2009-01-01", "max_value": "2030-01-01"},
    }
    suite.write_text(json.dumps({"name": "dates", "expectations": [rule]}))

    def frame(*days):
        return pd.DataFrame({"day": np.array(days, dtype="datetime64[us]")})

    assert validate_frame(frame("2010-12-01", "2011-06-30", None), suite).success
    assert calls == ["datetime64[ns]"]
    report = validate_frame(frame("2010-12-01", "2031-01-01", "2008-05-05"), suite)
    assert not report.success and report.failed == ["expect_column_values_to_be_between(day)"]
    (outcome,) = report.outcomes
    assert outcome.unexpected_count == 2
    calls.clear()
    report = validate_frame(frame("2010-12-01", "1500-01-01"), suite)  # beyond nanoseconds
    assert not report.success and report.outcomes[0].unexpected_count == 1 and calls == []
