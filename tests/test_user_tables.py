"""Users' tables as they come: numbers written with thousands separators, decimal commas and
currency signs are read as numbers (`source.thousands`, `source.decimal`), and declared date
columns are parsed at ingest so a suite can compare dates (`source.parse_dates`, `roles.date`)."""

from __future__ import annotations

import json

import pandas as pd

from conftest import last_run, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _money(x: float, thousands: str, decimal: str) -> str:
    whole, frac = f"{x:,.4f}".split(".")
    return "$" + whole.replace(",", thousands) + decimal + frac


def test_numbers_with_separators_and_currency_signs_are_numbers(example_project, capsys):
    root, spec, data = example_project
    shown = data.astype({"worst_area": object, "mean_texture": object})
    shown["worst_area"] = data["worst_area"].map(lambda v: _money(v, ".", ","))  # e.g. $2.019,0000
    shown["mean_texture"] = data["mean_texture"].map(lambda v: f"{v:.4f}".replace(".", ",") + " EUR")
    assert shown["worst_area"].str.contains(r"\d\.\d{3},").any()
    source = {**spec["source"], "read_options": {"sep": ";"}}
    (root / "pipelines" / "data" / "cells.csv").write_text(shown.to_csv(index=False, sep=";"))
    write_example_spec(root, spec, source=source)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 3 and "worst_area" in out + err  # read as text, the gate counts what is not a number
    write_example_spec(root, spec, source={**source, "thousands": ".", "decimal": ","})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    run = last_run(Settings(), "my_cells")
    snapshot = pd.read_parquet(run.data.tags["modelmill.snapshot"])
    pd.testing.assert_series_equal(
        snapshot["worst_area"], data["worst_area"].round(4).astype("float64"), check_names=False
    )
    pd.testing.assert_series_equal(
        snapshot["mean_texture"], data["mean_texture"].round(4).astype("float64"), check_names=False
    )


def test_declared_dates_are_parsed_so_a_suite_can_compare_them(example_project, capsys):
    root, spec, data = example_project
    days = pd.date_range("2023-01-02", periods=len(data), freq="D")
    dated = data.assign(measured_on=days.strftime("%d/%m/%Y"))
    suite_path = root / "expectations" / "my_cells.json"
    suite = json.loads(suite_path.read_text())
    for e in suite["expectations"]:
        if e["type"] == "expect_table_columns_to_match_set":
            e["kwargs"]["column_set"].append("measured_on")
    suite["expectations"] += [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "measured_on"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "measured_on", "min_value": "2023-01-01", "max_value": "2025-12-31"},
        },
    ]
    suite_path.write_text(json.dumps(suite))
    source = {**spec["source"], "parse_dates": ["measured_on"], "dayfirst": True}
    write_example_spec(root, spec, dated, source=source)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    snapshot = pd.read_parquet(last_run(Settings(), "my_cells").data.tags["modelmill.snapshot"])
    assert (
        pd.api.types.is_datetime64_any_dtype(snapshot["measured_on"]) and snapshot["measured_on"].iloc[10] == days[10]
    )

    dated.loc[[4, 40], "measured_on"] = ["31/02/2024", "soon"]  # no such day; not a date
    write_example_spec(root, spec, dated, source=source)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 3 and "expect_column_values_to_not_be_null(measured_on)" in out + err and "2 " in out + err
