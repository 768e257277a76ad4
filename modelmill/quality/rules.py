"""Checks the gate runs on every snapshot whatever its suite says, and de-duplication.

A suite is written by a person and can forget a rule; these follow from the spec itself:

- every declared numeric feature holds numbers — no text ("3,913"), no NaN, no infinities, no
  values so large that scaling them overflows;
- a classification target has no missing labels, more than one class, and enough rows of each
  class for the split and the cross-validation folds;
- exact duplicate rows (or rows sharing the spec's ``roles.id``) are dropped before the split
  (``duplicates: drop``, the default, logged with their count) or reject the data
  (``duplicates: reject``), so no example sits on both sides of the train/test split.

Each problem is an :class:`~modelmill.quality.validate.ExpectationOutcome` in the validation report,
with its count and a few example values, so it reads like any other failed expectation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelmill.config.spec import PipelineSpec
from modelmill.quality.validate import ExpectationOutcome, is_array_column

#: |x| above this overflows when squared (variance, scaling): 1e154² ≈ float64's maximum.
OVERFLOW = 1e150


def _outcome(rule: str, column: str | None, count: int, rows: int, message: str, examples=()) -> ExpectationOutcome:
    return ExpectationOutcome(
        expectation=f"modelmill_{rule}", column=column, kwargs={}, success=False, raised=False, unexpected_count=int(count),
        unexpected_percent=100.0 * count / rows if rows else None, observed=None, message=message, examples=[_show(v) for v in examples][:5],
    )  # fmt: skip


def _show(v):
    return v.item() if isinstance(v, np.generic) else v


#: how each numeric rule reads when it sets a row aside (``modelmill score``)
ROW_RULES = {
    "numeric_type": "is a number",
    "not_null": "is present",
    "finite": "is finite",
    "no_overflow": "is not too large",
}


def numeric_row_problems(spec: PipelineSpec, df: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """``(column, rule, rows breaking it)`` for every declared numeric feature in ``df``: text
    that is not a number, missing values (unless the spec imputes), infinities, overflow."""
    out = []
    for col in spec.features.numeric:
        if col not in df.columns:
            continue  # a missing column is the suite's and the kind's to report
        s = df[col]
        missing = s.isna()
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            missing |= s.astype(str).str.strip() == ""  # a blank cell is a missing value
            number = pd.to_numeric(s.astype(str).where(~missing), errors="coerce")
            out.append((col, "numeric_type", number.isna() & ~missing))
            s = number
        values = pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=df.index)
        nan, inf = values.isna() & missing, np.isinf(values)
        huge = values.abs().where(~inf, 0) > OVERFLOW
        if spec.impute.numeric == "none":
            out.append((col, "not_null", nan))
        out += [(col, "finite", inf), (col, "no_overflow", huge)]
    return [(c, r, m) for c, r, m in out if m.any()]


def numeric_feature_findings(spec: PipelineSpec, df: pd.DataFrame) -> list[ExpectationOutcome]:
    out, rows, mistyped = [], len(df), set()
    for col, rule, mask in numeric_row_problems(spec, df):
        n = int(mask.sum())
        if rule == "numeric_type":
            mistyped.add(col)
            bad = df.loc[mask, col]
            msg = f"column {col} is declared numeric but {n} values are not numbers (e.g. {_show(bad.iloc[0])!r})"
            out.append(_outcome(rule, col, n, rows, msg, bad.unique()[:5]))
        elif col in mistyped:
            continue  # text in a numeric column: that is the finding
        elif rule == "not_null":
            out.append(_outcome(rule, col, n, rows, f"numeric feature {col} has {n} missing values"))
        elif rule == "finite":
            out.append(
                _outcome(
                    rule, col, n, rows, f"numeric feature {col} has {n} infinite values", df.loc[mask, col].to_numpy()
                )
            )
        else:
            msg = f"numeric feature {col} has {n} values too large to train on (overflow: |x| > {OVERFLOW:g})"
            out.append(_outcome(rule, col, n, rows, msg, df.loc[mask, col].to_numpy()))
    return out


def min_rows_per_class(spec: PipelineSpec) -> int:
    """Rows each class needs: a test row plus one per CV fold (two for a predefined split)."""
    return 2 if spec.split.method == "predefined" else spec.split.folds + 1


def target_findings(spec: PipelineSpec, df: pd.DataFrame) -> list[ExpectationOutcome]:
    col, rows = spec.target, len(df)
    if not col or col not in df.columns or rows == 0:
        return []
    s = df[col]
    out = []
    if s.isna().any():
        out.append(
            _outcome(
                "target_not_null",
                col,
                int(s.isna().sum()),
                rows,
                f"target {col} has {int(s.isna().sum())} missing labels",
            )
        )
    counts = s.dropna().value_counts()
    if len(counts) == 1:
        only = counts.index[0]
        out.append(
            _outcome(
                "target_classes",
                col,
                int(counts.iloc[0]),
                rows,
                f"target {col} has a single class {_show(only)!r} ({int(counts.iloc[0])} rows): nothing to learn",
                [only],
            )
        )
    elif len(counts) > 1:
        need = min_rows_per_class(spec)
        small = counts[counts < need]
        if not small.empty:
            shown = ", ".join(f"{_show(k)!r}: {int(v)}" for k, v in small.items())
            msg = f"target {col} has {len(small)} classes with fewer than {need} rows ({shown})"
            out.append(_outcome("target_class_size", col, len(small), len(counts), msg, list(small.index)))
    return out


def _hashable(df: pd.DataFrame) -> pd.DataFrame:
    """Array cells (image pixels) as bytes, so rows can be compared."""
    arrays = [c for c in df.columns if is_array_column(df[c])]
    if not arrays:
        return df
    out = df.copy(deep=False)
    for c in arrays:
        out[c] = df[c].map(lambda v: None if v is None else np.asarray(v).tobytes())
    return out


def _column_hash(col: pd.Series) -> np.ndarray:
    """A number per value, equal exactly where pandas counts values equal (its own factorization:
    -0.0 is 0.0, every NaN is one missing value, 1 is 1.0)."""
    return pd.factorize(col, use_na_sentinel=False)[0].view(np.uint64)


def _repeated_rows(df: pd.DataFrame) -> np.ndarray:
    """``df.duplicated()``, in 8 bytes a row rather than pandas' 8 bytes a cell (it factorizes every
    column and keeps them all: 1.7 GB for 10M rows x 21 columns). Here each column's codes are
    folded into one hash per row as they come; only rows whose hash occurs twice are then compared,
    exactly, by pandas — a collision costs time, never a row."""
    h = np.zeros(len(df), dtype=np.uint64)
    for c in df.columns:
        h *= np.uint64(0x100000001B3)  # FNV's prime; uint64 arithmetic wraps around
        h ^= _column_hash(df[c])
    maybe = pd.Series(h).duplicated(keep=False).to_numpy()
    out = np.zeros(len(df), dtype=bool)
    if maybe.any():
        out[np.flatnonzero(maybe)[df.loc[maybe].duplicated().to_numpy()]] = True
    return out


def duplicated(spec: PipelineSpec, df: pd.DataFrame) -> pd.Series:
    """Rows that repeat an earlier one: all columns equal, or the same ``roles.id``."""
    ident = spec.roles.get("id")
    if ident and ident in df.columns:
        return df[ident].duplicated()
    return pd.Series(_repeated_rows(_hashable(df)), index=df.index)


def duplicate_findings(spec: PipelineSpec, df: pd.DataFrame) -> list[ExpectationOutcome]:
    if spec.duplicates != "reject" or df.empty:
        return []
    dup = duplicated(spec, df)
    if not dup.any():
        return []
    ident = spec.roles.get("id")
    what = (
        f"rows repeat an earlier {ident}"
        if ident and ident in df.columns
        else "rows are exact duplicates of earlier rows"
    )
    return [_outcome("unique_rows", ident, int(dup.sum()), len(df), f"{int(dup.sum())} {what} (duplicates: reject)")]


def declared_column_findings(spec: PipelineSpec, df: pd.DataFrame) -> list[ExpectationOutcome]:
    """Feature, target and id columns the spec declares but the data does not have."""
    f = spec.features
    declared = [
        *f.numeric,
        *f.categorical,
        *([f.text] if f.text else []),
        *([f.image] if f.image else []),
        *([spec.target] if spec.target else []),
    ]
    declared += [spec.roles["id"]] if "id" in spec.roles else []
    missing = [c for c in dict.fromkeys(declared) if c not in df.columns]
    if not missing:
        return []
    return [
        _outcome(
            "declared_columns",
            None,
            len(missing),
            len(declared),
            f"declared columns missing from the data: {', '.join(missing)}",
            missing,
        )
    ]


def findings(spec: PipelineSpec, df: pd.DataFrame, *, classification: bool) -> list[ExpectationOutcome]:
    out = declared_column_findings(spec, df) + numeric_feature_findings(spec, df) + duplicate_findings(spec, df)
    return out + (target_findings(spec, df) if classification else [])


def deduplicate(spec: PipelineSpec, df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``df`` without repeated rows (``duplicates: drop``), and how many were dropped."""
    if spec.duplicates != "drop" or df.empty:
        return df, 0
    dup = duplicated(spec, df)
    n = int(dup.sum())
    if not n:
        return df, 0
    out = df.loc[~dup].reset_index(drop=True)
    out.attrs["source_rows"] = SourceRows(np.flatnonzero(~dup.to_numpy()))  # each kept row's row in the snapshot
    return out, n


class SourceRows:
    """The snapshot row numbers of a frame's rows, in its ``attrs``: shared by the frames pandas
    derives from it (which deep-copy attrs), never copied."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def __deepcopy__(self, memo):
        return self
