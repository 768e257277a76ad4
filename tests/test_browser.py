"""What a user sees in a browser after `modelmill run`, in real headless Chromium (Debian's
``chromium``, which ``make test`` installs where it can): the MLflow run page, the runs table
modelmill's links open (the skipped rerun filtered out), the registered model, and Prefect's
flow-runs page, each rendered by the UI's own scripts from real servers."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from conftest import REPO, require_mirror

sys.path.insert(0, str(REPO / "scripts"))
import ui_screenshots  # noqa: E402


@pytest.mark.skipif(
    ui_screenshots.chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)"
)
def test_the_mlflow_and_prefect_pages_show_the_run_after_modelmill_run(tmp_path, monkeypatch):
    from PIL import Image

    require_mirror()
    monkeypatch.setenv("MODELMILL_MAX_EPOCHS", "2")
    pages = ui_screenshots.shoot(tmp_path / "shots", ["breast_cytology"], tmp_path / "home")
    run = pages["mlflow-breast_cytology-run.png"]
    assert "v1 champion · roc_auc" in run and "Overview" in run  # the run's name and page, drawn by the UI
    table = pages["mlflow-breast_cytology-runs.png"]
    assert "v1 champion · roc_auc" in table and "skipped: unchanged since v1" not in table
    assert "You are viewing a shared view" not in table  # no banner on the links modelmill prints
    assert "champion" in pages["mlflow-breast_cytology-model.png"]  # the registry page with its alias
    docs = pages["datadocs-breast_cytology.png"]  # offline, styled from the copies beside it
    text = " ".join(re.sub(r"<[^>]+>", " ", docs).split())
    assert "Status: Succeeded" in text and '<div class="bootstrap-table' in docs  # the table plugin ran, offline
    flows = pages["prefect-flow-runs.png"]
    assert "modelmill-pipeline" in flows and "breast_cytology" in flows  # both flow runs, by their names
    for name in pages:  # pictures of rendered pages, not blank ones
        pixels = np.asarray(Image.open(tmp_path / "shots" / name).convert("L"))
        assert pixels.shape == (1000, 1600) and pixels.std() > 10, name
