"""support_intent and review_sentiment: one text kind, two specs, real data; empty texts and
unknown labels refused."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from conftest import (
    REPO,
    artifacts,
    assert_refused_and_nothing_lost,
    last_run,
    mlflow_client,
    modelmill_env,
    registry_state,
    require_mirror,
    run_cli,
    write_spec,
)  # fmt: skip
from modelmill.data.digests import sha256_file


def _without_the_encoder(tmp_path, name: str) -> str:
    """The shipped spec without its pretrained-encoder candidates: encoding BANKING77's 13,000
    queries takes minutes on 2 cores (tests/test_sentences.py trains those candidates on a
    few hundred real sentences)."""
    import yaml

    shipped = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
    return str(
        write_spec(
            tmp_path, name, candidates=[c for c in shipped["candidates"] if not c["estimator"].startswith("sentences_")]
        )
    )


def test_support_intent_on_banking77(env, capsys, monkeypatch, tmp_path):
    code, out, err = run_cli(capsys, "run", _without_the_encoder(tmp_path, "support_intent"))
    assert code == 0, err
    run = last_run(env, "support_intent")
    m = run.data.metrics
    # Casanueva et al. 2020: 93.66% with fine-tuned BERT on the full training set.
    assert 0.85 < m["test/accuracy"] < 0.97 and m["test/macro_f1"] > 0.85
    assert m["test/baseline_accuracy"] < 0.05 and m["test/lift_over_baseline"] > 0.8
    assert run.data.params["split.classes"] == "77"
    tables = artifacts(env, run, "tables")
    assert {"tables/per_class_f1.csv", "tables/confused_pairs.csv"} <= tables
    per = pd.read_csv(mlflow_client(env).download_artifacts(run.info.run_id, "tables/per_class_f1.csv", str(env.home)))
    assert len(per) == 77 and per.f1.between(0, 1).all()
    pairs = pd.read_csv(
        mlflow_client(env).download_artifacts(run.info.run_id, "tables/confused_pairs.csv", str(env.home))
    )
    assert (pairs["true"] != pairs["predicted"]).all() and pairs["count"].is_monotonic_decreasing


def test_review_sentiment_with_per_source_slices(env, capsys, monkeypatch, tmp_path):
    code, out, err = run_cli(capsys, "run", _without_the_encoder(tmp_path, "review_sentiment"))
    assert code == 0, err
    m = last_run(env, "review_sentiment").data.metrics
    assert m["test/roc_auc"] > 0.88 and m["test/accuracy"] > 0.8 and m["test/f1"] > 0.8
    assert m["test/lift_over_baseline"] > 0.3 and m["test/accuracy"] > m["test/baseline_accuracy"] + 0.25
    for src in ("amazon", "yelp", "imdb"):
        for k in ("accuracy", "f1", "roc_auc"):
            assert 0.6 < m[f"test/{k}.{src}"] <= 1.0, (k, src)
    assert registry_state(env, "review_sentiment")[1] == "1"
    # the spec's slices: the same per-source figures, their largest gap, and the text column's importance
    run = last_run(env, "review_sentiment")
    slices = pd.read_csv(mlflow_client(env).download_artifacts(run.info.run_id, "tables/slices.csv", str(env.home)))
    assert sorted(slices["slice"]) == ["amazon", "imdb", "yelp"] and slices["rows"].sum() == int(
        run.data.params["split.test_rows"]
    )
    for row in slices.itertuples():
        assert row.roc_auc == pytest.approx(m[f"test/roc_auc.{row.slice}"])
    assert m["slices/source.gap"] == pytest.approx(slices["roc_auc"].max() - slices["roc_auc"].min())
    importance = pd.read_csv(
        mlflow_client(env).download_artifacts(run.info.run_id, "tables/permutation_importance.csv", str(env.home))
    )
    assert list(importance["feature"]) == ["sentence"] and importance["importance_mean"].iloc[0] > 0.3


def test_empty_texts_and_unknown_intents_are_rejected(env, capsys, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(require_mirror() / "banking77", mirror / "banking77")
    train = pd.read_csv(mirror / "banking77" / "train.csv", dtype=str, keep_default_na=False)
    train.loc[3, "text"] = ""
    train.loc[7, "category"] = "crypto_moonshot"
    train.to_csv(mirror / "banking77" / "train.csv", index=False)
    modelmill_env(monkeypatch, env.home, mirror)
    before = registry_state(env, "support_intent", "banking77")
    code, out, err = run_cli(capsys, "run", "support_intent")  # not the canonical file: refused
    assert_refused_and_nothing_lost(
        env, "support_intent", "banking77", before, code, 1, out + err, "checksum mismatch for banking77/train.csv"
    )
    # A user's own copy, pinned in its spec, reaches the gate, which rejects it.
    spec = write_spec(
        tmp_path, "support_intent", source={"sha256": {"train.csv": sha256_file(mirror / "banking77" / "train.csv")}}
    )
    code, out, err = run_cli(capsys, "run", str(spec))
    run = assert_refused_and_nothing_lost(
        env, "support_intent", "banking77", before, code, 3, out + err, "data rejected"
    )
    failed = run.data.tags["modelmill.failed_expectations"]
    assert "expect_column_values_to_not_be_null(text)" in failed
    assert "expect_column_values_to_be_in_set(category)" in failed


def _shipped_on_a_subset(env, tmp_path, name: str, rows_per_group: dict[str, int], groups: list[str]) -> str:
    """The shipped spec as it is, candidates included, but only its chosen candidate and on a
    stratified subset of its real data (parquet in the spec's folder)."""
    import yaml

    from modelmill.config.spec import load_spec
    from modelmill.data.ingest import fetch_sources, read_source

    shipped = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
    spec = load_spec(name, env)
    frame = read_source(spec, fetch_sources(spec, env))
    parts = [
        rows.head(rows_per_group.get(str(values[0]), rows_per_group["*"]))
        for values, rows in frame.groupby(groups, observed=True, sort=False)
    ]
    subset = pd.concat(parts)
    folder = tmp_path / "pipelines"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    subset.reset_index(drop=True).to_parquet(folder / "data" / f"{name}.parquet")
    chosen = {"support_intent": "minilm_tfidf_svc", "review_sentiment": "minilm_finetuned"}[name]
    shipped["source"] = {"path": f"data/{name}.parquet", "format": "parquet"}
    shipped["candidates"] = [c for c in shipped["candidates"] if c["name"] == chosen]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(shipped))
    return str(folder / f"{name}.yaml")


