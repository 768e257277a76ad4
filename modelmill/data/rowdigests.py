"""Rows named by their content, so that a later run can tell which of its test rows an earlier
model trained on.

A row's digest is a 64-bit hash of its values over named columns (pandas' ``hash_pandas_object``:
by value, so a column read as categorical or as text hashes alike, and column order does not
matter because the columns are sorted). A run records the digests of the rows it trained on
(validation rows included) with the column names; a later run hashes its own test rows over
those same columns and compares. The chance that two different rows share a digest is about
n²/2⁶⁵: for a million rows, under one in 30 million.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS_KEY = b"modelmill.columns"


def _hashable(column: pd.Series) -> pd.Series:
    """Arrays in cells (an image's pixels) as their bytes; everything else as it is."""
    if column.dtype == object and len(column) and isinstance(column.iloc[0], np.ndarray):
        return column.map(lambda a: np.ascontiguousarray(a).tobytes())
    return column


def row_digests(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row of ``frame`` over ``columns`` (sorted), by value."""
    cols = sorted(columns)
    if not cols:
        return np.zeros(len(frame), dtype=np.uint64)
    view = pd.DataFrame({c: _hashable(frame[c]) for c in cols})
    return pd.util.hash_pandas_object(view, index=False).to_numpy(dtype=np.uint64)


def write_digests(path: Path, digests: np.ndarray, columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"digest": np.asarray(digests, dtype=np.uint64)})
    table = table.replace_schema_metadata({COLUMNS_KEY: json.dumps(sorted(columns)).encode()})
    pq.write_table(table, path)


def read_digests(path: Path) -> tuple[np.ndarray, list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = json.loads((table.schema.metadata or {}).get(COLUMNS_KEY, b"[]"))
    return table.column("digest").to_numpy(), columns


def unseen(test_rows: pd.DataFrame, trained_on: np.ndarray, columns: list[str]) -> np.ndarray | None:
    """Which ``test_rows`` are none of the rows whose digests over ``columns`` are ``trained_on``;
    None when the test rows lack one of those columns (their rows cannot be matched)."""
    if any(c not in test_rows.columns for c in columns):
        return None
    return ~np.isin(row_digests(test_rows, columns), trained_on)
