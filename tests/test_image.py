"""breast_ultrasound: the image kind on the real BreastMNIST file, and images of the wrong
shape or pixel range refused by the suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import (
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
from modelmill.learn.kinds.image import ImageFeatures


@pytest.fixture(scope="module")
def real():
    with np.load(require_mirror() / "breastmnist" / "breastmnist.npz") as z:
        return {k: z[k] for k in z.files}


def test_image_features_are_deterministic_and_finite(real):
    X = real["train_images"][:20].reshape(20, -1)
    f1 = ImageFeatures().fit(X).transform(X)
    assert f1.shape[0] == 20 and np.isfinite(f1).all()
    np.testing.assert_array_equal(f1, ImageFeatures().transform(X.astype(np.float32)))


def test_breast_ultrasound_flow_on_the_official_split(env, capsys, monkeypatch):
    code, out, err = run_cli(capsys, "run", "breast_ultrasound")
    assert code == 0, err
    run = last_run(env, "breast_ultrasound")
    m, p = run.data.metrics, run.data.params
    assert (p["split.train_rows"], p["split.val_rows"], p["split.test_rows"]) == ("546", "78", "156")
    # MedMNIST v2 references on this test split: ResNet-18 (28) AUC 0.901, auto-sklearn AUC 0.836.
    assert 0.78 < m["test/roc_auc"] < 0.97 and m["test/accuracy"] > 0.75
    assert m["test/lift_over_baseline"] > 0.25 and m["test/accuracy"] > m["test/baseline_accuracy"]  # vs always-benign
    assert {"test/sensitivity", "test/specificity"} <= set(m)
    assert {
        "plots/roc_curve.png",
        "plots/confusion_matrix.png",
        "plots/misclassified.png",
        "plots/permutation_importance.png",
    } <= artifacts(env, run, "plots")
    assert registry_state(env, "breast_ultrasound")[1] == "1"
    # which part of the image the model reads: 16 regions of the 28 x 28 images, each shuffled as a whole
    regions = pd.read_csv(
        mlflow_client(env).download_artifacts(run.info.run_id, "tables/permutation_importance.csv", str(env.home))
    )
    assert (
        len(regions) == 16
        and regions["feature"].str.fullmatch(r"rows \d+-\d+, cols \d+-\d+").all()
        and (regions["rows"] == 156).all()
    )
    assert regions["importance_mean"].iloc[0] > 0.01 and "card/model_card.md" in artifacts(env, run, "card")


def _bad_npz(tmp_path, real, transform) -> tuple:
    bad = {k: (transform(v) if k.endswith("_images") else v) for k, v in real.items()}
    mirror = tmp_path / "mirror"
    (mirror / "breastmnist").mkdir(parents=True)
    path = mirror / "breastmnist" / "breastmnist.npz"
    np.savez_compressed(path, **bad)
    return mirror, sha256_file(path)


@pytest.mark.parametrize(
    "case, transform, failing",
    [
        (
            "wrong_shape",
            lambda a: np.pad(a, ((0, 0), (2, 2), (2, 2))),
            ["expect_column_values_to_be_between(height)", "expect_column_values_to_be_between(pixels)"],
        ),
        (
            "pixel_range",
            lambda a: a.astype(np.float64) * 1.5 - 20,
            ["expect_column_values_to_be_between(pixel_max)", "expect_column_values_to_be_between(pixel_min)"],
        ),
    ],
)
def test_images_of_the_wrong_shape_or_range_are_rejected(
    env, capsys, monkeypatch, tmp_path, real, case, transform, failing
):
    mirror, digest = _bad_npz(tmp_path, real, transform)
    # The catalog pins the official file's checksum: this spec pins the altered copy instead.
    spec = write_spec(tmp_path, "breast_ultrasound", source={"dataset": "breastmnist", "sha256": digest})
    modelmill_env(monkeypatch, env.home, mirror)
    before = registry_state(env, "breast_ultrasound", "breastmnist")
    code, out, err = run_cli(capsys, "run", str(spec))
    run = assert_refused_and_nothing_lost(
        env, "breast_ultrasound", "breastmnist", before, code, 3, out + err, "data rejected"
    )
    for f in failing:
        assert f in run.data.tags["modelmill.failed_expectations"]