@pytest.mark.flow
def test_the_shipped_text_pipelines_train_their_chosen_encoder_candidates(env, capsys, tmp_path):
    """The candidates the README's results table reports (the pretrained sentence encoder beside
    TF-IDF for intents, the fine-tuned encoder for sentiment) trained by their own specs, on a
    few real rows per class (the tests' epoch cap)."""
    spec = _shipped_on_a_subset(env, tmp_path, "support_intent", {"train": 10, "*": 5}, ["split", "category"])
    code, out, err = run_cli(capsys, "run", spec)
    assert code == 0, out + err
    run = last_run(env, "support_intent")
    assert run.data.params["model.candidate"] == "minilm_tfidf_svc" and run.data.params["split.train_rows"] == "770"
    m = run.data.metrics
    assert m["test/accuracy"] > 0.6 and m["test/baseline_accuracy"] < 0.05, m

    spec = _shipped_on_a_subset(env, tmp_path, "review_sentiment", {"*": 100}, ["source", "label"])
    code, out, err = run_cli(capsys, "run", spec)
    assert code == 0, out + err
    run = last_run(env, "review_sentiment")
    assert run.data.params["model.candidate"] == "minilm_finetuned"
    m = run.data.metrics
    assert m["test/roc_auc"] > 0.85 and m["test/accuracy"] > m["test/baseline_accuracy"] + 0.2, m
    assert registry_state(env, "review_sentiment")[1] is not None
