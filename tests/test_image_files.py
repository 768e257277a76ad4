"""A user's own images: a folder of image files per class (under split folders or not), a CSV of
image paths beside their labels, an npz archive; trained into a champion that scores a folder of
new images. The images are real BreastMNIST ultrasound scans written out as PNG files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from conftest import last_run, modelmill_env, registry_state, require_mirror, run_cli
from modelmill.config.settings import Settings
from modelmill.config.spec import load_spec
from modelmill.data.imagefiles import hashed_split, read_image_folder
from modelmill.data.ingest import fetch_sources, read_source
from modelmill.errors import CorruptSource

NAMES = {0: "malignant", 1: "benign"}


@pytest.fixture(scope="module")
def scans():
    with np.load(require_mirror() / "breastmnist" / "breastmnist.npz") as z:
        return {k: z[k] for k in z.files}


def write_folder(root, scans, splits=True, upscale=1) -> dict[str, np.ndarray]:
    """split/class/NNN.png (or class/NNN.png) files of the real scans; returns name -> pixels."""
    from PIL import Image

    written = {}
    for split in ("train", "val", "test"):
        for i, (img, lab) in enumerate(zip(scans[f"{split}_images"], scans[f"{split}_labels"][:, 0], strict=True)):
            name = f"{split}/{NAMES[lab]}/{split}{i:03d}.png" if splits else f"{NAMES[lab]}/{split}{i:03d}.png"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            pic = Image.fromarray(img)
            (pic.resize((28 * upscale, 28 * upscale), Image.Resampling.NEAREST) if upscale > 1 else pic).save(
                root / name
            )
            written[name] = img
    return written


def image_suite(rows: int) -> dict:
    return {"name": "scans", "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": rows, "max_value": rows}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": ["malignant", "benign"]}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "split", "value_set": ["train", "val", "test"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "pixels", "min_value": 784, "max_value": 784}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "pixels"}},
    ]}  # fmt: skip


def write_image_spec(root, source: dict, rows: int = 780, **changes) -> None:
    (root / "pipelines").mkdir(exist_ok=True)
    (root / "expectations").mkdir(exist_ok=True)
    (root / "expectations" / "scans.json").write_text(json.dumps(image_suite(rows)))
    spec = {
        "name": "scans", "domain": "healthcare", "description": "Malignancy from my clinic's ultrasound scans.", "problem": "image_classification", "source": source,
        "schedule": {"cron": "0 6 * * 1"},
        "target": "label", "positive_label": "malignant", "features": {"image": "pixels"},
        "split": {"method": "predefined", "column": "split"}, "suite": "scans.json",
        "baseline": {"name": "prior", "estimator": "dummy_prior"},
        "candidates": [{"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [0.01, 0.1]}}],
        "metric": {"name": "roc_auc", "direction": "maximize"}, "options": {"height": 28, "width": 28},
    } | changes  # fmt: skip
    (root / "pipelines" / "scans.yaml").write_text(yaml.safe_dump(spec))


def read(root, settings):
    spec = load_spec(str(root / "pipelines" / "scans.yaml"), settings)
    return read_source(spec, fetch_sources(spec, settings))


def by_file(df: pd.DataFrame, column: str = "file") -> dict[str, np.ndarray]:
    return {str(f): np.asarray(p).reshape(28, 28) for f, p in zip(df[column], df["pixels"], strict=True)}


def test_every_documented_image_shape_reads_the_same_pixels(tmp_path, monkeypatch, scans):
    modelmill_env(monkeypatch, tmp_path / "home")
    settings = Settings()
    data = tmp_path / "pipelines" / "data"
    data.mkdir(parents=True)
    # 1. split/class/file: the labels and the split are the folders'
    written = write_folder(data / "scans", scans)
    write_image_spec(tmp_path, {"path": "data/scans"})
    folder = read(tmp_path, settings)
    assert len(folder) == 780 and set(folder.columns) >= {
        "file",
        "label",
        "split",
        "pixels",
        "height",
        "width",
        "channels",
        "pixel_min",
        "pixel_max",
    }
    assert folder.groupby("split").size().to_dict() == {"test": 156, "train": 546, "val": 78}
    assert all(np.array_equal(written[f], p) for f, p in by_file(folder).items())
    assert (
        dict(zip(folder["file"], folder["label"], strict=True))["train/benign/train000.png"]
        == NAMES[scans["train_labels"][0, 0]]
        == "benign"
    )

    # 2. class/file (no split folders): a split by a stable hash of each file's path
    write_folder(data / "flat", scans, splits=False)
    write_image_spec(tmp_path, {"path": "data/flat", "format": "images"})
    flat = read(tmp_path, settings)
    assert flat["split"].tolist() == [hashed_split(f) for f in flat["file"]]
    shares = flat["split"].value_counts(normalize=True)
    assert 0.6 < shares["train"] < 0.8 and 0.05 < shares["val"] < 0.16 and 0.14 < shares["test"] < 0.27

    # 3. a CSV of paths (relative to the CSV) beside labels and the user's own columns; images
    #    twice the size resized back with source.images.size
    write_folder(data / "big", scans, upscale=2)
    table = pd.DataFrame(
        {
            "path": [f"big/{f}" for f in folder["file"]],
            "label": folder["label"],
            "split": folder["split"],
            "patient": range(780),
        }
    )
    table.to_csv(data / "scans.csv", index=False)
    write_image_spec(tmp_path, {"path": "data/scans.csv", "images": {"paths_column": "path", "size": [28, 28]}})
    listed = read(tmp_path, settings)
    assert listed["patient"].tolist() == list(range(780)) and set(listed["height"]) == {28}
    diffs = [np.abs(by_file(listed, "path")[f"big/{f}"].astype(float) - written[f]).mean() for f in list(written)[:50]]
    assert max(diffs) < 12, "a 2x upscaled scan resized back is (nearly) the scan"

    # 4. an npz of images + labels (+ split)
    order = folder.sort_values("file")
    np.savez(
        data / "scans.npz",
        images=np.stack([written[f] for f in order["file"]]),
        labels=order["label"].to_numpy(str),
        split=order["split"].to_numpy(str),
    )
    write_image_spec(tmp_path, {"path": "data/scans.npz"})
    arrays = read(tmp_path, settings)
    assert arrays["label"].tolist() == order["label"].tolist() and arrays["split"].tolist() == order["split"].tolist()
    assert all(
        np.array_equal(np.asarray(p).reshape(28, 28), written[f])
        for p, f in zip(arrays["pixels"], order["file"], strict=True)
    )


def test_an_unreadable_image_or_a_missing_path_is_one_line_naming_it(tmp_path, monkeypatch, scans):
    modelmill_env(monkeypatch, tmp_path / "home")
    settings = Settings()
    data = tmp_path / "pipelines" / "data"
    data.mkdir(parents=True)
    write_folder(data / "scans", scans)
    (data / "scans" / "train" / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image_spec(tmp_path, {"path": "data/scans"})
    with pytest.raises(CorruptSource, match=r"1 of 781 files .* train/benign/broken.png: not an image: cannot be read"):
        read(tmp_path, settings)
    with pytest.raises(CorruptSource, match="mixes files at"):
        read_image_folder({"a/b.png": data / "x", "c.png": data / "y"}, None)
    pd.DataFrame({"path": ["scans/train/benign/train000.png", None], "label": ["benign", "benign"]}).to_csv(
        data / "list.csv", index=False
    )
    write_image_spec(tmp_path, {"path": "data/list.csv", "images": {"paths_column": "path"}})
    with pytest.raises(CorruptSource, match="1 rows of data/list.csv have no image path in column path"):
        read(tmp_path, settings)


def test_a_folder_of_images_trains_a_champion_that_scores_new_images(tmp_path, monkeypatch, capsys, prefect_api, scans):
    data = tmp_path / "pipelines" / "data"
    data.mkdir(parents=True)
    write_folder(data / "scans", scans)
    write_image_spec(tmp_path, {"path": "data/scans"})
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "pipelines")
    code, out, err = run_cli(capsys, "run", "scans")
    assert code == 0, out + err
    # the console names a few of the 780 files, not every one (data/lineage.json has them all)
    assert "and 777 more files (listed in the run's data/lineage.json)" in err
    assert max(map(len, (out + err).splitlines())) < 2000
    settings = Settings()
    run = last_run(settings, "scans")
    assert (run.data.params["split.train_rows"], run.data.params["split.test_rows"]) == ("546", "156")
    assert run.data.params["data.source_files"] == "780" and run.data.params["data.source"].endswith("/data/scans/")
    assert run.data.metrics["test/roc_auc"] > 0.7 and registry_state(settings, "scans")[1] == "1"
    from conftest import mlflow_client

    membership = pd.read_csv(
        mlflow_client(settings).download_artifacts(run.info.run_id, "tables/test_membership.csv", str(tmp_path))
    )
    snapshot = pd.read_parquet(run.data.tags["modelmill.snapshot"])
    assert len(membership) == 156 and set(snapshot["split"].to_numpy()[membership["row"]]) == {"test"}

    # A batch: a folder of new scans side by side, with no labels (here the test scans).
    from PIL import Image

    batch = tmp_path / "batch"
    batch.mkdir()
    for i, img in enumerate(scans["test_images"][:40]):
        Image.fromarray(img).resize((64, 64)).save(batch / f"scan{i:02d}.png")  # another size: resized to 28x28
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "-v", "score", "scans", "--input", "batch", "--output", "scored.parquet")
    assert code == 0, out + err
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(scored) == 40 and set(scored["prediction"]) <= {"malignant", "benign"}
    assert scored["file"].tolist() == [f"scan{i:02d}.png" for i in range(40)]
    from modelmill.data import scored_rows

    (kept,) = scored_rows.batches(Settings(), "scans")  # each scan's prediction, keyed by its pixels
    remembered = pd.read_parquet(kept)
    assert remembered["prediction"].tolist() == scored["prediction"].tolist() and remembered["row_key"].is_unique
    truth = np.where(scans["test_labels"][:40, 0] == 0, "malignant", "benign")
    accuracy, majority = (
        (scored["prediction"] == truth).mean(),
        max((truth == "benign").mean(), (truth == "malignant").mean()),
    )
    auc = roc_auc_score(truth == "malignant", scored["probability"])
    # calling every scan benign would be right on 27 of these 40 (0.675): the champion must do
    # clearly better than that, and rank malignant scans above benign ones (measured: 0.85, 0.87)
    assert accuracy > majority + 0.1 and auc > 0.8, (accuracy, majority, auc)
    assert (
        scored["probability"].between(0, 1).all()
        and (scored["prediction"] == np.where(scored["probability"] >= 0.5, "malignant", "benign")).all()
    )


def tinted(img: np.ndarray, red: bool) -> np.ndarray:
    """A grey scan tinted red or green with the same grey levels: a grey reading cannot tell the
    two apart (ITU-R 601 luma, as PIL converts), a colour one can."""
    v = 30 + img.astype(np.float64) * 195 / 255  # room for the tint on both sides
    sign = 1 if red else -1
    rgb = np.stack([v + sign * 25, v - sign * 25 * 0.299 / 0.587, v], axis=-1)
    return np.rint(rgb).clip(0, 255).astype(np.uint8)


def test_a_photo_folder_as_it_ships_goes_from_init_to_scores_in_colour(
    tmp_path, monkeypatch, capsys, prefect_api, scans
):
    """training/ and validation/ folders of colour photos (no test folder, a tenth at twice the
    size, a README beside them), where only the colour tells the classes apart: init proposes
    colour, the size and the splits; check, run and score need no edit. A batch's note and
    placeholder are rejected rows with their reasons; a placeholder among the training images is
    refused by check with its count."""
    from PIL import Image

    from modelmill.learn.kinds import get_kind

    rng = np.random.default_rng(7)
    photos = tmp_path / "photos"
    for split, folder in (("train", "training"), ("val", "validation")):
        for i, img in enumerate(scans[f"{split}_images"]):
            red = bool(rng.random() < 0.5)
            path = photos / folder / ("red" if red else "green") / f"{split}{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pic = Image.fromarray(tinted(img, red))
            (pic.resize((56, 56)) if i % 10 == 0 else pic).save(path)
    (photos / "README.txt").write_text("Photos from the shop floor.\n")
    modelmill_env(monkeypatch, tmp_path / "home", None, tmp_path / "project" / "pipelines")
    code, out, err = run_cli(capsys, "init", "shop", "--from", str(photos))
    assert code == 0, out + err
    assert "624 images (all read)" in out and "problem image_classification" in out
    assert "624 of 624 images read have colour" in out
    assert "63 of 624 images read are not 28x28: every image is resized to 28x28" in out
    assert "(training/ as train, validation/ as val); no test folder: drawn from the training files" in out
    spec = yaml.safe_load((tmp_path / "project" / "pipelines" / "shop.yaml").read_text())
    assert spec["options"]["colour"] is True and spec["source"]["images"]["size"] == [28, 28]
    assert spec["source"]["path"] == "../../photos"

    code, out, err = run_cli(capsys, "check", "shop")
    assert code == 0 and "the gate passes" in out, out + err
    code, out, err = run_cli(capsys, "run", "shop")
    assert code == 0, out + err
    assert "63 of 624 images resized to 28x28" in err and "README.txt" in err
    settings = Settings()
    run = last_run(settings, "shop")
    assert run.data.params["split.test_rows"] != "0" and run.data.params["split.val_rows"] == "78"
    colour_auc = run.data.metrics["test/roc_auc"]
    assert colour_auc > 0.95, colour_auc
    # the same data and candidates read in grey levels: the classes cannot be told apart
    spec_obj = load_spec("shop", settings)
    grey = spec_obj.model_copy(update={"options": {**spec_obj.options, "colour": False}})
    kind = get_kind("image_classification")
    data = kind.prepare(grey, pd.read_parquet(run.data.tags["modelmill.snapshot"]))
    grey_auc = kind.metrics(grey, kind.train(grey, data).model, data)["roc_auc"]
    assert grey_auc < 0.7, (colour_auc, grey_auc)

    batch = tmp_path / "batch"
    batch.mkdir()
    for i, img in enumerate(scans["test_images"][:20]):
        Image.fromarray(tinted(img, i % 2 == 0)).save(batch / f"p{i:02d}.png")
    (batch / "notes.txt").write_text("taken on Tuesday\n")
    Image.new("RGBA", (1, 1)).save(batch / "pixel.gif")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "score", "shop", "--input", "batch", "--output", "scored.parquet")
    assert code == 0, out + err
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    rejected = pd.read_parquet(tmp_path / "scored.rejected.parquet")
    assert len(scored) == 20 and len(rejected) == 2  # every file accounted for
    assert (scored["prediction"] == np.where(np.arange(20) % 2 == 0, "red", "green")).mean() >= 0.9
    reasons = dict(zip(rejected["file"], rejected["rejected_because"], strict=True))
    assert reasons["notes.txt"] == "not an image: a .txt file"
    assert reasons["pixel.gif"].startswith("not an image: a placeholder (1x1 pixels")

    # a placeholder among the training images: check refuses the folder, counting what to remove
    Image.new("RGBA", (1, 1)).save(photos / "training" / "red" / "spacer.gif")
    code, out, err = run_cli(capsys, "check", "shop")
    assert code != 0 and "1 of 625 files of the image folder give no image to learn from" in out + err
    assert "training/red/spacer.gif: not an image: a placeholder" in out + err


def test_an_image_model_fitted_before_colour_still_scores_grey_and_colour_rows(scans):
    """A registered image model from before the models read colour knows grey rows only: it
    scores the rows the kind now gives it (height x width x 3) as their grey levels, as before."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from modelmill.learn.kinds.image import MirrorAugmented

    X, y = scans["train_images"][:200].reshape(200, -1).astype(float), scans["train_labels"][:200, 0]
    grey = X[:20]
    new = MirrorAugmented(Pipeline([("model", LogisticRegression(C=0.001))]), 28, 28).fit(X, y)
    assert new.colours_ == 1  # grey scans: read as grey
    before = MirrorAugmented(Pipeline([("model", LogisticRegression(C=0.001))]), 28, 28)
    vars(before).update(pipeline_=new.pipeline_, classes_=new.classes_, n_features_in_=784)  # as it was pickled
    expected = new.pipeline_.predict_proba(grey)
    np.testing.assert_allclose(before.predict_proba(np.repeat(grey, 3, axis=1)), expected)
    np.testing.assert_allclose(before.predict_proba(grey), expected)
    np.testing.assert_allclose(new.predict_proba(grey), expected)
