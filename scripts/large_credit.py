"""A credit-like table of any size, and a user project around it (spec + suite), for the scale
benchmark: 20 feature columns drawn from the German Credit data's own columns
(categorical codes from their frequencies, numbers around their values with noise, so rows do not
repeat) and a ``risk`` label from a logistic function of a few of them (so a model has something
to learn).

    python scripts/large_credit.py DIR ROWS     # DIR/data/credit.csv, DIR/pipelines/big_credit.yaml

Generated in chunks written as they come: memory stays flat whatever ROWS is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

CHUNK = 1_000_000
NUMERIC = [
    "duration_months",
    "credit_amount",
    "installment_rate",
    "residence_since",
    "age",
    "existing_credits",
    "people_liable",
]


def _german():
    from modelmill.config.settings import get_settings
    from modelmill.data.catalog import CATALOG
    from modelmill.data.fetch import fetch_catalog_file
    from modelmill.data.readers import READERS

    entry = CATALOG["german-credit"]
    files = {f.name: fetch_catalog_file(entry, f, get_settings()) for f in entry.files}
    return READERS[entry.reader](files)


def write_table(path: Path, rows: int, seed: int = 0) -> list[str]:
    """Write ``rows`` credit-like rows to ``path`` (CSV); return the categorical columns."""
    base = _german()
    categorical = [c for c in base.columns if c not in NUMERIC and c != "class"]
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            cols: dict[str, np.ndarray] = {}
            for c in categorical:
                values, counts = np.unique(base[c].astype(str).to_numpy(), return_counts=True)
                cols[c] = values[rng.choice(len(values), n, p=counts / counts.sum())]
            for c in NUMERIC:
                sample = base[c].to_numpy()[rng.integers(0, len(base), n)].astype(float)
                if c in ("duration_months", "credit_amount", "age"):
                    sample = np.clip(np.round(sample * rng.uniform(0.8, 1.2, n)), base[c].min(), base[c].max())
                cols[c] = sample.astype(np.int64)
            logit = (
                -1.2
                + 0.03 * (cols["duration_months"] - 20)
                + 0.00008 * (cols["credit_amount"] - 3000)
                - 0.02 * (cols["age"] - 35)
            )
            logit += np.where(
                cols["checking_status"] == "A11", 0.9, np.where(cols["checking_status"] == "A14", -1.0, 0.0)
            )
            cols["risk"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "bad", "good")
            table = pa.table(cols)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return categorical


def write_project(root: Path, rows: int) -> Path:
    """``root/pipelines/big_credit.yaml`` reading ``root/pipelines/data/credit.csv``."""
    import yaml

    categorical = write_table(root / "pipelines" / "data" / "credit.csv", rows)
    columns = [*categorical, *NUMERIC]
    suite = {
        "name": "big_credit",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1000, "max_value": 10**9}},
            *({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}} for c in [*columns, "risk"]),
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "risk", "value_set": ["bad", "good"]}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "age", "min_value": 18, "max_value": 100},
            },
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "credit_amount", "min_value": 1, "max_value": 100000},
            },
        ],
    }
    (root / "expectations").mkdir(parents=True, exist_ok=True)
    (root / "expectations" / "big_credit.json").write_text(json.dumps(suite, indent=1))
    spec = {
        "name": "big_credit",
        "domain": "finance",
        "description": "Credit-like generated table for the scale benchmark.",
        "source": {"path": "data/credit.csv", "format": "csv"},
        "target": "risk",
        "positive_label": "bad",
        "features": {"numeric": NUMERIC, "categorical": categorical},
        "suite": "big_credit.json",
        "split": {"method": "stratified", "test_size": 0.2, "seed": 7, "folds": 2},
        "problem": "tabular_classification",
        "baseline": {"name": "prior", "estimator": "dummy_prior"},
        "candidates": [
            {
                "name": "hist_gradient_boosting",
                "estimator": "hist_gradient_boosting",
                "params": {"max_iter": 100, "early_stopping": False},
            }
        ],
        "metric": {"name": "roc_auc", "direction": "maximize"},
        "promotion": {"margin": 0.001},
        "duplicates": "drop",
        "options": {"categorical_encoding": "native"},
        "schedule": {"cron": "0 5 * * 1"},
    }
    path = root / "pipelines" / "big_credit.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


if __name__ == "__main__":
    root, rows = Path(sys.argv[1]), int(float(sys.argv[2]))
    print(write_project(root, rows), os.path.getsize(root / "pipelines" / "data" / "credit.csv") // 2**20, "MiB")
