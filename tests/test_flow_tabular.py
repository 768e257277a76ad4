"""The foundation end to end: real Prefect (temporary API server), real MLflow (SQLite store),
real GX, on the real mirrored German Credit and bundled Wisconsin data.

One project data folder per module: the first run promotes a champion, an identical rerun keeps
it, and each kind of bad input is refused with a one-line error while the champion, the model
versions and the earlier snapshot stay as they were.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from conftest import (
    artifacts,
    assert_refused_and_nothing_lost,
    free_port,
    last_run,
    mlflow_client,
    modelmill_env,
    registry_state,
    require_mirror,
    run_cli,
    write_spec,
)
from modelmill.config.settings import Settings
from modelmill.data.digests import sha256_file

pytestmark = pytest.mark.flow
GERMAN_ZIP = "statlog+german+credit+data.zip"


def _state(settings: Settings):
    return registry_state(settings, "credit_risk", "german-credit")


def _last_run(settings: Settings, experiment="modelmill/credit_risk"):
    return last_run(settings, experiment.removeprefix("modelmill/"))


def test_first_run_trains_logs_everything_and_promotes_a_champion(env, capsys):
    code, out, err = run_cli(capsys, "run", "credit_risk")
    assert code == 0, err
    assert "credit_risk" in out and "champion" in out and "roc_auc" in out
    run = _last_run(env)
    assert run.info.status == "FINISHED"
    tags, m, params = run.data.tags, run.data.metrics, run.data.params
    for tag in (
        "modelmill.pipeline",
        "modelmill.domain",
        "modelmill.data_digest",
        "modelmill.spec_hash",
        "modelmill.git_commit",
        "modelmill.prefect_flow_run_id",
    ):
        assert tags.get(tag) not in (None, "", "none"), tag
    assert tags["modelmill.domain"] == "finance" and tags["modelmill.validation"] == "passed"
    assert tags["modelmill.decision"] == "promoted"
    for k in (
        "roc_auc",
        "pr_auc",
        "ks",
        "brier",
        "log_loss",
        "accuracy",
        "sensitivity",
        "specificity",
        "expected_cost",
        "lift_over_baseline",
    ):
        assert f"test/{k}" in m, k
    assert 0.7 < m["test/roc_auc"] < 0.95  # German Credit: published AUCs are ~0.75-0.80
    assert m["test/baseline_roc_auc"] == pytest.approx(0.5)
    assert m["test/lift_over_baseline"] == pytest.approx(m["test/roc_auc"] - 0.5)
    # Cost matrix: the tuned threshold must beat both trivial policies (accept all: 5 x bad rate; refuse all: good rate).
    assert m["test/expected_cost"] < min(5 * 0.3, 0.7)
    assert params["data.rows"] == "1000" and "spec.metric.name" in params
    c = mlflow_client(env)
    arts = {a.path for d in ("plots", "validation", "tables", "data") for a in c.list_artifacts(run.info.run_id, d)}
    for a in (
        "plots/roc_curve.png",
        "plots/precision_recall.png",
        "plots/calibration.png",
        "plots/confusion_matrix.png",
        "validation/report.html",
        "validation/report.json",
        "tables/model_selection.csv",
        "data/lineage.json",
    ):
        assert a in arts, a
    # the test split's rows are recorded: anyone recomputes the test figures on the same rows
    from sklearn.metrics import roc_auc_score

    membership = pd.read_csv(c.download_artifacts(run.info.run_id, "tables/test_membership.csv", str(env.home)))
    predictions = pd.read_csv(c.download_artifacts(run.info.run_id, "tables/test_predictions.csv", str(env.home)))
    assert len(membership) == int(params["split.test_rows"]) == len(predictions) == 300 and membership["row"].is_unique
    assert predictions["row"].tolist() == membership["row"].tolist()
    snapshot = pd.read_parquet(tags["modelmill.snapshot"])
    assert ((snapshot["class"].to_numpy()[predictions["row"]] == 2).astype(int) == predictions["y_true"]).all()
    assert roc_auc_score(predictions["y_true"], predictions["p_positive"]) == pytest.approx(m["test/roc_auc"], abs=1e-5)
    (ds,) = run.inputs.dataset_inputs  # lineage: digest and schema, no full-frame profile
    assert ds.dataset.digest == tags["modelmill.data_digest"][:12] and ds.dataset.source_type == "local"
    assert "checking_status" in ds.dataset.schema and "credit_amount" in ds.dataset.schema and not ds.dataset.profile
    assert tags["modelmill.targets"] == "class"
    champion = c.get_model_version_by_alias("modelmill-credit_risk", "champion")
    assert champion.run_id == run.info.run_id and str(champion.version) == "1"
    model = mlflow.pyfunc.load_model("models:/modelmill-credit_risk@champion")
    assert model.metadata.signature is not None
    snap = Path(tags["modelmill.snapshot"])
    assert snap.is_file() and snap.stem == tags["modelmill.data_digest"]


def test_identical_rerun_gives_the_same_metrics_and_keeps_the_champion(env, capsys):
    first = _last_run(env)
    code, out, err = run_cli(capsys, "run", "credit_risk", "--force")  # unchanged: retrained only when forced
    assert code == 0, err
    second = _last_run(env)
    assert second.info.run_id != first.info.run_id
    for k, v in first.data.metrics.items():
        if k.startswith("test/"):
            assert second.data.metrics[k] == v, k
    assert second.data.tags["modelmill.data_digest"] == first.data.tags["modelmill.data_digest"]
    assert second.data.tags["modelmill.decision"] == "challenger"
    assert second.data.metrics["promotion/champion_score"] == pytest.approx(second.data.metrics["promotion/new_score"])
    c = mlflow_client(env)
    assert str(c.get_model_version_by_alias("modelmill-credit_risk", "champion").version) == "1"
    assert str(c.get_model_version_by_alias("modelmill-credit_risk", "challenger").version) == "2"


def _mirror_with(tmp_path: Path, data: bytes | None = None, *, german: str | None = None, sums: bool = False) -> Path:
    src = require_mirror()
    mirror = tmp_path / "mirror"
    (mirror / "german-credit").mkdir(parents=True)
    target = mirror / "german-credit" / GERMAN_ZIP
    if german is not None:
        with zipfile.ZipFile(target, "w") as z:
            z.writestr("german.data", german)
    elif data is not None:
        target.write_bytes(data)
    else:
        shutil.copy(src / "german-credit" / GERMAN_ZIP, target)
    if sums:
        shutil.copy(src / "SHA256SUMS.tsv", mirror / "SHA256SUMS.tsv")
    return mirror


def _german_rows() -> list[list[str]]:
    with zipfile.ZipFile(require_mirror() / "german-credit" / GERMAN_ZIP) as z:
        return [r.split() for r in z.read("german.data").decode().splitlines() if r.strip()]


def _real_zip() -> bytes:
    return (require_mirror() / "german-credit" / GERMAN_ZIP).read_bytes()


def _tampered() -> bytes:
    b = bytearray(_real_zip())
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


def _bad_values() -> str:
    rows = _german_rows()
    rows[0][12] = "150"  # age out of range
    rows[1][1] = "?"  # duration not a number -> null
    rows[2][0] = "A19"  # unknown checking-account code
    return "\n".join(" ".join(r) for r in rows) + "\n"


def _missing_field() -> str:
    return "\n".join(" ".join(r[:-2] + r[-1:]) for r in _german_rows()) + "\n"


CASES = {
    "unreachable": dict(mirror=None, url="dead", code=1, fragment="MODELMILL_DATA_MIRROR"),
    "checksum": dict(mirror=lambda t: _mirror_with(t, _tampered(), sums=True), code=1, fragment="checksum mismatch"),
    "truncated": dict(mirror=lambda t: _mirror_with(t, _real_zip()[:5000]), code=1, fragment="not a readable zip"),
    "empty": dict(mirror=lambda t: _mirror_with(t, b""), code=1, fragment="is empty"),
    # Altered data is not the canonical German Credit: refused at fetch unless the spec pins it
    # (``source.sha256``, a user's own copy); pinned, the reader and the gate judge it.
    "altered_unpinned": dict(
        mirror=lambda t: _mirror_with(t, german=_bad_values()), code=1, fragment="not the canonical data"
    ),
    "missing_column": dict(
        mirror=lambda t: _mirror_with(t, german=_missing_field()), pin=True, code=1, fragment="expected 21"
    ),
    "bad_values": dict(
        mirror=lambda t: _mirror_with(t, german=_bad_values()), pin=True, code=3, fragment="data rejected"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_nothing_is_lost(env, capsys, monkeypatch, tmp_path, case):
    c = CASES[case]
    before = _state(env)
    spec_arg = "credit_risk"
    if c.get("url"):  # the same spec, its source moved to a URL nothing answers on
        spec_arg = str(
            write_spec(tmp_path, "credit_risk", source={"url": f"http://127.0.0.1:{free_port()}/{GERMAN_ZIP}"})
        )
    mirror = c["mirror"](tmp_path) if c["mirror"] else None
    if c.get("pin"):
        spec_arg = str(
            write_spec(tmp_path, "credit_risk", source={"sha256": sha256_file(mirror / "german-credit" / GERMAN_ZIP)})
        )
    modelmill_env(monkeypatch, env.home, mirror)
    monkeypatch.setenv("MODELMILL_DOWNLOAD_RETRIES", "1")
    code, out, err = run_cli(capsys, "run", spec_arg)
    run = assert_refused_and_nothing_lost(
        env, "credit_risk", "german-credit", before, code, c["code"], out + err, c["fragment"]
    )
    if c["code"] == 3:
        assert run.data.tags["modelmill.validation"] == "rejected"
        failed = run.data.tags["modelmill.failed_expectations"]
        assert "expect_column_values_to_be_between(age)" in failed
        assert "expect_column_values_to_not_be_null(duration_months)" in failed
        assert "expect_column_values_to_be_in_set(checking_status)" in failed
        assert "validation/report.html" in artifacts(env, run, "validation")


def test_list_shows_pipelines_with_domain_last_run_and_champion(env, capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("credit_risk"))
    assert "finance" in line and "v1" in line and "roc_auc=" in line
    assert any(ln.startswith("breast_cytology") and "never" in ln for ln in out.splitlines())


def test_breast_cytology_trains_on_the_bundled_wisconsin_data(env, capsys):
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, err
    run = _last_run(env, "modelmill/breast_cytology")
    m = run.data.metrics
    assert m["test/roc_auc"] > 0.97 and m["test/sensitivity"] > 0.85 and m["test/specificity"] > 0.85
    assert (
        m["test/accuracy"] > m["test/baseline_accuracy"] + 0.25 and m["test/lift_over_baseline"] > 0.4
    )  # vs the prior
    assert run.data.tags["modelmill.domain"] == "healthcare"
    assert "sklearn" in run.data.params["data.source.breast_cancer.csv"]
    c = mlflow_client(env)
    assert str(c.get_model_version_by_alias("modelmill-breast_cytology", "champion").version) == "1"


def test_the_run_them_all_flow_goes_on_past_a_failure_and_then_fails(env):
    from modelmill_flows.parallel import all_pipelines_flow

    before = last_run(env, "breast_cytology").info.run_id
    state = all_pipelines_flow(["no_such_pipeline", "breast_cytology"], return_state=True)
    assert state.is_failed() and "1 of 2 pipelines did not train: no_such_pipeline" in state.message
    after = last_run(env, "breast_cytology")
    assert after.info.run_id != before and after.info.status == "FINISHED"
