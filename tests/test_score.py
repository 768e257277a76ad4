"""`modelmill score`: the champion scores a batch file; rows the suite's feature rules refuse are
counted and set aside with their reason; the output carries the model version and the input's
sha256; the batch is an MLflow run of its own with the drift of features and scores."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from conftest import mlflow_client, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _batch(data: pd.DataFrame) -> pd.DataFrame:
    """40 real rows as a lab would send them (no label), three of them broken."""
    batch = data.drop(columns=["diagnosis"]).sample(40, random_state=3).reset_index(drop=True).astype(object)
    batch.loc[5, "mean_radius"] = -4.0  # the suite's range
    batch.loc[9, "worst_area"] = "3,913"  # not a number
    batch.loc[17, "mean_radius"] = None  # the suite's not-null rule
    return batch


def _trained(example_project, capsys, **source):
    root, spec, data = example_project
    write_example_spec(root, spec | {"source": spec["source"] | source}, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    return root, spec, data


def test_the_champion_scores_a_batch_and_sets_bad_rows_aside(example_project, capsys, tmp_path):
    import mlflow

    root, spec, data = _trained(example_project, capsys, read_options={"sep": ","})  # a CSV-only option
    batch = _batch(data)
    src = root / "pipelines" / "data" / "batch.csv"
    batch.to_csv(src, index=False)
    out_path = tmp_path / "scores" / "batch.parquet"
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(out_path))
    assert code == 0, out + err
    assert "champion v1 scored 37 of 40 rows" in out and "3 rows rejected by the suite's feature rules" in out
    # 37 rows are too few for their PSI to mean drift, and the line says so
    assert "(on 37 rows: below 100, chance alone gives a PSI this large; not drift)" in out

    scores = pd.read_parquet(out_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert len(scores) == 37 and (scores["model_version"] == "1").all() and (scores["input_sha256"] == digest).all()
    assert set(scores["prediction"]) == {"malignant", "benign"} and scores["probability"].between(0, 1).all()
    meta = pq.read_schema(out_path).metadata
    assert meta[b"modelmill.model_version"] == b"1" and meta[b"modelmill.input_sha256"] == digest.encode()

    rejected = pd.read_parquet(out_path.with_name("batch.rejected.parquet"))
    assert sorted(rejected["rejected_because"]) == sorted(
        ["expect_column_values_to_be_between(mean_radius)", "worst_area is a number", "mean_radius is present"]
    )

    # the same rows through the registered champion give the same predictions
    settings = Settings()
    mlflow_client(settings)
    champion = mlflow.pyfunc.load_model("models:/modelmill-my_cells@champion")
    good = batch.drop(index=[5, 9, 17])  # raw rows as the file gives them: no casting by hand
    assert all(dtype == object for dtype in good.dtypes)  # noqa: E721 - dtype equality, not type identity
    served = champion.predict(good)  # the data's labels and each class's probability, as its signature says
    np.testing.assert_array_equal(served["prediction"].to_numpy(), scores["prediction"].to_numpy())
    np.testing.assert_allclose(served["probability_malignant"], scores["probability"], atol=1e-6)
    assert [c.name for c in champion.metadata.get_output_schema().inputs] == [
        "prediction",
        "probability_benign",
        "probability_malignant",
        "threshold",
        "rejected_because",
    ]

    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name("modelmill/my_cells/scoring")
    (run,) = client.search_runs([experiment.experiment_id])
    m = run.data.metrics
    assert run.info.status == "FINISHED" and (m["score/rows"], m["score/scored"], m["score/rejected"]) == (40, 37, 3)
    assert np.isfinite(m["drift/score_psi"]) and np.isfinite(m["drift/psi_max"])
    assert run.data.params["input_sha256"] == digest and run.data.tags["modelmill.model_version"] == "1"
    training = client.get_experiment_by_name("modelmill/my_cells")
    assert len(client.search_runs([training.experiment_id])) == 1  # scoring never shows up as a training run

    # the same rows as a Parquet batch: read as Parquet, without the training CSV's reader options
    good.astype(float).to_parquet(root / "pipelines" / "data" / "batch.parquet")
    code, out, err = run_cli(
        capsys,
        "score",
        "my_cells",
        "--input",
        str(root / "pipelines" / "data" / "batch.parquet"),
        "--output",
        str(tmp_path / "p.parquet"),
    )
    assert code == 0, out + err
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "p.parquet")["probability"], scores["probability"])


def test_every_batch_remembers_what_it_predicted_for_each_row(example_project, capsys, tmp_path, monkeypatch):
    """A batch's predictions are kept under the project's folder, one row per scored row, keyed
    by a digest of the row as the model takes it (the same for the same row in a CSV and in a
    Parquet copy), named on the scoring run; batches past the retention are removed."""
    from modelmill.data import scored_rows

    root, spec, data = _trained(example_project, capsys)
    batch = _batch(data)
    src = root / "pipelines" / "data" / "batch.csv"
    batch.to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / "a.parquet"))
    assert code == 0, out + err
    settings = Settings()
    (kept,) = scored_rows.batches(settings, "my_cells")
    rows, scores = pd.read_parquet(kept), pd.read_parquet(tmp_path / "a.parquet")
    assert list(rows.columns) == ["row_key", "prediction", "probability"] and len(rows) == 37  # not the rejected 3
    assert rows["row_key"].str.fullmatch(r"[0-9a-f]{16}").all() and rows["row_key"].is_unique
    np.testing.assert_array_equal(rows["prediction"], scores["prediction"])
    np.testing.assert_allclose(rows["probability"], scores["probability"])
    meta = pq.read_schema(kept).metadata
    assert (
        meta[b"modelmill.model_version"] == b"1" and meta[b"modelmill.keyed_by"] == b"digest of the row's input values"
    )
    client = mlflow_client(settings)
    (run,) = client.search_runs([client.get_experiment_by_name("modelmill/my_cells/scoring").experiment_id])
    assert run.data.tags["modelmill.scored_batch"] == kept.stem == meta[b"modelmill.batch"].decode()

    # the same good rows again, as Parquet: the same keys; the first batch is past a retention of 0 days
    good = batch.drop(index=[5, 9, 17])
    good.astype(float).to_parquet(root / "pipelines" / "data" / "again.parquet")
    monkeypatch.setenv("MODELMILL_SCORED_RETENTION_DAYS", "0")
    again = root / "pipelines" / "data" / "again.parquet"
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(again), "--output", str(tmp_path / "b.parquet")
    )
    assert code == 0, out + err
    (second,) = scored_rows.batches(settings, "my_cells")
    assert second != kept and "1 scored batches older than 0 days removed" in err
    assert pd.read_parquet(second)["row_key"].tolist() == rows["row_key"].tolist()


def test_scoring_is_refused_without_a_champion_or_with_a_missing_column(example_project, capsys, tmp_path):
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    src = root / "pipelines" / "data" / "batch.csv"
    _batch(data).to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / "s.parquet"))
    assert code == 1 and "pipeline my_cells has no champion yet: `modelmill run my_cells` first" in err
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    _batch(data).drop(columns=["worst_area"]).to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / "s.parquet"))
    assert code == 1 and "the input has no column worst_area" in err
    assert not (tmp_path / "s.parquet").exists()


def test_a_spec_can_schedule_its_scoring(example_project, capsys):
    from modelmill.config.spec import load_spec
    from modelmill_flows.deployments import build_deployments

    root, spec, data = _trained(example_project, capsys)
    _batch(data).to_csv(root / "pipelines" / "data" / "incoming.csv", index=False)
    write_example_spec(
        root,
        spec,
        scoring={"input": "data/incoming.csv", "output": "scores/incoming.parquet", "schedule": {"cron": "30 7 * * *"}},
    )
    deployments = {d.name: d for d in build_deployments([load_spec("my_cells", Settings())])}
    scheduled = deployments["my_cells-score"]
    assert scheduled.parameters == {"pipeline": "my_cells"} and scheduled.schedules[0].schedule.cron == "30 7 * * *"
    code, out, err = run_cli(capsys, "score", "my_cells")  # the spec's input and output
    assert code == 0, out + err
    assert len(pd.read_parquet(root / "pipelines" / "scores" / "incoming.parquet")) == 37
    assert (
        yaml.safe_load((root / "pipelines" / "my_cells.yaml").read_text())["scoring"]["output"]
        == "scores/incoming.parquet"
    )


def test_a_text_champion_without_probabilities_scores_sentences(tmp_path, monkeypatch, capsys, prefect_api):
    from conftest import modelmill_env, require_mirror, write_spec

    spec = write_spec(
        tmp_path,
        "review_sentiment",
        candidates=[{"name": "linear_svc", "estimator": "linear_svc", "grid": {"C": [0.5]}}],
    )
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    code, out, err = run_cli(capsys, "run", str(spec))
    assert code == 0, out + err
    batch = tmp_path / "reviews.csv"
    pd.DataFrame(
        {"sentence": ["Great phone, works perfectly.", "Awful service, never again.", None], "source": "web"}
    ).to_csv(batch, index=False)
    code, out, err = run_cli(
        capsys, "score", str(spec), "--input", str(batch), "--output", str(tmp_path / "scores.parquet")
    )
    assert code == 0, out + err
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(scores["prediction"][:2]) == [1, 0] and "decision_score" in scores and "probability" not in scores
    assert scores["decision_score"][0] > 0 > scores["decision_score"][1]


def test_relative_input_and_output_paths_resolve_from_the_working_directory(example_project, capsys, monkeypatch):
    root, spec, data = _trained(example_project, capsys)
    (root / "batches").mkdir()
    _batch(data).to_csv(root / "batches" / "today.csv", index=False)
    monkeypatch.chdir(root)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", "batches/today.csv", "--output", "scores/today.parquet"
    )
    assert code == 0, out + err
    assert len(pd.read_parquet(root / "scores" / "today.parquet")) == 37


def test_scores_are_written_only_where_a_spec_may_write_and_never_over_the_batch(example_project, capsys, tmp_path):
    root, spec, data = _trained(example_project, capsys)
    _batch(data).to_csv(root / "pipelines" / "data" / "incoming.csv", index=False)
    escaped = tmp_path / "escaped" / "evil.parquet"
    write_example_spec(root, spec, scoring={"input": "data/incoming.csv", "output": "../../../escaped/evil.parquet"})
    code, out, err = run_cli(capsys, "score", "my_cells")
    assert code == 1 and "output path ../../../escaped/evil.parquet resolves to" in err
    assert "outside the folders a spec may write" in err and not escaped.exists()

    # an operator's --output naming the batch itself (or its rejected-rows file) is refused, the batch intact
    folder = root / "pipelines" / "data"
    for batch, output in (("b.parquet", "b.parquet"), ("b.rejected.parquet", "b.parquet")):
        _batch(data).drop(index=[5, 9, 17]).astype(float).to_parquet(folder / batch)
        before = (folder / batch).read_bytes()
        code, out, err = run_cli(
            capsys, "score", "my_cells", "--input", str(folder / batch), "--output", str(folder / output)
        )
        assert code == 1 and "would overwrite the batch being scored" in err
        assert (folder / batch).read_bytes() == before


def test_the_output_folder_describes_the_latest_batch_only(example_project, capsys, tmp_path):
    root, spec, data = _trained(example_project, capsys)
    src, out_path = root / "pipelines" / "data" / "batch.csv", tmp_path / "scores.parquet"
    _batch(data).to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(out_path))
    assert code == 0 and (tmp_path / "scores.rejected.parquet").is_file(), out + err
    _batch(data).drop(index=[5, 9, 17]).to_csv(src, index=False)  # a clean batch to the same output
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(out_path))
    assert code == 0 and "rejected" not in out, out + err
    assert len(pd.read_parquet(out_path)) == 37 and not (tmp_path / "scores.rejected.parquet").exists()


def test_the_labels_travel_with_the_model_not_the_snapshot(example_project, capsys, tmp_path):
    import shutil

    root, spec, data = _trained(example_project, capsys)
    shutil.rmtree(Settings().snapshot_dir)  # the champion's training snapshot is gone (another machine, a clean-up)
    src = root / "pipelines" / "data" / "batch.csv"
    _batch(data).drop(index=[5, 9, 17]).to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / "s.parquet"))
    assert code == 0, out + err
    assert set(pd.read_parquet(tmp_path / "s.parquet")["prediction"]) == {"malignant", "benign"}
