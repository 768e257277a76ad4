"""The validation gate on real data: the shipped suite passes the real snapshot, and a damaged
copy fails with the expectations, counts and example values named in the report."""

from __future__ import annotations

import pytest

from conftest import REPO, require_mirror
from modelmill.errors import DataRejected, SpecError
from modelmill.ingest import fetch_sources, read_source
from modelmill.settings import Settings
from modelmill.spec import load_spec
from modelmill.validate import gate, validate_frame


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

    from modelmill.ingest import write_snapshot

    spec, s, df = credit
    snap = write_snapshot(df, "german-credit", s.model_copy(update={"home": tmp_path}), [], None)
    first = snap.load()
    assert snap.load() is first  # every stage of a run shares one read
    revived = pickle.loads(pickle.dumps(snap))
    assert revived._frame is None and revived == snap
    assert revived.load().equals(first)
    assert "_frame" not in snap.lineage() and snap.lineage()["digest"] == snap.digest
