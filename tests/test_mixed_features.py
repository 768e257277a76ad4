"""A tabular spec may name a text column next to numeric and categorical ones (TF-IDF inside the
same pipeline); a declared feature group a kind cannot read is a spec error, never ignored."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import require_mirror
from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.data.catalog import CATALOG
from modelmill.data.fetch import fetch_catalog_file
from modelmill.data.readers import read_sentiment_sentences
from modelmill.errors import SpecError
from modelmill.learn.kinds import get_kind


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> pd.DataFrame:
    s = Settings(home=tmp_path_factory.mktemp("h"), data_mirror=str(require_mirror()))
    e = CATALOG["sentiment-sentences"]
    frame = read_sentiment_sentences({f.name: fetch_catalog_file(e, f, s) for f in e.files})
    return frame.assign(words=frame["sentence"].str.split().str.len().astype(float))


def _spec(problem: str = "tabular_classification", **features) -> PipelineSpec:
    return PipelineSpec(
        name="reviews", domain="customer_service", description="reviews", schedule={"cron": "0 6 * * *"},
        source={"path": "x.csv", "format": "csv"}, target="label", positive_label=1, features=features, suite="x.json",
        problem=problem, split={"method": "stratified", "test_size": 0.25, "folds": 3, "seed": 1},
        baseline={"name": "prior", "estimator": "dummy_prior"}, candidates=[{"name": "lr", "estimator": "logistic_regression", "grid": {"C": [1.0, 10.0]}}],
        metric={"name": "roc_auc", "direction": "maximize"}, options={"threshold": "fixed"} if problem == "tabular_classification" else {},
    )  # fmt: skip


def test_a_tabular_model_reads_text_next_to_numbers_and_categories(reviews):
    spec = _spec(numeric=["words"], categorical=["source"], text="sentence")
    kind = get_kind(spec.problem)
    kind.check_spec(spec)
    data = kind.prepare(spec, reviews)
    assert list(data.train[0].columns) == ["words", "source", "sentence"]
    trained = kind.train(spec, data)
    features = trained.model.named_steps["features"]
    assert [name for name, _, _ in features.transformers_][:3] == ["numeric", "categorical", "text"]
    assert len(features.named_transformers_["text"].vocabulary_) == 2000  # options.text_max_features
    auc = kind.metrics(spec, trained.model, data)["roc_auc"]
    without_text = _spec(numeric=["words"], categorical=["source"])
    kind.check_spec(without_text)
    data2 = kind.prepare(without_text, reviews)
    auc2 = kind.metrics(without_text, kind.train(without_text, data2).model, data2)["roc_auc"]
    assert auc > 0.85 and auc2 < 0.6  # the words carry the sentiment


@pytest.mark.parametrize(
    "problem, features, fragment",
    [
        (
            "text_classification",
            {"text": "sentence", "numeric": ["words"]},
            "text_classification cannot use features.numeric (it reads features.text)",
        ),
        (
            "tabular_classification",
            {"numeric": ["words"], "image": "pixels"},
            "tabular_classification cannot use features.image",
        ),
    ],
)
def test_a_feature_a_kind_cannot_read_is_a_spec_error(problem, features, fragment):
    spec = _spec(problem, **features)
    with pytest.raises(SpecError) as e:
        get_kind(problem).check_spec(spec)
    assert fragment in str(e.value)
