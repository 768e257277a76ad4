"""`modelmill init`: a spec and a suite proposed from a user's own file, on three real-shaped
tables (a CRM export built from the Wisconsin measurements and BANKING77 queries, the Yelp review
sentences as a TSV, a MovieLens-shaped ratings workbook); `modelmill check` then passes on each,
and the proposed tabular spec trains a champion."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import last_run, mlflow_client, modelmill_env, require_mirror, run_cli
from modelmill.config.settings import Settings
from modelmill.data.schema_inference import classify, propose


# -- the inference on tiny frames ---------------------------------------------------------------
def test_roles_and_types_are_inferred_with_their_reasons():
    n = 40
    df = pd.DataFrame({
        "row": range(n),
        "customer_id": [f"C{i:04d}" for i in range(n)],
        "spend": [f"$1,{i:03d}.50" for i in range(n)],
        "plan": ["basic", "pro"] * (n // 2),
        "signed_up": pd.date_range("2024-01-01", periods=n).strftime("%d/%m/%Y"),
        "note": [f"my card was declined {i} times at the shop today" for i in range(n)],
        "constant": 1,
        "churned": ["yes", "no", "no", "no"] * (n // 4),
    })  # fmt: skip
    roles = {c.name: c for c in classify(df, "churned", None)}
    assert {k: c.role for k, c in roles.items()} == {
        "row": "id", "customer_id": "id", "spend": "numeric", "plan": "categorical", "signed_up": "date",
        "note": "text", "constant": "dropped", "churned": "target",
    }  # fmt: skip
    assert roles["spend"].thousands == "," and "thousands separator" in roles["spend"].why
    assert "rising" in roles["row"].why and "one value" in roles["constant"].why
    proposal = propose("churn", df, {"path": "data/crm.csv", "format": "csv"}, target="churned")
    spec = proposal.spec
    assert spec["source"]["thousands"] == "," and spec["positive_label"] == "yes"
    assert spec["roles"] == {"id": "row"} and set(spec["drop"]) == {"customer_id", "signed_up", "constant"}
    assert spec["features"] == {"numeric": ["spend"], "categorical": ["plan"], "text": "note"}
    rules = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in proposal.suite["expectations"]}
    assert rules[("expect_column_values_to_be_in_set", "plan")]["value_set"] == ["basic", "pro"]
    spend = rules[("expect_column_values_to_be_between", "spend")]
    assert spend["min_value"] < 1000.5 and spend["max_value"] > 1039.5  # a margin around the data's range
    assert ("expect_column_values_to_be_unique", "row") in rules
    assert set(rules[("expect_table_columns_to_match_set", None)]["column_set"]) == set(df.columns) - set(spec["drop"])


def test_a_continental_number_and_a_target_that_is_not_a_column():
    df = pd.DataFrame({"amount": ["1.204,50", "2.019,00", "17,25", "3.000,75"] * 5, "y": [0, 1] * 10})
    source = propose("t", df, {"path": "t.csv"}, target="y").spec["source"]
    assert source["thousands"] == "." and source["decimal"] == ","
    with pytest.raises(Exception, match="--target nope: no such column"):
        propose("t", df, {"path": "t.csv"}, target="nope")
    with pytest.raises(Exception, match="name the column to predict with --target"):
        propose("t", df, {"path": "t.csv"})


# -- three real-shaped files through the command ------------------------------------------------
@pytest.fixture
def user_files(tmp_path, monkeypatch):
    mirror = require_mirror()
    from sklearn.datasets import load_breast_cancer

    rng = np.random.default_rng(0)
    data = tmp_path / "pipelines" / "data"
    data.mkdir(parents=True)
    cells = load_breast_cancer(as_frame=True).frame
    n = len(cells)
    queries = pd.read_csv(mirror / "banking77" / "train.csv")["text"].sample(n, random_state=0).to_numpy()
    crm = pd.DataFrame({
        "customer_id": [f"C{100000 + i}" for i in range(n)],
        "email": [f"user{i}@example.org" for i in range(n)],
        "tenure_months": rng.integers(1, 120, n),
        "monthly_spend": [f"${v:,.2f}" for v in cells["worst area"] * 1.7],
        "plan": rng.choice(["basic", "plus", "pro"], n),
        "signed_up": pd.date_range("2019-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "last_ticket": queries,
        "mean_radius": cells["mean radius"],
        "churned": np.where(cells["target"] == 0, "yes", "no"),
    })  # fmt: skip
    crm.loc[rng.choice(n, 15, replace=False), "mean_radius"] = np.nan
    crm.loc[rng.choice(n, 9, replace=False), "plan"] = None
    crm.to_csv(data / "crm.csv", index=False)
    archive = zipfile.ZipFile(mirror / "sentiment-sentences" / "sentiment+labelled+sentences.zip")
    member = next(m for m in archive.namelist() if m.endswith("yelp_labelled.txt") and not m.startswith("__MACOSX"))
    reviews = pd.read_csv(
        io.BytesIO(archive.read(member)), sep="\t", header=None, names=["sentence", "label"], quoting=csv.QUOTE_NONE
    )
    reviews.to_csv(data / "reviews.tsv", sep="\t", index=False)
    m = 4000
    ratings = pd.DataFrame({
        "user_id": rng.integers(1, 300, m), "movie_id": rng.zipf(1.5, m) % 500, "rating": rng.integers(1, 6, m),
        "rated_at": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, m), unit="s"),
    })  # fmt: skip
    ratings.to_excel(data / "ratings.xlsx", index=False)
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _written(root, name):
    spec = yaml.safe_load((root / "pipelines" / f"{name}.yaml").read_text())
    suite = json.loads((root / "expectations" / f"{name}.json").read_text())
    return spec, suite


@pytest.mark.flow
def test_init_proposes_a_spec_and_suite_that_check_passes_on_three_real_shaped_files(user_files, capsys, prefect_api):
    root = user_files
    code, out, err = run_cli(
        capsys, "init", "churn", "--from", "pipelines/data/crm.csv", "--target", "churned"
    )  # relative to the working directory
    assert code == 0, err
    assert "monthly_spend  numeric" in out and "thousands separator" in out and "email" in out
    spec, suite = _written(root, "churn")
    assert spec["problem"] == "tabular_classification" and spec["source"] == {
        "path": "data/crm.csv",
        "format": "csv",
        "thousands": ",",
    }
    assert spec["roles"] == {"id": "customer_id"} and set(spec["drop"]) == {"email", "signed_up"}
    assert spec["features"]["text"] == "last_ticket" and spec["impute"]["numeric"] == "median"
    not_null = {
        e["kwargs"]["column"] for e in suite["expectations"] if e["type"] == "expect_column_values_to_not_be_null"
    }
    assert (
        "mean_radius" not in not_null and "plan" not in not_null and "tenure_months" in not_null
    )  # not-null only where the data has none
    code, out, err = run_cli(capsys, "check", "churn")
    assert code == 0, err + out
    assert "the gate passes" in out

    code, out, err = run_cli(
        capsys,
        "init",
        "reviews",
        "--from",
        str(root / "pipelines/data/reviews.tsv"),
        "--sep",
        "\\t",
        "--target",
        "label",
    )
    assert code == 0, err
    spec, suite = _written(root, "reviews")
    assert spec["problem"] == "text_classification" and spec["features"] == {"text": "sentence"}
    assert spec["source"]["read_options"] == {"sep": "\t"} and spec["metric"]["name"] == "roc_auc"
    assert spec["candidates"][-1]["estimator"] == "sentences_logistic_regression"  # the text extra is installed
    code, out, err = run_cli(capsys, "check", "reviews")
    assert code == 0, err + out

    code, out, err = run_cli(
        capsys, "init", "movies", "--from", "pipelines/data/ratings.xlsx", "--problem", "recommendation"
    )
    assert code == 0, err
    spec, suite = _written(root, "movies")
    assert spec["roles"] == {"user": "user_id", "item": "movie_id", "rating": "rating", "date": "rated_at"}
    assert spec["split"]["method"] == "temporal" and spec["options"]["relevance_threshold"] == 3.0
    code, out, err = run_cli(capsys, "check", "movies")
    assert code == 0, err + out

    # never over existing files without --force; with it, replaced
    before = (root / "pipelines" / "movies.yaml").read_text()
    code, _, err = run_cli(
        capsys, "init", "movies", "--from", "pipelines/data/ratings.xlsx", "--problem", "recommendation"
    )
    assert code != 0 and "already exist: give --force" in err
    assert (root / "pipelines" / "movies.yaml").read_text() == before
    assert (
        run_cli(
            capsys, "init", "movies", "--from", "pipelines/data/ratings.xlsx", "--problem", "recommendation", "--force"
        )[0]
        == 0
    )

    # the proposed tabular and text specs train, promote and score as they stand
    code, out, err = run_cli(capsys, "run", "churn")
    assert code == 0, err + out
    assert "champion" in out
    code, out, err = run_cli(capsys, "run", "reviews")
    assert code == 0, err + out
    run = last_run(Settings(), "reviews")
    tried = pd.read_csv(
        mlflow_client(Settings()).download_artifacts(run.info.run_id, "tables/model_selection.csv", str(root))
    )
    assert "sentence_encoder" in set(tried["candidate"]) and run.data.metrics["test/roc_auc"] > 0.85
    pd.DataFrame({"sentence": ["The food was wonderful.", "Worst service ever, never again."]}).to_csv(
        root / "two.tsv", sep="\t", index=False
    )
    code, out, err = run_cli(capsys, "score", "reviews", "--input", "two.tsv", "--output", "two.parquet")
    assert code == 0, err + out
    assert pd.read_parquet(root / "two.parquet")["prediction"].tolist() == [1, 0]


def test_init_works_on_a_file_anywhere_from_the_folder_the_user_stands_in(tmp_path, monkeypatch, capsys):
    """No variable set, a fresh working folder, the data somewhere else: ``init`` writes the spec
    to the working folder's ``pipelines/`` (not the package's), names the file relative to it,
    and grants its folder in the project's data folder, so ``check`` reads it; a spec that
    points at a folder nobody named on the command line is still refused."""
    from sklearn.datasets import load_breast_cancer

    outside, project = tmp_path / "exports", tmp_path / "work" / "project"
    outside.mkdir()
    project.mkdir(parents=True)
    cells = load_breast_cancer(as_frame=True).frame  # Wisconsin: a real measurement and the diagnosis
    cells[["mean radius", "target"]].set_axis(["x", "y"], axis=1).to_csv(outside / "t.csv", index=False)
    for name in ("MODELMILL_HOME", "MODELMILL_PIPELINES_DIR", "MODELMILL_EXPECTATIONS_DIR", "MODELMILL_DATA_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)
    code, _, err = run_cli(capsys, "init", "Bad-Name", "--from", "../../exports/t.csv")
    assert code != 0 and "is not a pipeline name" in err
    code, out, err = run_cli(capsys, "init", "t", "--from", "../../exports/t.csv", "--target", "y")
    assert code == 0, err
    assert f"{outside}: a folder this project's specs may read from now" in out
    assert (project / ".modelmill" / "data_roots.txt").read_text().split() == [str(outside)]
    spec, _ = _written(project, "t")
    assert spec["source"]["path"] == "../../../exports/t.csv"  # relative to the spec, not this machine's path
    code, out, err = run_cli(capsys, "check", "t")
    assert code == 0 and "the gate passes" in out, err + out

    # the grant is the operator's: a spec that names another folder is refused before reading
    other = tmp_path / "private"
    other.mkdir()
    (other / "t.csv").write_bytes((outside / "t.csv").read_bytes())
    spec["source"]["path"] = "../../../private/t.csv"
    (project / "pipelines" / "t.yaml").write_text(yaml.safe_dump(spec))
    code, out, err = run_cli(capsys, "check", "t")
    assert code != 0 and "outside the folders a spec may read" in err and "MODELMILL_DATA_ROOTS" in err


def test_a_numeric_column_with_blank_cells_stays_a_feature_with_gaps(tmp_path):
    """A churn export whose amounts have blank cells (spaces, as spreadsheets write them): the
    column is numbers with missing values, imputed by the model, never an id; ingest reads the
    blanks as missing too."""
    from sklearn.datasets import load_breast_cancer

    from modelmill.data.ingest import coerce_numbers
    from modelmill.data.schema_inference import propose

    cells = load_breast_cancer(as_frame=True).frame
    table = pd.DataFrame({
        "total_charges": cells["worst area"].map(lambda v: f"{v:.2f}").astype(object),
        "tenure": cells["mean texture"].round(1),
        "churned": np.where(cells["target"] == 0, "yes", "no"),
    })  # fmt: skip
    table.loc[[3, 40, 77, 300, 501], "total_charges"] = " "
    proposal = propose("churn", table, {"path": "data/churn.csv", "format": "csv"}, target="churned")
    roles = {c.name: (c.role, c.nulls) for c in proposal.columns}
    assert roles["total_charges"] == ("numeric", 5)
    assert "total_charges" in proposal.spec["features"]["numeric"] and proposal.spec["impute"]["numeric"] == "median"
    not_null = {e["kwargs"]["column"] for e in proposal.suite["expectations"] if e["type"].endswith("not_be_null")}
    assert "total_charges" not in not_null and "tenure" in not_null
    read = coerce_numbers(table["total_charges"], None, ".")
    assert read.dtype == "float64" and int(read.isna().sum()) == 5


def test_a_play_log_names_its_user_and_artist_as_user_and_item(tmp_path, monkeypatch, capsys, prefect_api):
    """A listening log as such exports name it (userID, artistID, a play count): init takes the
    user, the item and the quantity from those names; an item column named like nothing it knows
    is taken as the one identifier beside the user; with no names to go by, two identifiers that
    repeat are a log (user first), and that file goes init -> check -> run -> score with no edit.
    Real Online Retail purchases stand in for the plays."""
    with zipfile.ZipFile(require_mirror() / "online-retail" / "online+retail.zip") as z:
        raw = pd.read_excel(io.BytesIO(z.read("Online Retail.xlsx")), engine="calamine", nrows=20000)
    raw = raw[raw["CustomerID"].notna() & (raw["Quantity"] > 0)]
    plays = pd.DataFrame(
        {"userID": raw["CustomerID"].astype(int), "artistID": raw["StockCode"].astype(str), "weight": raw["Quantity"]}
    )
    proposal = propose("music", plays, {"path": "plays.csv", "format": "csv"}, target=None, problem="recommendation")
    assert proposal.spec["roles"] == {"user": "userID", "item": "artistID", "quantity": "weight"}
    codes = plays.rename(columns={"artistID": "code"})  # a name init does not know
    proposal = propose("music", codes, {"path": "plays.csv", "format": "csv"}, target=None, problem="recommendation")
    assert proposal.spec["roles"]["item"] == "code"
    assert "the one identifier beside the user" in next(c.why for c in proposal.columns if c.name == "code")

    plays.set_axis(["u", "i", "n"], axis=1).to_csv(tmp_path / "log.csv", index=False)  # no names to go by
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "project" / "pipelines")
    code, out, err = run_cli(capsys, "init", "log", "--from", str(tmp_path / "log.csv"))
    assert code == 0, out + err
    assert "problem recommendation" in out and "u is taken as the user and i as the item" in out
    spec, _ = _written(tmp_path / "project", "log")
    assert spec["roles"] == {"user": "u", "item": "i"}
    code, out, err = run_cli(capsys, "check", "log")
    assert code == 0 and "the gate passes" in out, out + err
    code, out, err = run_cli(capsys, "run", "log")
    assert code == 0 and "champion" in out, out + err
    users = plays["userID"].drop_duplicates().head(3)
    pd.DataFrame({"u": users}).to_csv(tmp_path / "who.csv", index=False)
    code, out, err = run_cli(
        capsys, "score", "log", "--input", str(tmp_path / "who.csv"), "--output", str(tmp_path / "recs.parquet")
    )
    assert code == 0, out + err
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    assert set(recs["u"]) == set(users.astype(str)) and recs.groupby("u").size().eq(10).all()  # ids as text
    bought = set(zip(plays["userID"].astype(str), plays["artistID"], strict=True))
    assert not any((u, i) in bought for u, i in zip(recs["u"], recs["item"].astype(str), strict=True))
