"""A champion's artifact is checked against the sha256 recorded when it was logged before anything
in it is unpickled: a tampered model.pkl fails the run and runs nothing."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from conftest import mlflow_client, registry_state, run_cli
from modelmill.registry.tracking import MODEL_DIGEST_TAG, dir_digest

pytestmark = pytest.mark.flow


class _Payload:
    """Unpickling this creates a file: the stand-in for an attacker's command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _stored_files(settings, digest: str) -> Path:
    """The folder in the local artifact store whose files are the model version's."""
    (folder,) = [p.parent for p in settings.artifact_root.rglob("model.pkl") if dir_digest(p.parent) == digest]
    return folder


def test_the_model_digest_is_recorded_and_a_tampered_champion_is_never_unpickled(mm_env, prefect_api, capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, err
    c = mlflow_client(mm_env)
    mv = c.get_model_version_by_alias("modelmill-breast_cytology", "champion")
    files = _stored_files(mm_env, mv.tags[MODEL_DIGEST_TAG])  # the recorded digest is the stored files'

    before = registry_state(mm_env, "breast_cytology")
    marker = tmp_path / "pwned"
    (files / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    code, out, err = run_cli(
        capsys, "run", "breast_cytology", "--force"
    )  # unchanged data would skip: force the comparison
    assert code == 1, out + err
    line = [ln for ln in err.splitlines() if "fails its sha256 check" in ln]
    assert line and "modelmill-breast_cytology v1" in line[0] and "refusing to unpickle it" in line[0], err
    assert not marker.exists(), "the tampered pickle was executed"
    assert registry_state(mm_env, "breast_cytology")[:2] == before[:2], "a version was registered or the champion moved"
    run = c.search_runs(
        [c.get_experiment_by_name("modelmill/breast_cytology").experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert run.info.status == "FAILED" and "fails its sha256 check" in run.data.tags["modelmill.error"]


def test_a_champion_whose_files_are_gone_is_reported_missing_not_tampered(example_project, capsys, tmp_path):
    from conftest import write_example_spec
    from modelmill.config.settings import Settings

    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    settings = Settings()
    mv = mlflow_client(settings).get_model_version_by_alias("modelmill-my_cells", "champion")
    (_stored_files(settings, mv.tags[MODEL_DIGEST_TAG]) / "model.pkl").unlink()
    batch = root / "pipelines" / "data" / "batch.csv"
    data.drop(columns=["diagnosis"]).head(20).to_csv(batch, index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(batch), "--output", str(tmp_path / "s.parquet")
    )
    assert code == 1
    assert "modelmill-my_cells v1 is missing model.pkl in the artifact store" in err and "sha256" not in err


def test_a_tampered_model_with_its_digest_tag_rewritten_is_refused_by_the_signature(
    mm_env, prefect_api, capsys, tmp_path
):
    """A registry writer without the project's key replaces model.pkl with a payload, recomputes the
    digest and rewrites the tag: the digest's signature no longer matches, so nothing is unpickled
    (approve and score refuse it in one line)."""
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, err
    c = mlflow_client(mm_env)
    mv = c.get_model_version_by_alias("modelmill-breast_cytology", "champion")
    assert len(mv.tags["modelmill.model_signature"]) == 64
    files = _stored_files(mm_env, mv.tags[MODEL_DIGEST_TAG])
    marker = tmp_path / "pwned"
    (files / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    c.set_model_version_tag("modelmill-breast_cytology", mv.version, MODEL_DIGEST_TAG, dir_digest(files))
    batch = tmp_path / "batch.csv"
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(5).to_csv(batch, index=False)
    code, out, err = run_cli(
        capsys, "score", "breast_cytology", "--input", str(batch), "--output", str(tmp_path / "s.parquet")
    )
    assert code == 1 and "has a signature this project's key did not make" in err
    assert not marker.exists(), "the tampered pickle was executed"


def test_a_run_record_altered_in_the_artifact_store_is_refused_by_reproduce(example_project, capsys):
    """spec.json, suite.json and fingerprint.json are what `reproduce` rebuilds a version from:
    signed with the project's key, an edited copy is refused in one line."""
    import json

    from conftest import write_example_spec
    from modelmill.config.settings import Settings

    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    (recorded,) = Settings().artifact_root.rglob("spec/spec.json")
    edited = json.loads(recorded.read_text())
    edited["candidates"] = edited["candidates"][:1]  # a registry writer rewrites what the version was
    recorded.write_text(json.dumps(edited, indent=2))
    code, out, err = run_cli(capsys, "reproduce", "my_cells", "1")
    assert code == 1
    assert "spec/spec.json of run" in err and "has a signature this project's key did not make" in err
