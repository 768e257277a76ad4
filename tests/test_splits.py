"""Official splits everywhere: a predefined train / val / test column is honoured by the tabular
and text kinds (val selects, then the chosen model is refit on train + val, and the log says
which rows selected), and a split a kind cannot honour is a spec error, never ignored."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from conftest import last_run, require_mirror, run_cli, write_example_spec
from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.errors import SpecError
from modelmill.learn.kinds import get_kind


def _official(n: int, seed: int = 0) -> np.ndarray:
    """A seeded 70 / 15 / 15 split column, spelled as users spell it."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(["train", "Validation", "TEST"]), size=n, p=[0.7, 0.15, 0.15])


def test_a_csv_with_its_own_split_column_is_split_as_it_says(example_project, capsys):
    root, spec, data = example_project
    data = data.assign(split=_official(len(data)))
    suite_path = root / "expectations" / "my_cells.json"
    suite = json.loads(suite_path.read_text())
    for e in suite["expectations"]:
        if e["type"] == "expect_table_columns_to_match_set":
            e["kwargs"]["column_set"].append("split")
    suite_path.write_text(json.dumps(suite))
    write_example_spec(root, spec, data, split={"method": "predefined", "column": "split"})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    p = last_run(Settings(), "my_cells").data.params
    counts = data["split"].str.lower().value_counts()
    assert (int(p["split.train_rows"]), int(p["split.val_rows"]), int(p["split.test_rows"])) == (
        counts["train"],
        counts["validation"],
        counts["test"],
    )
    assert (
        f"candidates selected on the val split ({counts['validation']} rows), then refit on train + val ({counts['train'] + counts['validation']} rows)"
        in out + err
    )


@pytest.fixture(scope="module")
def intents():
    frame = pd.read_csv(require_mirror() / "banking77" / "train.csv")
    part = frame[frame["category"].isin(frame["category"].value_counts().index[:8])].reset_index(drop=True)
    return part.assign(split=_official(len(part), seed=1))


def _text_spec(**split) -> PipelineSpec:
    return PipelineSpec(
        name="intents", domain="customer_service", description="intents", schedule={"cron": "0 6 * * *"}, source={"path": "x.csv", "format": "csv"}, target="category",
        features={"text": "text"}, suite="x.json", problem="text_classification", split=split,
        baseline={"name": "mf", "estimator": "dummy_most_frequent"}, candidates=[{"name": "svc", "estimator": "linear_svc", "grid": {"C": [0.1, 1.0]}}],
        metric={"name": "accuracy", "direction": "maximize"},
    )  # fmt: skip


def test_the_text_kind_selects_on_val_rows_and_refits_on_train_plus_val(intents, caplog):
    spec = _text_spec(method="predefined", column="split")
    kind = get_kind(spec.problem)
    kind.check_spec(spec)
    data = kind.prepare(spec, intents)
    counts = intents["split"].str.lower().value_counts()
    assert (data.info["train_rows"], data.info["val_rows"], data.info["test_rows"]) == (
        counts["train"],
        counts["validation"],
        counts["test"],
    )
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        trained = kind.train(spec, data)
    assert (
        f"intents: candidates selected on the val split ({counts['validation']} rows), then refit on train + val ({counts['train'] + counts['validation']} rows)"
        in caplog.messages
    )
    # one val split, not k folds: no spread is claimed, in the table or the log
    assert (trained.selection["folds"] == 1).all() and trained.selection["score_std"].isna().all()
    assert (trained.selection["selected_on"] == "the val split").all()
    picked = [m for m in caplog.messages if ": candidate " in m and " cv " in m]
    assert picked and all(m.split(" = ")[1].split(" {")[0].endswith("on one validation split") for m in picked)
    assert not any("±" in m for m in picked)
    # the refit model has seen the val rows: a word only they hold is in its vocabulary
    vocab = trained.model.named_steps["features"].transformer_list[0][1].vocabulary_
    val_text = " ".join(intents.loc[intents["split"] == "Validation", "text"]).lower()
    train_text = " ".join(intents.loc[intents["split"] == "train", "text"]).lower()
    only_val = {
        w for w in set(val_text.split()) if w.isalpha() and val_text.count(w) >= 2 and f" {w} " not in f" {train_text} "
    }
    assert only_val and only_val & set(vocab)
    assert kind.metrics(spec, trained.model, data)["accuracy"] > 0.8


def test_without_val_rows_the_text_kind_says_it_cross_validates(intents, caplog):
    spec = _text_spec(method="predefined", column="split", folds=3)
    kind = get_kind(spec.problem)
    data = kind.prepare(spec, intents.assign(split=intents["split"].replace({"Validation": "train"})))
    assert data.info["val_rows"] == 0
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        kind.train(spec, data)
    assert "intents: candidates selected by 3-fold cross-validation on the training rows" in caplog.messages


