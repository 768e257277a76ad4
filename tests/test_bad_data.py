"""Bad data is rejected at the gate with a one-line cause, or handled — never silently wrong.

Pure checks on tiny frames first, then the docs' example pipeline on the real Wisconsin data with
the damage a user's CSV really has: tripled rows, a number written "3,913", infinities, a value
of 1e308, a single class, and a suite that names a column the data never had.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import last_run, registry_state, run_cli, write_example_spec
from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.errors import DataRejected, SpecError
from modelmill.quality.rules import deduplicate, findings
from modelmill.quality.validate import ExpectationOutcome, ValidationReport, gate


def _spec(**over) -> PipelineSpec:
    base = dict(
        name="t", domain="d", description="x", source={"path": "x.csv"}, target="y", features={"numeric": ["a", "b"]}, suite="s.json",
        problem="tabular_classification", baseline={"name": "p", "estimator": "dummy_prior"}, candidates=[{"name": "l", "estimator": "logistic_regression"}],
        metric={"name": "roc_auc"}, schedule={"cron": "0 6 * * 1"}, split={"folds": 3},
    )  # fmt: skip
    return PipelineSpec(**{**base, **over})


def _frame(n=20, **cols) -> pd.DataFrame:
    df = pd.DataFrame({"a": np.arange(n, dtype=float), "b": np.linspace(0, 1, n), "y": ["p", "q"] * (n // 2)})
    for k, v in cols.items():
        df[k] = v
    return df


def _messages(spec, df, classification=True) -> list[str]:
    return [o.message for o in findings(spec, df, classification=classification)]


def test_a_clean_frame_has_no_findings():
    assert _messages(_spec(), _frame()) == []


def test_a_number_written_with_a_thousands_separator_is_named_with_its_count():
    b = pd.Series(["0.1"] * 20, dtype="str")
    b.iloc[[2, 5]] = ["3,913", "n/a"]
    (msg,) = _messages(_spec(), _frame(b=b))
    assert msg == "column b is declared numeric but 2 values are not numbers (e.g. '3,913')"


def test_numeric_strings_are_numbers():
    assert _messages(_spec(), _frame(b=pd.Series([str(v) for v in np.linspace(0, 1, 20)], dtype="str"))) == []


def test_nan_inf_and_overflow_are_each_named():
    a = np.arange(20, dtype=float)
    a[[1, 2]] = np.nan
    a[3] = np.inf
    a[4] = -np.inf
    a[5] = 1e308
    msgs = _messages(_spec(), _frame(a=a))
    assert msgs == [
        "numeric feature a has 2 missing values",
        "numeric feature a has 2 infinite values",
        "numeric feature a has 1 values too large to train on (overflow: |x| > 1e+150)",
    ]


def test_a_single_class_and_too_small_classes_are_rejected():
    (msg,) = _messages(_spec(), _frame(y=["p"] * 20))
    assert msg == "target y has a single class 'p' (20 rows): nothing to learn"
    y = ["p"] * 17 + ["q"] * 3  # 3 folds + a test row need 4 of each class
    (msg,) = _messages(_spec(), _frame(y=y))
    assert msg == "target y has 1 classes with fewer than 4 rows ('q': 3)"
    assert _messages(_spec(), _frame(y=y), classification=False) == []  # not a classifier: no class rules


def test_duplicates_are_dropped_or_rejected_as_the_spec_says():
    df = pd.concat([_frame(), _frame().head(5)], ignore_index=True)
    out, n = deduplicate(_spec(), df)
    assert n == 5 and len(out) == 20 and not out.duplicated().any()
    assert deduplicate(_spec(duplicates="keep"), df)[1] == 0
    (msg,) = _messages(_spec(duplicates="reject"), df)
    assert msg == "5 rows are exact duplicates of earlier rows (duplicates: reject)"
    ids = _frame(id=[1, 2, 3, 4] * 5)  # rows differ, ids repeat
    kept, n = deduplicate(_spec(roles={"id": "id"}), ids)
    assert n == 16
    # the test rows' keys name their row in the snapshot, through the frames pandas derives
    from modelmill.learn.kinds.base import ProblemKind

    repeats = _frame(id=[1, 1, 2, 2, 3] * 4)  # kept: rows 0, 2 and 4
    kept, _ = deduplicate(_spec(roles={"id": "id"}), repeats)
    derived = kept.assign(z=1)[["id", "y"]]
    keys = ProblemKind.test_keys(_spec(roles={"id": "id"}), derived, [1, 2])
    assert keys.to_dict("list") == {"id": [2, 3], "row": [2, 4]}
    assert _messages(_spec(roles={"id": "id"}, duplicates="reject"), ids) == [
        "16 rows repeat an earlier id (duplicates: reject)"
    ]


def test_repeated_rows_are_the_ones_pandas_finds_without_pandas_memory():
    """Rows are hashed before they are compared: the same rows as ``DataFrame.duplicated`` for
    the values pandas counts as equal though they differ (-0.0, NaNs, 1 and 1.0), and for
    colliding hashes."""
    from modelmill.quality import rules

    nan_bits = np.frombuffer(np.array([0x7FF8000000000001], dtype=np.uint64).tobytes(), dtype=np.float64)[
        0
    ]  # another NaN
    df = pd.DataFrame({
        "x": [0.0, -0.0, np.nan, nan_bits, 1.5, 1.5, 2.0],
        "s": pd.array(["a", "a", None, None, "b", "b", "b"], dtype="str"),
        "c": pd.Categorical(["u", "u", "v", "v", None, None, "u"]),
        "o": pd.Series([1, 1.0, "t", "t", None, None, "z"], dtype=object),
        "i": pd.array([1, 1, None, None, 3, 3, 3], dtype="Int64"),
        "img": [np.zeros(3), np.zeros(3), np.ones(3), np.ones(3), None, None, np.ones(3)],
    })  # fmt: skip
    found = rules.duplicated(_spec(), df)
    assert found.tolist() == [False, True, False, True, False, True, False]
    assert found.tolist() == rules._hashable(df).duplicated().tolist()
    with pytest.MonkeyPatch.context() as mp:  # every hash the same: each candidate is compared exactly
        mp.setattr(rules, "_column_hash", lambda col: np.zeros(len(col), dtype=np.uint64))
        assert rules.duplicated(_spec(), df).tolist() == found.tolist()
    import tracemalloc

    rng = np.random.default_rng(0)
    big = pd.DataFrame({f"c{j}": rng.integers(0, 2, 100_000) for j in range(21)})  # 2M distinct rows possible
    tracemalloc.start()
    try:
        n = int(rules.duplicated(_spec(), big).sum())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == int(big.duplicated().sum()) > 0
    assert peak < 64 * len(big)  # bytes a row; pandas' own: a label per cell, ~200 bytes a row here


def _o(expectation, column=None, success=False, raised=False, count=None, message=None):
    return ExpectationOutcome(expectation, column, {}, success, raised, count, None, None, message)


def test_the_gate_tells_bad_values_from_a_rule_that_errored():
    report = ValidationReport("s", False, 100, [
        _o("expect_column_values_to_be_between", "age", count=7),
        _o("expect_column_values_to_be_between", "b", raised=True, message="Column values, min_value, and max_value must either be None or of the same type."),
        _o("expect_column_values_to_not_be_null", "c", success=True),
    ])  # fmt: skip
    with pytest.raises(DataRejected) as e:
        gate(report, "t")
    msg = str(e.value)
    assert "2 of 3 checks failed" in msg and "expect_column_values_to_be_between(age) found 7 bad values" in msg
    assert "expect_column_values_to_be_between(b) errored: Column values" in msg and "\n" not in msg


def test_a_suite_naming_a_column_the_data_never_had_is_a_suite_error():
    missing = _o(
        "expect_column_values_to_not_be_null",
        "nucleus",
        raised=True,
        message='Error: The column "nucleus" in BatchData does not exist.',
    )
    with pytest.raises(SpecError, match="suite s names column nucleus which the data does not have"):
        gate(ValidationReport("s", False, 100, [missing, _o("expect_table_columns_to_match_set", success=True)]), "t")
    # The suite's own schema check says the data lost the column: that is the data's fault.
    with pytest.raises(DataRejected):
        gate(ValidationReport("s", False, 100, [missing, _o("expect_table_columns_to_match_set")]), "t")


# -- the docs' example pipeline on the real Wisconsin data, through the CLI ----------------------------
def _run(root, spec, data, capsys, **spec_changes):
    write_example_spec(root, spec, data, **spec_changes)
    code, out, err = run_cli(capsys, "run", "my_cells")
    return code, out + err


def test_tripled_rows_are_dropped_before_the_split_and_the_metric_does_not_inflate(example_project, capsys):
    root, spec, data = example_project
    code, out = _run(root, spec, data, capsys)
    assert code == 0, out
    clean = last_run(Settings(), "my_cells").data.metrics["test/roc_auc"]
    code, out = _run(root, spec, pd.concat([data] * 3, ignore_index=True), capsys)
    assert code == 0, out
    assert "dropped 1138 repeated rows before the split" in out
    run = last_run(Settings(), "my_cells")
    assert run.data.params["data.duplicates_dropped"] == "1138" and run.data.params["split.test_rows"] == "143"
    assert run.data.metrics["test/roc_auc"] == clean < 1.0  # the leak would read 1.000


def test_duplicates_reject_stops_the_run_at_the_gate(example_project, capsys):
    root, spec, data = example_project
    code, out = _run(root, spec, pd.concat([data] * 3, ignore_index=True), capsys, duplicates="reject")
    assert code == 3, out
    assert "1138 rows are exact duplicates of earlier rows (duplicates: reject)" in out
    assert registry_state(Settings(), "my_cells")[0] == []


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("text", "column worst_concavity is declared numeric but 2 values are not numbers (e.g. '3,913')"),
        ("inf", "numeric feature worst_concavity has 1 infinite values"),
        ("huge", "numeric feature worst_concavity has 1 values too large to train on (overflow"),
        ("one_class", "target diagnosis has a single class 'benign' (357 rows): nothing to learn"),
    ],
)
def test_damaged_user_data_is_a_one_line_rejection_naming_column_and_count(example_project, capsys, damage, fragment):
    root, spec, data = example_project
    bad = data.copy()
    if damage == "text":
        bad["worst_concavity"] = bad["worst_concavity"].astype(str)
        bad.loc[[3, 9], "worst_concavity"] = ["3,913", "3,913"]
    elif damage == "inf":
        bad.loc[4, "worst_concavity"] = np.inf
    elif damage == "huge":
        bad.loc[4, "worst_concavity"] = 1e308
    else:
        bad = bad[bad["diagnosis"] == "benign"]
    code, out = _run(root, spec, bad, capsys)
    assert code == 3, out
    lines = [ln for ln in out.splitlines() if fragment in ln]
    assert lines, out
    assert "Traceback" not in out and "NaN" not in out
    run = last_run(Settings(), "my_cells")
    assert run.info.status == "FAILED" and fragment in run.data.tags["modelmill.error"]
    assert registry_state(Settings(), "my_cells")[0] == []


def test_a_suite_naming_a_missing_column_is_exit_1_not_data_rejected(example_project, capsys):
    import json

    root, spec, data = example_project
    suite_path = root / "expectations" / "my_cells.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nucleus_size"}})
    suite_path.write_text(json.dumps(suite))
    code, out = _run(root, spec, data, capsys)
    assert code == 1, out
    assert "suite my_cells names column nucleus_size which the data does not have" in out
    assert "data rejected" not in out


def test_check_is_a_dry_run_with_the_gate_table_and_the_plan(example_project, capsys):
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out, err = run_cli(capsys, "check", "my_cells")
    assert code == 0, out + err
    assert "my_cells: 569 rows x 6 columns" in out
    assert any(
        ln.startswith("expect_column_values_to_be_between(mean_radius)") and " pass " in ln for ln in out.splitlines()
    )
    assert (
        "candidate logistic_regression: logistic_regression grid {'C': [0.1, 1.0]}" in out and "the gate passes" in out
    )
    assert not (root / "home" / "mlflow.db").exists() and not (root / "home" / "snapshots").exists(), (
        "a dry run wrote a store or a snapshot"
    )

    bad = data.copy()
    bad["worst_concavity"] = bad["worst_concavity"].astype(str)
    bad.loc[[3, 9], "worst_concavity"] = ["3,913", "3,913"]
    write_example_spec(root, spec, bad)
    code, out, err = run_cli(capsys, "check", "my_cells")
    assert code == 3
    line = next(ln for ln in out.splitlines() if ln.startswith("modelmill_numeric_type(worst_concavity)"))
    assert "FAIL" in line and "2 of 569" in line
    assert "declared numeric but 2 values are not numbers" in err
    assert not (root / "home" / "mlflow.db").exists()


def test_a_table_with_a_few_null_features_trains_with_impute_and_the_champion_fills_them(example_project, capsys):
    import mlflow

    root, spec, data = example_project
    holes = data.copy()
    holes.loc[[5, 50, 150, 300], "mean_texture"] = np.nan
    holes.loc[[7, 70], "worst_area"] = np.nan
    code, out = _run(root, spec, holes, capsys)  # no impute: the gate names the column and the count
    assert code == 3 and "numeric feature mean_texture has 4 missing values" in out, out
    code, out = _run(root, spec, holes, capsys, impute={"numeric": "median", "indicator": True})
    assert code == 0, out
    run = last_run(Settings(), "my_cells")
    assert run.data.params["spec.impute.numeric"] == "median" and run.data.metrics["test/roc_auc"] > 0.95
    model = mlflow.pyfunc.load_model("models:/modelmill-my_cells@champion")
    raw = holes.drop(columns=["diagnosis"]).iloc[[5, 7, 8]].astype("float64")  # rows with and without holes
    scores = model.predict(raw)
    assert (
        len(scores) == 3
        and np.isfinite(scores["probability_malignant"]).all()
        and set(scores["prediction"]) <= {"malignant", "benign"}
    )


def test_scoring_honours_mostly_of_a_not_null_rule_where_the_champion_imputes(example_project, capsys, tmp_path):
    import json

    root, spec, data = example_project
    suite = json.loads((root / "expectations" / "my_cells.json").read_text())
    suite["expectations"].append(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "mean_texture", "mostly": 0.9}}
    )
    (root / "expectations" / "my_cells.json").write_text(json.dumps(suite))
    code, out = _run(root, spec, data, capsys, impute={"numeric": "median"})
    assert code == 0, out
    batch = data.drop(columns=["diagnosis"]).head(40).copy()
    batch.loc[[3, 11], "mean_texture"] = np.nan  # 5 %: within the rule's mostly, and the champion imputes them
    batch.to_csv(tmp_path / "few.csv", index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(tmp_path / "few.csv"), "--output", str(tmp_path / "few.parquet")
    )
    assert code == 0 and "scored 40 of 40 rows" in out, out + err
    assert pd.read_parquet(tmp_path / "few.parquet")["probability"].notna().all()
    batch.loc[range(20, 30), "mean_texture"] = np.nan  # 30 %: beyond mostly, the rows with a hole are set aside
    batch.to_csv(tmp_path / "many.csv", index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(tmp_path / "many.csv"), "--output", str(tmp_path / "many.parquet")
    )
    assert code == 0 and "scored 28 of 40 rows" in out, out + err
    assert set(pd.read_parquet(tmp_path / "many.rejected.parquet")["rejected_because"]) == {
        "expect_column_values_to_not_be_null(mean_texture)"
    }


def test_impute_on_a_kind_that_cannot_use_it_is_a_spec_error(tmp_path):
    from modelmill.learn.kinds import get_kind

    spec = _spec(problem="text_classification", features={"text": "t"}, impute={"numeric": "median"}, metric={"name": "accuracy"},
                 baseline={"name": "p", "estimator": "dummy_prior"}, candidates=[{"name": "l", "estimator": "linear_svc"}])  # fmt: skip
    with pytest.raises(SpecError, match="`impute` is for tabular features; text_classification cannot use it"):
        get_kind("text_classification").check_spec(spec)


def test_declared_columns_missing_from_the_data_are_named(example_project, capsys):
    root, spec, data = example_project
    code, out = _run(root, spec, data.drop(columns=["worst_concavity"]), capsys, suite="my_cells.json")
    assert code == 3 and "declared columns missing from the data: worst_concavity" in out, out


def test_ids_and_extra_columns_with_roles_id_and_drop(example_project, capsys):
    import json

    root, spec, data = example_project
    extra = data.copy()
    extra.insert(0, "sample_id", [f"S{i:04d}" for i in range(len(extra))])
    extra["lab_note"] = "scanned"
    extra = pd.concat([extra, extra.head(10)], ignore_index=True)  # ten samples entered twice
    suite_path = root / "expectations" / "my_cells.json"
    suite = json.loads(suite_path.read_text())
    for e in suite["expectations"]:
        if e["type"] == "expect_table_columns_to_match_set":
            e["kwargs"] = {"column_set": [*e["kwargs"]["column_set"], "sample_id"], "exact_match": False}
    suite_path.write_text(json.dumps(suite))
    code, out = _run(root, spec, extra, capsys, roles={"id": "sample_id"}, drop=["lab_note"])
    assert code == 0, out
    assert "dropped 10 repeated rows before the split" in out
    import mlflow
    import pyarrow.parquet as pq

    run = last_run(Settings(), "my_cells")
    assert run.data.params["data.duplicates_dropped"] == "10"
    columns = pq.read_schema(run.data.tags["modelmill.snapshot"]).names
    assert "lab_note" not in columns and "sample_id" in columns  # dropped at ingest; the id kept for lineage
    inputs = mlflow.pyfunc.load_model("models:/modelmill-my_cells@champion").metadata.get_input_schema().input_names()
    assert "sample_id" not in inputs and set(inputs) == set(spec["features"]["numeric"])  # the id is never a feature
