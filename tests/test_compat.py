"""Champions registered before the package was layered still load and score: the model under
tests/data was saved by the flat layout (its pickle names ``modelmill.kinds.encoders`` and its
MLmodel ``loader_module: modelmill.tracking``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, require_mirror

LEGACY = REPO / "tests" / "data" / "legacy_credit_model"


def test_the_flat_layout_really_saved_it():
    pickled = (LEGACY / "model.pkl").read_bytes()
    assert b"modelmill.kinds.encoders" in pickled and b"modelmill.learn" not in pickled
    assert "loader_module: modelmill.tracking\n" in (LEGACY / "MLmodel").read_text()


@pytest.mark.flow
def test_a_champion_of_the_flat_layout_loads_and_scores_in_a_fresh_interpreter(tmp_path, monkeypatch):
    """In a new process, as ``mlflow models serve`` or ``modelmill score`` would load it: the same
    answers as when it was saved, through the classes of the new layout (not second copies)."""
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELMILL_DATA_MIRROR", str(require_mirror()))
    code = f"""
import json, sys
import mlflow.pyfunc, mlflow.sklearn
from modelmill.config.settings import get_settings
from modelmill.config.spec import load_spec
from modelmill.data.ingest import fetch_sources, read_source
settings = get_settings()
spec = load_spec("credit_risk", settings)
rows = read_source(spec, fetch_sources(spec, settings)).iloc[:40][spec.features.numeric + spec.features.categorical]
served = mlflow.pyfunc.load_model({str(LEGACY)!r}).predict(rows)
served.to_csv({str(tmp_path / "served.csv")!r}, index=False)
mlflow.sklearn.load_model({str(LEGACY)!r})
from modelmill.learn.kinds import encoders
print(json.dumps({{"modules": sorted(m for m in sys.modules if m.startswith(("modelmill.kinds", "modelmill.tracking"))),
                   "same": sys.modules["modelmill.kinds.encoders"] is encoders}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["same"] is True
    assert "modelmill.tracking" in facts["modules"]
    served = pd.read_csv(tmp_path / "served.csv")
    expected = pd.read_csv(LEGACY / "expected_first_40_rows.csv")
    pd.testing.assert_frame_equal(served, expected, check_exact=False, rtol=1e-9)