@pytest.mark.parametrize(
    "split, values, fragment",
    [
        (
            {"method": "temporal", "test_period_days": 30},
            None,
            "text_classification splits by stratified or predefined, not temporal",
        ),
        ({"method": "predefined"}, None, "split.method predefined needs split.column"),
        (
            {"method": "predefined", "column": "split"},
            ["train", "test", "later"],
            "split column split holds 1 rows that are not train/val/test (e.g. 'later')",
        ),
        ({"method": "predefined", "column": "split"}, ["train", "val", "val"], "split column split has no test rows"),
    ],
)
def test_splits_a_kind_cannot_honour_are_spec_errors(intents, split, values, fragment):
    spec = _text_spec(**split)
    kind = get_kind(spec.problem)
    with pytest.raises(SpecError) as e:
        kind.check_spec(spec)
        frame = intents.head(len(values)).assign(split=values)
        kind.prepare(spec, frame)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_only_the_winning_candidate_is_fitted_on_all_training_rows(intents):
    """Candidates are compared on their CV folds; the winner alone is then fitted on every training
    row (scikit-learn's refit would fit each candidate's best grid point there), to the model
    scikit-learn's refit gives."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.naive_bayes import ComplementNB
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from modelmill.learn.kinds.selection import grid_select

    fits: list[tuple[str, int]] = []

    class SVC(LinearSVC):
        def fit(self, X, y):
            fits.append(("svc", X.shape[0]))
            return super().fit(X, y)

    class NB(ComplementNB):
        def fit(self, X, y):
            fits.append(("nb", X.shape[0]))
            return super().fit(X, y)

    candidates = [
        {"name": "svc", "estimator": "linear_svc", "grid": {"C": [0.1, 1.0]}},
        {"name": "nb", "estimator": "complement_nb"},
    ]
    spec = PipelineSpec.model_validate(
        _text_spec(method="stratified", folds=3).model_dump() | {"candidates": candidates}
    )

    def build(c):
        return Pipeline([("tfidf", TfidfVectorizer()), ("model", SVC(random_state=0) if c.name == "svc" else NB())])

    X, y, cv = intents["text"], intents["category"].to_numpy(), StratifiedKFold(3, shuffle=True, random_state=0)
    name, model, table, chosen = grid_select(spec, build, X, y, cv=cv, scoring="accuracy")
    assert name == "svc" and set(table["candidate"]) == {"svc", "nb"}
    assert [f for f in fits if f[1] == len(X)] == [("svc", len(X))]  # the loser and the other grid point: folds only
    assert len(fits) == 3 * 3 + 1  # 2 grid points + 1 candidate, 3 folds each, then the winner once
    reference = GridSearchCV(build(spec.candidates[0]), {"model__C": [0.1, 1.0]}, scoring="accuracy", cv=cv).fit(X, y)
    assert chosen == {"C": reference.best_params_["model__C"]}
    assert np.array_equal(model.decision_function(X), reference.best_estimator_.decision_function(X))
    unfitted = grid_select(spec, build, X, y, cv=cv, scoring="accuracy", fit=False)[1]
    assert not hasattr(unfitted.named_steps["model"], "coef_") and unfitted.named_steps["model"].C == chosen["C"]


def test_a_long_search_says_how_far_it_is_and_how_long_is_left(intents, caplog, monkeypatch):
    """A candidate's grid search prints its fits done, the time spent and an estimate of the time
    left (here after every fit; by default at most every 20 s, so a quick search says nothing),
    and never after its last fit, where the candidate's result line follows."""
    import logging
    import re

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from modelmill.learn.kinds import selection

    spec = PipelineSpec.model_validate(
        _text_spec(method="stratified", folds=3).model_dump()
        | {"candidates": [{"name": "svc", "estimator": "linear_svc", "grid": {"C": [0.1, 1.0]}}]}
    )

    def build(c):
        return Pipeline([("tfidf", TfidfVectorizer()), ("model", LinearSVC(random_state=0))])

    X, y = intents["text"], intents["category"].to_numpy()
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    monkeypatch.setattr(selection, "PROGRESS_EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        selection.grid_select(spec, build, X, y, cv=cv, scoring="accuracy", fit=False)
    lines = [r.getMessage() for r in caplog.records if "so far" in r.getMessage()]
    assert [re.search(r"fit (\d) of 6", ln).group(1) for ln in lines] == ["1", "2", "3", "4", "5"]
    assert lines[0].startswith("intents: candidate svc (2 grid points x 3 folds): fit 1 of 6, ")
    left = [float(re.search(r"about (\d+) s left", ln).group(1)) for ln in lines]
    assert all(x >= 0 for x in left)
    monkeypatch.setattr(selection, "PROGRESS_EVERY", 3600.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="modelmill.train"):
        selection.grid_select(spec, build, X, y, cv=cv, scoring="accuracy", fit=False)
    assert not [r for r in caplog.records if "so far" in r.getMessage()]


def test_a_reporting_option_never_moves_the_split(intents):
    """Slices are reported on the test rows; they never choose them: the same rows are tested with
    and without ``options.slices``."""
    frame = intents.drop(columns=["split"]).assign(
        length=np.where(intents["text"].str.len() > intents["text"].str.len().median(), "long", "short")
    )
    kind = get_kind("text_classification")
    plain = _text_spec(method="stratified", test_size=0.25, seed=42)
    sliced = plain.model_copy(update={"options": {"slices": "length"}})
    a, b = kind.prepare(plain, frame), kind.prepare(sliced, frame)
    assert a.test_keys["row"].tolist() == b.test_keys["row"].tolist()
    assert set(b.test[2]) == {"long", "short"}  # and the slices are still reported
