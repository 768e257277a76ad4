"""The gate's row rules as the registered model carries them, so that a row is refused wherever
the model is served (``mlflow models serve``, ``mlflow.pyfunc.load_model``) as ``modelmill
score`` refuses it.

At registration the rules are written, as plain JSON, into the model's MLmodel metadata
(``modelmill.row_rules``): each feature column present; each declared numeric feature a number
(present unless the model imputes it), finite and not too large; and the suite's row-level rules
on the feature columns (values between bounds, in a set, present, matching or not matching a
pattern). The served model checks every row against them before predicting, with pandas only
(no Great Expectations at serving time), and answers a refused row with the first rule it breaks
(``rejected_because``, the same label ``score`` writes) instead of a prediction. A not-null rule
on a column the model imputes is not applied to a single row: the batch's ``mostly`` allowance
has no meaning for one request, and the model fills the value.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from modelmill.config.spec import PipelineSpec

#: the suite's row-level rules a served model checks
SERVED = (
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
)


def served_rules(spec: PipelineSpec, suite: dict) -> list[dict]:
    """The rules a registered model of ``spec`` carries (see the module docstring), in the order
    ``score`` checks them."""
    from modelmill.quality.rules import OVERFLOW, ROW_RULES

    columns = spec.features.columns()
    # numbers are read as the model's first step reads them (the source's separators)
    written = {"thousands": spec.source.thousands, "decimal": spec.source.decimal}
    out: list[dict] = [{"kind": "present_column", "column": c, "label": f"column {c} is missing"} for c in columns]
    for c in spec.features.numeric:
        out.append({"kind": "number", "column": c, "label": f"{c} {ROW_RULES['numeric_type']}", **written})
        if spec.impute.numeric == "none":
            out.append({"kind": "not_null", "column": c, "label": f"{c} {ROW_RULES['not_null']}", **written})
        out.append({"kind": "finite", "column": c, "label": f"{c} {ROW_RULES['finite']}", **written})
        out.append(
            {"kind": "not_huge", "column": c, "limit": OVERFLOW, "label": f"{c} {ROW_RULES['no_overflow']}", **written}
        )
    imputed = set(spec.features.numeric) if spec.impute.numeric != "none" else set()
    imputed |= set(spec.features.categorical) if spec.impute.categorical != "none" else set()
    for e in suite.get("expectations", []):
        kw = e.get("kwargs", {})
        column = kw.get("column")
        if e["type"] not in SERVED or column not in columns:
            continue
        if e["type"] == "expect_column_values_to_not_be_null" and column in imputed:
            continue
        rule = {
            k: v
            for k, v in kw.items()
            if k in ("min_value", "max_value", "strict_min", "strict_max", "value_set", "regex")
        }
        if column in spec.features.numeric:
            rule |= written
        out.append({"kind": e["type"], "column": column, "label": f"{e['type']}({column})", **rule})
    return out


def _text(v) -> str:
    """A value as set membership compares it: a whole float as its integer (1.0 and 1 alike)."""
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _numbers(s: pd.Series, rule: dict) -> pd.Series:
    """The column's values as numbers, written as the source writes them (NaN: not a number)."""
    from modelmill.data.ingest import coerce_numbers

    s = s.mask(s.notna() & (s.astype("str").str.strip() == ""))
    if rule.get("thousands") or rule.get("decimal", ".") != ".":
        s = coerce_numbers(s, rule.get("thousands"), rule.get("decimal", "."))
    return pd.to_numeric(s.astype(object).where(s.notna()), errors="coerce")


def broken(rule: dict, df: pd.DataFrame) -> pd.Series:
    """The rows of ``df`` that break ``rule`` (a missing value breaks only a not-null rule)."""
    kind, column = rule["kind"], rule["column"]
    if kind == "present_column":
        return pd.Series(column not in df.columns, index=df.index)
    s = df[column]
    present = s.notna()
    if "decimal" in rule:  # a numeric feature's blank cell is a missing value, as ingest reads it
        present &= s.astype("str").str.strip() != ""
    if kind == "not_null" or kind == "expect_column_values_to_not_be_null":
        return ~present
    if kind == "number":
        return present & _numbers(s, rule).isna()
    values = _numbers(s, rule)
    if kind == "finite":
        return pd.Series(np.isinf(values.to_numpy(dtype=float, na_value=np.nan)), index=df.index)
    if kind == "not_huge":
        v = values.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(np.isfinite(v) & (np.abs(v) > rule["limit"]), index=df.index)
    if kind == "expect_column_values_to_be_between":
        low, high = rule.get("min_value"), rule.get("max_value")
        bad = pd.Series(False, index=df.index)
        if low is not None:
            bad |= (values <= low) if rule.get("strict_min") else (values < low)
        if high is not None:
            bad |= (values >= high) if rule.get("strict_max") else (values > high)
        return present & bad.fillna(False)
    if kind == "expect_column_values_to_be_in_set":
        allowed = {_text(v) for v in rule["value_set"]}
        return present & ~s.map(lambda v: _text(v) in allowed).astype(bool)
    pattern = re.compile(rule["regex"])
    matches = s.map(lambda v: bool(pattern.search(str(v)))).astype(bool)
    return present & (~matches if kind == "expect_column_values_to_match_regex" else matches)


def check(rules: list[dict], df: pd.DataFrame) -> pd.Series:
    """Why each row of ``df`` is refused (the first rule it breaks), or "" when it may be scored."""
    reason = pd.Series("", index=df.index, dtype="object")
    for rule in rules:
        open_ = reason == ""
        if not open_.any():
            break
        reason[open_ & broken(rule, df)] = rule["label"]
        if rule["kind"] == "present_column" and rule["column"] not in df.columns:
            break  # every row lacks it: the other rules cannot read the column
    return reason
