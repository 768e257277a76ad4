"""A user's own pipeline, exactly as the docs (Your own data) document it: a spec and a suite, no code, on a
CSV path or a Parquet URL (served over loopback). The data is the real Wisconsin set."""

from __future__ import annotations

from conftest import last_run, registry_state, run_cli, serve_directory, write_example_spec
from modelmill.config.settings import Settings


def test_docs_example_runs_from_a_csv_path_and_promotes(example_project, capsys):
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    s = Settings()
    run = last_run(s, "my_cells")
    assert run.data.metrics["test/roc_auc"] > 0.95
    assert run.data.params["data.source.cells.csv"].startswith("file://")
    assert registry_state(s, "my_cells")[1] == "1"
    code, out, _ = run_cli(capsys, "list")
    assert any(ln.startswith("my_cells") and "v1" in ln for ln in out.splitlines())


def test_the_same_spec_reads_a_parquet_url(example_project, capsys):
    root, spec, data = example_project
    served = root / "served"
    served.mkdir()
    data.to_parquet(served / "cells.parquet")
    with serve_directory(served) as url:
        spec["source"] = {"url": f"{url}/cells.parquet", "format": "parquet"}
        write_example_spec(root, spec)
        code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert last_run(Settings(), "my_cells").data.params["data.source.cells.parquet"].startswith("http://127.0.0.1")


def test_a_renamed_column_is_rejected_by_the_suite(example_project, capsys):
    root, spec, data = example_project
    data.rename(columns={"worst_area": "worst_area_mm2"}).to_csv(root / "pipelines" / "data" / "cells.csv", index=False)
    write_example_spec(root, spec)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 3, out + err
    run = last_run(Settings(), "my_cells")
    assert "expect_table_columns_to_match_set" in run.data.tags["modelmill.failed_expectations"]
    assert registry_state(Settings(), "my_cells")[0] == []


def test_an_empty_file_is_a_one_line_error(example_project, capsys):
    root, spec, _ = example_project
    (root / "pipelines" / "data" / "cells.csv").write_bytes(b"")
    write_example_spec(root, spec)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1
    assert any("cells.csv is empty" in ln for ln in (out + err).splitlines())
