"""A spec is input too: it cannot read files outside its folders, pick unbounded reader options or
absurd model sizes, or run a stage forever."""

from __future__ import annotations

import pytest
import yaml

from conftest import last_run, registry_state, run_cli, write_example_spec
from modelmill.config.settings import Settings
from modelmill.config.spec import load_spec
from modelmill.errors import SpecError


def _spec_file(tmp_path, **changes):
    from conftest import docs_block

    spec = {**yaml.safe_load(docs_block("example-spec", "yaml")), **changes}
    p = tmp_path / "my_cells.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (
            {"source": {"path": "c.csv", "format": "csv", "read_options": {"skiprows": 1_000_000_000}}},
            "source.read_options.skiprows",
        ),
        (
            {"source": {"path": "c.csv", "format": "csv", "read_options": {"engine": "python"}}},
            "source.read_options.engine",
        ),
        (
            {"candidates": [{"name": "rf", "estimator": "random_forest", "params": {"n_estimators": 10**12}}]},
            "n_estimators=1000000000000 is above the limit",
        ),
        (
            {"candidates": [{"name": "rf", "estimator": "random_forest", "grid": {"max_depth": [1, 2, 3, 500]}}]},
            "max_depth=[1, 2, 3, 500] is above the limit",
        ),
        (
            {
                "candidates": [
                    {
                        "name": "lr",
                        "estimator": "logistic_regression",
                        "grid": {"C": list(range(30)), "tol": list(range(30))},
                    }
                ]
            },
            "the grid has 900 points",
        ),
        (
            {"candidates": [{"name": "net", "estimator": "cnn", "params": {"max_epochs": 100_000}}]},
            "max_epochs=100000 is above the limit",
        ),
        ({"limits": {"stage_seconds": 0}}, "limits.stage_seconds"),
    ],
)
def test_unbounded_options_are_refused_when_the_spec_is_read(tmp_path, changes, fragment):
    with pytest.raises(SpecError) as e:
        load_spec(str(_spec_file(tmp_path, **changes)), Settings(home=tmp_path / "home"))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_allowed_reader_options_reach_the_reader(example_project, capsys):
    root, spec, data = example_project
    path = root / "pipelines" / "data" / "cells.csv"
    text = data.to_csv(index=False, sep=";")
    path.write_text("# exported by the lab\n" + text)
    write_example_spec(root, {**spec, "source": {**spec["source"], "read_options": {"sep": ";", "skiprows": 1}}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert last_run(Settings(), "my_cells").data.params["data.rows"] == str(len(data))


@pytest.mark.parametrize("where", ["/etc/passwd", "../outside/cells.csv", "link"])
def test_a_source_path_outside_the_allowed_folders_is_refused_before_reading(
    example_project, capsys, monkeypatch, where
):
    root, spec, data = example_project
    outside = root / "outside"  # beside the spec's folder (root/pipelines) and MODELMILL_HOME (root/home)
    outside.mkdir()
    data.to_csv(outside / "cells.csv", index=False)
    if where == "link":  # a symlink inside the spec's folder pointing out of it
        (root / "pipelines" / "data" / "cells.csv").symlink_to(outside / "cells.csv")
        where = "data/cells.csv"
    write_example_spec(root, {**spec, "source": {**spec["source"], "path": where}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1, out + err
    assert any(
        "outside the folders a spec may read" in ln and "MODELMILL_DATA_ROOTS" in ln for ln in err.splitlines()
    ), err
    assert not (root / "home" / "snapshots").exists(), "nothing was read"
    if where != "/etc/passwd":  # the same file is fine once its folder is allowed
        monkeypatch.setenv("MODELMILL_DATA_ROOTS", str(outside))
        code, out, err = run_cli(capsys, "run", "my_cells")
        assert code == 0, out + err


def test_a_stage_over_its_time_limit_fails_cleanly(example_project, capsys):
    root, spec, data = example_project
    slow = [{"name": "forest", "estimator": "random_forest", "params": {"n_estimators": 3000}}]
    write_example_spec(root, spec, data, candidates=slow, limits={"stage_seconds": 1})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1, out + err
    assert any("ran longer than its limit of 1 s (limits.stage_seconds)" in ln for ln in err.splitlines()), err
    assert "Traceback" not in out + err
    run = last_run(Settings(), "my_cells")
    assert run.info.status == "FAILED" and "limits.stage_seconds" in run.data.tags["modelmill.error"]
    assert registry_state(Settings(), "my_cells")[0] == []


def test_an_excel_workbook_is_a_source_with_its_sheet_chosen(example_project, capsys):
    import pandas as pd

    root, spec, data = example_project
    book = root / "pipelines" / "data" / "cells.xlsx"
    with pd.ExcelWriter(book, engine="openpyxl") as xw:
        pd.DataFrame({"note": ["cover sheet"]}).to_excel(xw, sheet_name="About", index=False)
        data.to_excel(xw, sheet_name="Cells", index=False)
    source = {"path": "data/cells.xlsx", "format": "xlsx", "read_options": {"sheet": "Cells"}}
    write_example_spec(root, {**spec, "source": source})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    run = last_run(Settings(), "my_cells")
    assert run.data.params["data.rows"] == str(len(data)) and run.data.metrics["test/roc_auc"] > 0.95
    write_example_spec(root, {**spec, "source": {**source, "read_options": {"sheet": "Cells", "sep": ";"}}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1 and "source.read_options: sep cannot be used with xlsx files" in err


def _laughs(levels: int = 10) -> str:
    """A 'billion laughs' grid: each level lists the one before ten times, 10**levels values in all."""
    lines = ["    grid:", "      C: &l0 [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"]
    lines += [f"      x{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines)


def test_yaml_anchors_and_aliases_are_refused_before_anything_expands(tmp_path):
    import time

    good = _spec_file(tmp_path).read_text()
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        good.split("candidates:")[0]
        + "candidates:\n  - name: lr\n    estimator: logistic_regression\n"
        + _laughs()
        + "\n"
        + good.split("candidates:")[1].split("\n", 1)[1].split("\n", 1)[1]
    )
    assert bomb.stat().st_size < 3000
    t0 = time.time()
    with pytest.raises(SpecError) as e:
        load_spec(str(bomb), Settings(home=tmp_path / "home"))
    assert time.time() - t0 < 5 and "\n" not in str(e.value)
    assert "YAML anchors (&l0) are not allowed" in str(e.value) and str(bomb) in str(e.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: x\nlabel: *nowhere\n", "YAML aliases (*nowhere) are not allowed"),
        ("name: x\nnotes: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
        ("name: x\nnotes: '" + "x" * 1_000_100 + "'\n", "more than the limit of 1,000,000"),
    ],
)
def test_specs_are_bounded_data(tmp_path, text, fragment):
    p = tmp_path / "x.yaml"
    p.write_text(text)
    with pytest.raises(SpecError, match="^" + str(p)) as e:
        load_spec(str(p), Settings(home=tmp_path / "home"))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_expectation_suites_are_bounded_data(tmp_path):
    from modelmill.quality.validate import load_suite_dict

    deep = tmp_path / "deep.json"
    deep.write_text('{"expectations": [' + "[" * 100_000 + "]" * 100_000 + "]}")
    with pytest.raises(SpecError, match="nested deeper than 32 levels"):
        load_suite_dict(deep)


def test_a_workbook_with_a_cell_far_from_its_data_is_refused_not_a_crash(example_project, tmp_path):
    """One cell written at XFD1048000 makes calamine allocate the sheet's whole span (500 GB) and
    abort the process; the workbook is refused in one line before calamine reads it."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from conftest import command_env

    root, spec, data = example_project
    book = root / "pipelines" / "data" / "cells.xlsx"
    data.head(50).to_excel(tmp_path / "plain.xlsx", index=False, sheet_name="Cells")
    with zipfile.ZipFile(tmp_path / "plain.xlsx") as src, zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            part = src.read(name)
            if name == "xl/worksheets/sheet1.xml":
                part = part.replace(b'r="A3"', b'r="XFD1048000"', 1)
            out.writestr(name, part)
    assert book.stat().st_size < 20_000
    write_example_spec(root, {**spec, "source": {"path": "data/cells.xlsx", "format": "xlsx"}})
    env = command_env()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("modelmill")), "run", "my_cells"],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "spans 1,048,000 rows x 16,384 columns" in done.stderr + done.stdout
    assert "backtrace" not in done.stderr + done.stdout
