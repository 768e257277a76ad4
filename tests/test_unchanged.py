"""A scheduled rerun on unchanged data, spec, suite and code does not retrain: it ends as
``skipped``, registers nothing and links the run it repeats; ``--force`` and any change retrain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import last_run, registry_state, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _run(capsys, *extra):
    code, out, err = run_cli(capsys, "run", "my_cells", *extra)
    return code, out + err


def test_unchanged_reruns_are_skipped_and_any_change_retrains(example_project, capsys, monkeypatch, tmp_path):
    root, spec, data = example_project
    csv = root / "pipelines" / "data" / "cells.csv"
    data.to_csv(csv, index=False)
    write_example_spec(root, spec)
    code, out = _run(capsys)
    assert code == 0, out
    first = last_run(Settings(), "my_cells")
    assert registry_state(Settings(), "my_cells")[0] == [1]

    code, out = _run(capsys)  # nothing changed
    assert code == 0, out
    assert "source files unchanged: snapshot" in out and "reused without parsing" in out  # a checksum, not a parse
    skipped = last_run(Settings(), "my_cells")
    tags = skipped.data.tags
    assert skipped.info.status == "FINISHED" and tags["modelmill.decision"] == "skipped_unchanged"
    assert (
        tags["modelmill.matched_run"] == first.info.run_id
        and tags["modelmill.fingerprint"] == first.data.tags["modelmill.fingerprint"]
    )
    assert registry_state(Settings(), "my_cells")[0] == [1], "a skipped run registered a model"
    row = next(ln for ln in out.splitlines() if ln.startswith("my_cells "))
    assert "skipped" in row and "unchanged: roc_auc" in row
    assert "test/roc_auc" not in skipped.data.metrics  # nothing was evaluated again
    # `modelmill trigger` sums up the same finished run the same way, from MLflow alone
    from modelmill.cli.service import run_summary
    from modelmill.config.spec import load_spec
    from modelmill.ops.report import summary_table
    from modelmill.registry.tracking import Tracker

    settings = Settings()
    summary = run_summary(Tracker.of(settings), load_spec("my_cells", settings), skipped, "COMPLETED")
    (triggered,) = summary_table([summary]).splitlines()[2:]
    assert triggered.split()[:4] == ["my_cells", "skipped", "1", "skipped"] and "unchanged: roc_auc" in triggered
    assert triggered.split("unchanged: ")[1] == row.split("unchanged: ")[1]

    code, out = _run(capsys, "--force")
    assert code == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2], out

    # A changed spec, suite or data each retrain.
    write_example_spec(root, {**spec, "promotion": {"margin": 0.02}})
    assert _run(capsys)[0] == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2, 3]
    suite_path = root / "expectations" / "my_cells.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "worst_area"}})
    suite_path.write_text(json.dumps(suite))
    assert _run(capsys)[0] == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2, 3, 4]
    data.iloc[:-1].to_csv(csv, index=False)
    code, out = _run(capsys)
    assert code == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2, 3, 4, 5]
    assert "reused without parsing" not in out and "(568 rows)" in out  # a changed file is parsed again
    assert _run(capsys)[0] == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2, 3, 4, 5]  # and unchanged again
    assert last_run(Settings(), "my_cells").data.tags["modelmill.decision"] == "skipped_unchanged"

    # The runs table that modelmill's links open filters the skipped reruns out, and only them
    from conftest import mlflow_client
    from modelmill.registry.runview import WITHOUT_SKIPS

    client = mlflow_client(Settings())
    everything = client.search_runs([skipped.info.experiment_id], max_results=1000)
    shown = client.search_runs([skipped.info.experiment_id], WITHOUT_SKIPS, max_results=1000)
    skips = {r.info.run_id for r in everything if r.data.tags.get("modelmill.decision") == "skipped_unchanged"}
    assert len(skips) == 2 and {r.info.run_id for r in shown} == {r.info.run_id for r in everything} - skips

    # A change to modelmill's own code retrains, committed or not: the fingerprint holds a digest
    # of the package's source files. Here the package is read from a copy, which is edited.
    import modelmill
    from modelmill.pipeline import stages

    code_copy = tmp_path / "modelmill"
    shutil.copytree(Path(modelmill.__file__).parent, code_copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stages, "code_roots", lambda: [code_copy])
    assert _run(capsys)[0] == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2, 3, 4, 5]  # same bytes: same
    with open(code_copy / "learn" / "evaluation.py", "a") as f:
        f.write("\n# an edit to the code\n")
    code, out = _run(capsys)
    assert code == 0 and registry_state(Settings(), "my_cells")[0] == [1, 2, 3, 4, 5, 6], out
    assert last_run(Settings(), "my_cells").data.tags["modelmill.decision"] != "skipped_unchanged"


def test_a_run_with_capped_epochs_never_stands_in_for_a_full_one(example_project, capsys, monkeypatch):
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    assert run_cli(capsys, "run", "my_cells")[0] == 0  # the tests' MODELMILL_MAX_EPOCHS=2
    monkeypatch.delenv("MODELMILL_MAX_EPOCHS")
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert last_run(Settings(), "my_cells").data.tags["modelmill.decision"] != "skipped_unchanged"
    assert run_cli(capsys, "run", "my_cells")[0] == 0
    assert last_run(Settings(), "my_cells").data.tags["modelmill.decision"] == "skipped_unchanged"


def test_a_command_builds_one_mlflow_client(example_project, capsys, monkeypatch):
    """Every stage and the command itself share one Tracker (one MLflow client) per store."""
    from modelmill.registry import tracking

    built = []
    original = tracking.Tracker.__init__

    def counted(self, settings):
        built.append(settings.tracking_uri)
        original(self, settings)

    monkeypatch.setattr(tracking.Tracker, "__init__", counted)
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out = _run(capsys)
    assert code == 0, out
    assert built == [Settings().tracking_uri]
    code, out = _run(capsys)  # skipped: the same client again
    assert code == 0 and last_run(Settings(), "my_cells").data.tags["modelmill.decision"] == "skipped_unchanged"
    assert len(built) == 1
