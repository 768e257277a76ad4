"""Hand-vectorised pyarrow versions of the expectation types modelmill's suites use: the yardstick
the benchmark holds the GX gate against (the goal: the gate costs at most 3x these checks).

Each check returns pass/fail the way GX decides it (nulls are left out of column-map rules, ``mostly``
is honoured); ``tests/test_validate.py`` checks that both agree rule by rule on the credit suite,
which the benchmark times, on real data clean and damaged.
Not used by the pipelines: GX stays the gate and the record.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def _map_rule(col: pa.ChunkedArray, ok: pa.ChunkedArray, kw: dict) -> bool:
    """A column-map rule: the share of non-null values for which ``ok`` holds must reach mostly."""
    nonnull = len(col) - col.null_count
    if nonnull == 0:
        return True
    good = pc.sum(pc.fill_null(ok, False)).as_py() or 0
    return good / nonnull >= kw.get("mostly", 1.0)


def _between(value, kw: dict) -> bool:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if value is None:
        return False
    if lo is not None and (value <= lo if kw.get("strict_min") else value < lo):
        return False
    return not (hi is not None and (value >= hi if kw.get("strict_max") else value > hi))


def _in_bounds(col: pa.ChunkedArray, kw: dict) -> pa.ChunkedArray:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    ok = pc.is_valid(col)
    if lo is not None:
        ok = pc.and_(ok, (pc.greater if kw.get("strict_min") else pc.greater_equal)(col, lo))
    if hi is not None:
        ok = pc.and_(ok, (pc.less if kw.get("strict_max") else pc.less_equal)(col, hi))
    return ok


def check(table: pa.Table, expectation: dict) -> bool:
    kind, kw = expectation["type"], expectation.get("kwargs", {})
    if kind == "expect_table_row_count_to_be_between":
        return _between(table.num_rows, kw)
    if kind == "expect_table_columns_to_match_set":
        names, wanted = set(table.column_names), set(kw["column_set"])
        return names == wanted if kw.get("exact_match", True) else wanted <= names
    if kind == "expect_compound_columns_to_be_unique":
        keys = kw["column_list"]
        counts = table.select(keys).group_by(keys).aggregate([([], "count_all")])
        return pc.max(counts["count_all"]).as_py() <= 1
    col = table[kw["column"]]
    if kind == "expect_column_values_to_not_be_null":
        return (len(col) - col.null_count) / max(len(col), 1) >= kw.get("mostly", 1.0) if len(col) else True
    if kind == "expect_column_values_to_be_in_set":
        return _map_rule(col, pc.is_in(col, value_set=pa.array(kw["value_set"], type=col.type)), kw)
    if kind == "expect_column_values_to_be_between":
        return _map_rule(col, _in_bounds(col, kw), kw)
    if kind == "expect_column_value_lengths_to_be_between":
        return _map_rule(col, _in_bounds(pc.utf8_length(col), kw), kw)
    if kind in ("expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex"):
        hit = pc.match_substring_regex(col, kw["regex"])
        return _map_rule(col, hit if kind.endswith("_to_match_regex") else pc.invert(hit), kw)
    if kind == "expect_column_mean_to_be_between":
        return _between(pc.mean(col).as_py(), kw)
    distinct = pc.unique(col.drop_null())
    if kind == "expect_column_distinct_values_to_equal_set":
        return set(distinct.to_pylist()) == set(kw["value_set"])
    if kind == "expect_column_distinct_values_to_be_in_set":
        return set(distinct.to_pylist()) <= set(kw["value_set"])
    if kind == "expect_column_unique_value_count_to_be_between":
        return _between(len(distinct), kw)
    if kind == "expect_column_proportion_of_unique_values_to_be_between":
        nonnull = len(col) - col.null_count
        return _between(len(distinct) / nonnull if nonnull else None, kw)
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = table[kw["column_A"]], table[kw["column_B"]]
        ok = (pc.greater_equal if kw.get("or_equal") else pc.greater)(a, b)
        both = pc.and_(pc.is_valid(a), pc.is_valid(b))
        n = pc.sum(both).as_py() or 0
        return n == 0 or (pc.sum(pc.and_(both, pc.fill_null(ok, False))).as_py() or 0) / n >= kw.get("mostly", 1.0)
    raise NotImplementedError(kind)


def check_suite(table: pa.Table, suite: dict) -> list[bool]:
    return [check(table, e) for e in suite["expectations"]]
