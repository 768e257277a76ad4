"""Type problems judged cell by cell: a few stray strings in a column of integer codes make those
rows bad, counted as cells, while the rest of the column keeps its type, at the gate and when the
champion scores a batch (the docs' example pipeline on the real Wisconsin data, with a grade
column of codes added)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, write_example_spec


def _with_grade(data: pd.DataFrame) -> pd.DataFrame:
    """A categorical column of integer codes, as a lab system exports them (from the real radius)."""
    return data.assign(grade=pd.cut(data["mean_radius"], [0, 12, 16, 100], labels=[1, 2, 3]).astype(int))


def _spoil(frame: pd.DataFrame, rows) -> pd.DataFrame:
    out = frame.astype({"grade": object})
    out.loc[rows, "grade"] = "n/a?"
    return out


def _suite_with_grade(root):
    path = root / "expectations" / "my_cells.json"
    suite = json.loads(path.read_text())
    for e in suite["expectations"]:
        if e["type"] == "expect_table_columns_to_match_set":
            e["kwargs"]["column_set"].append("grade")
    suite["expectations"].append(
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "grade", "value_set": [1, 2, 3]}}
    )
    path.write_text(json.dumps(suite))


def test_the_gate_counts_bad_cells_not_the_columns_rows(example_project, tmp_path):
    from modelmill.quality.validate import validate_frame

    root, spec, data = example_project
    _suite_with_grade(root)
    frame = _spoil(_with_grade(data), range(0, 100, 10))  # 10 bad cells of 569
    frame["grade"] = frame["grade"].astype(str)  # as a CSV reader gives it: the whole column is text now
    report = validate_frame(frame, root / "expectations" / "my_cells.json", detail=True)
    by = {o.label: o for o in report.outcomes}
    assert not report.success
    assert by["modelmill_cell_type(grade)"].unexpected_count == 10 and by["modelmill_cell_type(grade)"].examples == [
        "n/a?"
    ]
    assert "10 of its 569 cells are not" in by["modelmill_cell_type(grade)"].message
    assert by["expect_column_values_to_be_in_set(grade)"].success  # the other 559 are codes in the set
    clean = validate_frame(_with_grade(data).astype({"grade": str}), root / "expectations" / "my_cells.json")
    assert clean.success  # codes read as text are still the suite's numbers


@pytest.mark.flow
def test_scoring_sets_aside_only_the_rows_with_a_bad_cell(example_project, capsys):
    root, spec, data = example_project
    _suite_with_grade(root)
    spec["features"]["categorical"] = ["grade"]
    write_example_spec(root, spec, _with_grade(data))
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    batch = (
        _with_grade(data).drop(columns=["diagnosis"]).sample(500, random_state=1, replace=True).reset_index(drop=True)
    )
    bad = np.arange(7, 500, 50)
    _spoil(batch, bad).to_csv(root / "batch.csv", index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(root / "batch.csv"), "--output", str(root / "scores.parquet")
    )
    assert code == 0, err
    scored, rejected = pd.read_parquet(root / "scores.parquet"), pd.read_parquet(root / "scores.rejected.parquet")
    assert len(scored) == 490 and len(rejected) == 10
    assert set(rejected["rejected_because"]) == {"grade is a number"}
    assert "10 rows rejected" in out


@pytest.mark.flow
def test_both_flavours_of_the_champion_take_raw_rows_and_agree(example_project, capsys):
    import mlflow

    from conftest import mlflow_client
    from modelmill.config.settings import Settings

    root, spec, data = example_project
    _suite_with_grade(root)
    spec["features"]["categorical"] = ["grade"]
    spec["source"]["thousands"] = ","
    write_example_spec(root, spec, _with_grade(data))
    assert run_cli(capsys, "run", "my_cells")[0] == 0
    mlflow_client(Settings())
    typed = _with_grade(data).drop(columns=["diagnosis"]).head(60)
    raw = typed.astype(str)  # every cell as text, as a CSV or a form gives it
    raw["worst_area"] = typed["worst_area"].map(lambda v: f"{v:,.2f}")  # with the source's thousands separator
    raw.loc[3, "grade"] = None  # a missing code
    sk = mlflow.sklearn.load_model("models:/modelmill-my_cells@champion")
    py = mlflow.pyfunc.load_model("models:/modelmill-my_cells@champion")
    served = py.predict(raw)  # the same pipeline: the data's labels and the very same probabilities
    np.testing.assert_array_equal(served["prediction"], np.where(sk.predict(raw) == 1, "malignant", "benign"))
    np.testing.assert_array_equal(
        served[["probability_benign", "probability_malignant"]].to_numpy(), sk.predict_proba(raw)
    )
    on_typed = sk.predict_proba(typed.assign(grade=typed["grade"].astype(object).where(typed.index != 3, None)))
    np.testing.assert_allclose(sk.predict_proba(raw), on_typed)  # raw rows typed exactly as training typed them
