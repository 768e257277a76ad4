"""A champion's artifact is checked against the sha256 recorded when it was logged before anything
in it is loaded: a tampered model file fails the run and runs nothing. Models are skops files loaded
against modelmill's allow-list, so even a writer holding the signing key cannot make a load run code."""

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
    (folder,) = [p.parent for p in settings.artifact_root.rglob("MLmodel") if dir_digest(p.parent) == digest]
    return folder


def _sign_as_the_key_holder(settings, name: str, version: str, files: Path) -> None:
    """What a registry writer who also holds the project's key does after editing a version's files:
    recompute the digest and sign it, exactly as modelmill would."""
    from modelmill.config.trust import signer
    from modelmill.registry.tracking import MODEL_SIGNATURE_TAG, ModelRef, _model_text

    digest = dir_digest(files)
    ref = ModelRef(name, version, "", "")
    c = mlflow_client(settings)
    c.set_model_version_tag(name, version, MODEL_DIGEST_TAG, digest)
    c.set_model_version_tag(
        name, version, MODEL_SIGNATURE_TAG, signer(settings).sign("model", _model_text(ref, digest))
    )


def test_the_model_digest_is_recorded_and_a_tampered_champion_is_never_unpickled(mm_env, prefect_api, capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, err
    c = mlflow_client(mm_env)
    mv = c.get_model_version_by_alias("modelmill-breast_cytology", "champion")
    files = _stored_files(mm_env, mv.tags[MODEL_DIGEST_TAG])  # the recorded digest is the stored files'

    assert (files / "model.skops").is_file() and not (files / "model.pkl").exists()
    before = registry_state(mm_env, "breast_cytology")
    marker = tmp_path / "pwned"
    (files / "model.skops").write_bytes(pickle.dumps(_Payload(marker)))
    code, out, err = run_cli(
        capsys, "run", "breast_cytology", "--force"
    )  # unchanged data would skip: force the comparison
    assert code == 1, out + err
    line = [ln for ln in err.splitlines() if "fails its sha256 check" in ln]
    assert line and "modelmill-breast_cytology v1" in line[0] and "refusing to load it" in line[0], err
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
    (_stored_files(settings, mv.tags[MODEL_DIGEST_TAG]) / "model.skops").unlink()
    batch = root / "pipelines" / "data" / "batch.csv"
    data.drop(columns=["diagnosis"]).head(20).to_csv(batch, index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(batch), "--output", str(tmp_path / "s.parquet")
    )
    assert code == 1
    assert "modelmill-my_cells v1 is missing model.skops in the artifact store" in err and "sha256" not in err


def test_a_tampered_model_with_its_digest_tag_rewritten_is_refused_by_the_signature(
    mm_env, prefect_api, capsys, tmp_path
):
    """A registry writer without the project's key replaces the model file with a payload, recomputes the
    digest and rewrites the tag: the digest's signature no longer matches, so nothing is unpickled
    (approve and score refuse it in one line)."""
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, err
    c = mlflow_client(mm_env)
    mv = c.get_model_version_by_alias("modelmill-breast_cytology", "champion")
    assert len(mv.tags["modelmill.model_signature"]) == 64
    files = _stored_files(mm_env, mv.tags[MODEL_DIGEST_TAG])
    marker = tmp_path / "pwned"
    (files / "model.skops").write_bytes(pickle.dumps(_Payload(marker)))
    c.set_model_version_tag("modelmill-breast_cytology", mv.version, MODEL_DIGEST_TAG, dir_digest(files))
    code, out, err = _score_five_rows(capsys, tmp_path)
    assert code == 1 and "has a signature this project's key did not make" in err
    assert not marker.exists(), "the tampered pickle was executed"


def _score_five_rows(capsys, tmp_path):
    from sklearn.datasets import load_breast_cancer

    batch = tmp_path / "batch.csv"
    rows = load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(5)
    rows.rename(columns=lambda c: c.replace(" ", "_")).to_csv(batch, index=False)
    return run_cli(capsys, "score", "breast_cytology", "--input", str(batch), "--output", str(tmp_path / "s.parquet"))


def test_with_the_key_leaked_a_model_still_cannot_run_code_when_loaded(
    mm_env, prefect_api, capsys, tmp_path, monkeypatch
):
    """A registry writer who holds the signing key signs two payloads: a skops file whose model
    carries ``os.system``, and a pickle declared as the version's format in its MLmodel. The first
    names a type off modelmill's allow-list, the second is a pickle for a pipeline whose candidates
    hold no network: both are refused before anything in them is built (unless the operator sets
    MODELMILL_LOAD_PICKLES), and the champion scores again once its own files are back."""
    import os
    import shutil

    import skops.io
    import yaml

    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, err
    name = "modelmill-breast_cytology"
    mv = mlflow_client(mm_env).get_model_version_by_alias(name, "champion")
    files = _stored_files(mm_env, mv.tags[MODEL_DIGEST_TAG])
    original = tmp_path / "original"
    shutil.copytree(files, original)

    model = skops.io.load(files / "model.skops", trusted=skops.io.get_untrusted_types(file=files / "model.skops"))
    model.steps[-1][1].callback_ = os.system  # a callable a crafted file could have rebuilt
    skops.io.dump(model, files / "model.skops")
    _sign_as_the_key_holder(mm_env, name, mv.version, files)
    code, out, err = _score_five_rows(capsys, tmp_path)
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if "allow-list" in ln]
    assert f"{name} v{mv.version} holds types outside modelmill's allow-list (posix.system)" in line, err

    marker = tmp_path / "pwned"
    (files / "model.skops").unlink()
    (files / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    mlmodel = yaml.safe_load((files / "MLmodel").read_text())
    for flavor in ("sklearn", "python_function"):
        mlmodel["flavors"][flavor].update({"pickled_model": "model.pkl", "model_path": "model.pkl"})
        mlmodel["flavors"][flavor]["serialization_format"] = "cloudpickle"
    (files / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    _sign_as_the_key_holder(mm_env, name, mv.version, files)
    code, out, err = _score_five_rows(capsys, tmp_path)
    assert code == 1 and f"{name} v{mv.version} is a pickle, and no candidate of pipeline breast_cytology" in err, err
    assert not marker.exists(), "the pickle was loaded"
    monkeypatch.setenv("MODELMILL_LOAD_PICKLES", "1")  # the operator's opt-in does load it: the payload runs
    code, out, err = _score_five_rows(capsys, tmp_path)
    assert marker.exists(), err
    monkeypatch.delenv("MODELMILL_LOAD_PICKLES")

    shutil.rmtree(files)
    shutil.copytree(original, files)
    _sign_as_the_key_holder(mm_env, name, mv.version, files)
    code, out, err = _score_five_rows(capsys, tmp_path)
    assert code == 0, err


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
