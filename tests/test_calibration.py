"""Class weights move a model's probabilities off the base rate: the tabular kind calibrates a
class-weighted model on held-out training rows (the step chosen by its Brier score), and says
plainly when the probabilities it reports are scores, not probabilities. On German Credit."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import REPO, require_mirror
from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.data.catalog import CATALOG
from modelmill.data.fetch import fetch_catalog_file
from modelmill.data.readers import read_german_credit
from modelmill.learn.kinds import get_kind
from modelmill.learn.kinds.tabular import Calibrated


@pytest.fixture(scope="module")
def credit(tmp_path_factory) -> pd.DataFrame:
    s = Settings(home=tmp_path_factory.mktemp("h"), data_mirror=str(require_mirror()))
    e = CATALOG["german-credit"]
    return read_german_credit({f.name: fetch_catalog_file(e, f, s) for f in e.files})


def _spec(calibration: str) -> PipelineSpec:
    shipped = yaml.safe_load((REPO / "pipelines" / "credit_risk.yaml").read_text())
    shipped["candidates"] = [
        {"name": "weighted_lr", "estimator": "logistic_regression", "params": {"class_weight": "balanced", "C": 0.3}}
    ]
    shipped["options"] = shipped["options"] | {"threshold": "fixed", "calibration": calibration}
    shipped["suite"] = "x.json"
    return PipelineSpec(**shipped)


def test_a_class_weighted_model_is_calibrated_or_said_to_give_scores(credit):
    kind = get_kind("tabular_classification")
    figures = {}
    for calibration in ("none", "auto"):
        spec = _spec(calibration)
        data = kind.prepare(spec, credit)
        trained = kind.train(spec, data)
        m = kind.metrics(spec, trained.model, data)
        figures[calibration] = (m, kind.warnings(spec, m), trained)
    (raw, raw_warnings, raw_trained), (cal, cal_warnings, cal_trained) = figures["none"], figures["auto"]
    rate = raw["positive_rate"]
    assert rate == pytest.approx(0.3, abs=0.01)  # German Credit: 30 % bad risks
    # balanced weights: the mean "probability" sits near 0.5, far above the base rate, and says so
    assert raw["mean_probability"] > rate + 0.1 and raw_trained.params["calibration"] == "none"
    assert (
        len(raw_warnings) == 1
        and "scores, not probabilities" in raw_warnings[0]
        and f"base rate of {rate:.2f}" in raw_warnings[0]
    )
    # calibrated on held-out training rows: probabilities again, ranking (nearly) untouched
    assert isinstance(cal_trained.model, Calibrated) and cal_trained.params["calibration"] in {"sigmoid", "isotonic"}
    assert cal["brier"] < raw["brier"] and cal["log_loss"] < raw["log_loss"] and cal["brier"] < rate * (1 - rate)
    assert abs(cal["mean_probability"] - rate) < 0.05 and cal_warnings == []
    assert abs(cal["roc_auc"] - raw["roc_auc"]) < 0.01
    briers = {k.rsplit(".", 1)[1]: v for k, v in cal_trained.params.items() if k.startswith("calibration.oof_brier.")}
    assert (
        set(briers) == {"none", "sigmoid", "isotonic"}
        and min(briers, key=briers.get) == cal_trained.params["calibration"]
    )
