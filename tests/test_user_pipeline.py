"""A user's own pipeline, exactly as the README documents it: a spec and a suite, no code, on a
CSV path or a Parquet URL (served over loopback). The data is the real Wisconsin set."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, last_run, modelmill_env, registry_state, run_cli, serve_directory
from modelmill.settings import Settings

README = (REPO / "README.md").read_text()


def _block(marker: str, lang: str) -> str:
    m = re.search(rf"<!-- {marker} -->\s*```{lang}\n(.*?)```", README, re.S)
    assert m, f"README lost its {marker} block"
    return m.group(1)


@pytest.fixture
def project(tmp_path, monkeypatch, prefect_api):
    from sklearn.datasets import load_breast_cancer

    spec = yaml.safe_load(_block("example-spec", "yaml"))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "my_cells.json").write_text(_block("example-suite", "json"))
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    data = frame[[*spec["features"]["numeric"], "diagnosis"]]
    (tmp_path / "pipelines" / "data").mkdir()
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "pipelines")
    return tmp_path, spec, data


def _write_spec(root, spec):
    (root / "pipelines" / "my_cells.yaml").write_text(yaml.safe_dump(spec))


def test_readme_example_runs_from_a_csv_path_and_promotes(project, capsys):
    root, spec, data = project
    data.to_csv(root / "pipelines" / "data" / "cells.csv", index=False)
    _write_spec(root, spec)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    s = Settings()
    run = last_run(s, "my_cells")
    assert run.data.metrics["test/roc_auc"] > 0.95
    assert run.data.params["data.source.cells.csv"].startswith("file://")
    assert registry_state(s, "my_cells")[1] == "1"
    code, out, _ = run_cli(capsys, "list")
    assert any(ln.startswith("my_cells") and "v1" in ln for ln in out.splitlines())


def test_the_same_spec_reads_a_parquet_url(project, capsys):
    root, spec, data = project
    served = root / "served"
    served.mkdir()
    data.to_parquet(served / "cells.parquet")
    with serve_directory(served) as url:
        spec["source"] = {"url": f"{url}/cells.parquet", "format": "parquet"}
        _write_spec(root, spec)
        code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert last_run(Settings(), "my_cells").data.params["data.source.cells.parquet"].startswith("http://127.0.0.1")


def test_a_renamed_column_is_rejected_by_the_suite(project, capsys):
    root, spec, data = project
    data.rename(columns={"worst_area": "worst_area_mm2"}).to_csv(root / "pipelines" / "data" / "cells.csv", index=False)
    _write_spec(root, spec)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 3, out + err
    run = last_run(Settings(), "my_cells")
    assert "expect_table_columns_to_match_set" in run.data.tags["modelmill.failed_expectations"]
    assert registry_state(Settings(), "my_cells")[0] == []


def test_an_empty_file_is_a_one_line_error(project, capsys):
    root, spec, _ = project
    (root / "pipelines" / "data" / "cells.csv").write_bytes(b"")
    _write_spec(root, spec)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1
    assert any("cells.csv is empty" in ln for ln in (out + err).splitlines())
