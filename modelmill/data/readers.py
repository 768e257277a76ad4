"""Readers: raw source files -> one tidy DataFrame per dataset.

A reader never fixes or filters data the validation suite is meant to judge (nulls, ranges,
labels): it only parses the file's format and names the columns. Format problems (empty,
truncated or corrupt files, a wrong number of fields) raise :class:`CorruptSource`.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.data.fetch import LocalFile
from modelmill.errors import CorruptSource, SpecError

GERMAN_COLUMNS = [
    "checking_status", "duration_months", "credit_history", "purpose", "credit_amount",
    "savings", "employment_since", "installment_rate", "personal_status_sex", "other_debtors",
    "residence_since", "property", "age", "other_installment_plans", "housing",
    "existing_credits", "job", "people_liable", "telephone", "foreign_worker", "class",
]  # fmt: skip


def _nonempty(f: LocalFile) -> None:
    if f.path.stat().st_size == 0:
        raise CorruptSource(f"{f.name} is empty (0 bytes)")


def _zip_member(f: LocalFile, member: str) -> bytes:
    _nonempty(f)
    try:
        with zipfile.ZipFile(f.path) as z:
            names = [n for n in z.namelist() if not n.startswith("__MACOSX/")]
            match = [n for n in names if n == member or n.endswith("/" + member)]
            if not match:
                raise CorruptSource(f"{f.name} has no member {member!r} (has: {', '.join(names[:6])})")
            return z.read(match[0])
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise CorruptSource(f"{f.name} is not a readable zip archive (truncated or corrupt: {e})") from e


def _read_csv(data: bytes | Path, name: str, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data) if isinstance(data, bytes) else data, **kw)
    except pd.errors.EmptyDataError as e:
        raise CorruptSource(f"{name} has no data") from e
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise CorruptSource(f"{name} cannot be parsed: {str(e).splitlines()[0]}") from e


def read_german_credit(files: dict[str, LocalFile]) -> pd.DataFrame:
    f = files["statlog+german+credit+data.zip"]
    raw = _zip_member(f, "german.data")
    lines = [ln for ln in raw.decode("ascii", errors="replace").splitlines() if ln.strip()]
    if not lines:
        raise CorruptSource("german.data has no rows")
    widths = {len(ln.split()) for ln in lines}
    if widths != {len(GERMAN_COLUMNS)}:
        bad = sorted(widths - {len(GERMAN_COLUMNS)})
        raise CorruptSource(f"german.data rows have {bad} fields, expected {len(GERMAN_COLUMNS)}")
    rows = [ln.split() for ln in lines]
    df = pd.DataFrame(rows, columns=GERMAN_COLUMNS)
    numeric = ["duration_months", "credit_amount", "installment_rate", "residence_since", "age",
               "existing_credits", "people_liable", "class"]  # fmt: skip
    for c in numeric:
        df[c] = pd.to_numeric(df[c], errors="coerce")  # unparseable -> null, judged by the suite
    return df


def read_wisconsin(files: dict[str, LocalFile]) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    df = data.frame.copy()
    df.columns = [c.replace(" ", "_") for c in df.columns]
    df["diagnosis"] = np.where(df.pop("target") == 0, "malignant", "benign")
    return df


def wisconsin_source() -> LocalFile:
    """The CSV scikit-learn bundles, for lineage (path and sha256)."""
    import sklearn

    from modelmill.data.digests import sha256_file

    p = Path(sklearn.__file__).parent / "datasets" / "data" / "breast_cancer.csv"
    return LocalFile(p.name, p, f"sklearn://datasets/load_breast_cancer ({p.as_uri()})", sha256_file(p))


def read_stooq(files: dict[str, LocalFile]) -> pd.DataFrame:
    frames = []
    for name, f in sorted(files.items()):
        _nonempty(f)
        df = _read_csv(f.path, name)
        df.columns = [c.strip().lower() for c in df.columns]
        if "date" in df.columns:
            df["date"] = pd.to_datetime(df["date"], errors="coerce", format="%Y-%m-%d")
        df.insert(0, "ticker", name.removesuffix(".csv").split(".")[0].upper())
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def read_breastmnist(files: dict[str, LocalFile]) -> pd.DataFrame:
    from modelmill.data.imagefiles import read_npz

    f = files["breastmnist.npz"]
    return read_npz(f.path, f.name)


def read_banking77(files: dict[str, LocalFile]) -> pd.DataFrame:
    frames = []
    for split in ("train", "test"):
        f = files[f"{split}.csv"]
        _nonempty(f)
        df = _read_csv(f.path, f.name, dtype=str, keep_default_na=False, na_values=[""])
        df.insert(0, "split", split)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def read_sentiment_sentences(files: dict[str, LocalFile]) -> pd.DataFrame:
    f = files["sentiment+labelled+sentences.zip"]
    frames = []
    for source in ("amazon_cells", "yelp", "imdb"):
        raw = _zip_member(f, f"{source}_labelled.txt")
        df = _read_csv(
            raw, f"{source}_labelled.txt", sep="\t", header=None, names=["sentence", "label"],
            quoting=csv.QUOTE_NONE, dtype={"sentence": str}, keep_default_na=False, na_values=[""],
        )  # fmt: skip
        df["label"] = pd.to_numeric(df["label"], errors="coerce")
        df.insert(0, "source", source.split("_")[0])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def read_online_retail(files: dict[str, LocalFile]) -> pd.DataFrame:
    f = files["online+retail.zip"]
    raw = _zip_member(f, "Online Retail.xlsx")
    try:
        df = pd.read_excel(io.BytesIO(raw), sheet_name="Online Retail", engine="calamine", dtype=object)
    except Exception as e:  # calamine raises its own error types for broken workbooks
        raise CorruptSource(f"Online Retail.xlsx cannot be read: {str(e).splitlines()[0]}") from e
    rename = {
        "InvoiceNo": "invoice_no", "StockCode": "stock_code", "Description": "description",
        "Quantity": "quantity", "InvoiceDate": "invoice_date", "UnitPrice": "unit_price",
        "CustomerID": "customer_id", "Country": "country",
    }  # fmt: skip
    missing = [c for c in rename if c not in df.columns]
    if missing:
        raise CorruptSource(f"Online Retail.xlsx lacks columns {missing}")
    df = df.rename(columns=rename)[list(rename.values())]
    # Mixed number/text codes -> text; numbers that came back as floats lose the ".0".
    for c in ("invoice_no", "stock_code"):
        df[c] = df[c].map(
            lambda v: (
                None if v is None or v != v else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
            )
        )
    df["description"] = df["description"].map(
        lambda v: None if v is None or v != v else str(v).replace("Â£", "£").strip()
    )
    df["country"] = df["country"].astype("str")
    df["quantity"] = pd.to_numeric(df["quantity"], errors="coerce")
    df["unit_price"] = pd.to_numeric(df["unit_price"], errors="coerce")
    df["customer_id"] = (
        pd.to_numeric(df["customer_id"], errors="coerce").astype("Int64").astype("str").replace("<NA>", None)
    )
    df["invoice_date"] = pd.to_datetime(df["invoice_date"], errors="coerce")  # unparseable -> NaT, judged by the suite
    return df


def table_format(path: Path, fmt: str | None) -> str:
    """The spec's ``source.format``, else the file's suffix, else CSV."""
    if fmt:
        return fmt
    if path.is_dir():
        return "images"
    return {".parquet": "parquet", ".xlsx": "xlsx", ".npz": "npz"}.get(path.suffix.lower(), "csv")


def read_table(f: LocalFile, fmt: str | None, read_options) -> pd.DataFrame:
    """A user's own CSV or Parquet file, with the spec's (allow-listed) reader options."""
    _nonempty(f)
    fmt = table_format(f.path, fmt)
    if fmt in ("npz", "images"):
        raise SpecError(f"{f.name}: {fmt} sources are read as images (modelmill.data.imagefiles), not as a table")
    options = read_options.for_reader(fmt)
    if fmt == "xlsx":
        try:
            return pd.read_excel(f.path, engine="calamine", **options)
        except Exception as e:  # calamine raises its own error types for broken workbooks
            raise CorruptSource(f"{f.name} is not a readable xlsx workbook: {str(e).splitlines()[0]}") from e
    if fmt == "parquet":
        try:
            return pd.read_parquet(f.path, **options)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for broken files
            raise CorruptSource(f"{f.name} is not a readable Parquet file: {str(e).splitlines()[0]}") from e
    if set(options) <= PYARROW_CSV_OPTIONS:
        return _read_csv(f.path, f.name, engine="pyarrow", **options)
    return _read_csv(f.path, f.name, **options)


#: reader options pandas' pyarrow CSV engine takes; with any other, pandas' C engine reads the file.
#: The pyarrow engine reads with several threads and leaves text columns Arrow-backed (pandas'
#: ``str``), so the snapshot is written from them without a copy.
PYARROW_CSV_OPTIONS = {"sep", "header", "skiprows", "encoding", "na_values", "quotechar", "usecols"}


READERS: dict[str, Callable[[dict[str, LocalFile]], pd.DataFrame]] = {
    "german_credit": read_german_credit,
    "wisconsin": read_wisconsin,
    "stooq": read_stooq,
    "breastmnist": read_breastmnist,
    "banking77": read_banking77,
    "sentiment_sentences": read_sentiment_sentences,
    "online_retail": read_online_retail,
}
