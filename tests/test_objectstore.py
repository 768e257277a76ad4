"""Snapshots on a real S3-compatible object store (SeaweedFS on loopback): every run records the
store's location, a worker with an empty local folder reads (or reuses) them from the store,
checksum verified; a tampered object is refused; a store that goes down is one line and leaves
nothing published under a final name."""

from __future__ import annotations

import hashlib
import shutil

from conftest import last_run, mlflow_client, modelmill_env, run_cli
from modelmill.settings import Settings


def _use(monkeypatch, tmp_path, store) -> Settings:
    modelmill_env(monkeypatch, tmp_path / "home")  # breast_cytology: Wisconsin, bundled with scikit-learn
    for k, v in store.env().items():
        monkeypatch.setenv(k, v)
    return Settings()


def _objects(store, folder: str) -> dict[str, bytes]:
    from pyarrow import fs

    s3 = store.fs()
    found = s3.get_file_info(fs.FileSelector(f"{store.BUCKET}/{folder}", recursive=True, allow_not_found=True))
    out = {}
    for info in found:
        if info.type == fs.FileType.File:
            with s3.open_input_stream(info.path) as f:
                out[info.path.removeprefix(f"{store.BUCKET}/")] = f.read()
    return out


def test_snapshots_live_in_the_store_a_worker_with_an_empty_folder_uses_them_and_a_tampered_one_is_refused(seaweedfs, tmp_path, monkeypatch, capsys, prefect_api):
    settings = _use(monkeypatch, tmp_path, seaweedfs)
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, out + err
    run = last_run(settings, "breast_cytology")
    digest, recorded = run.data.tags["modelmill.data_digest"], run.data.tags["modelmill.snapshot"]
    assert recorded == f"s3://modelmill/team/snapshots/wisconsin-breast-cancer/{digest}.parquet"
    objects = _objects(seaweedfs, "team/snapshots/wisconsin-breast-cancer")
    assert hashlib.sha256(objects[f"team/snapshots/wisconsin-breast-cancer/{digest}.parquet"]).hexdigest() == digest
    assert f"team/snapshots/wisconsin-breast-cancer/{digest}.json" in objects and any("/parsed/" in k for k in objects)
    assert not any(".upload-" in k for k in objects)  # temporary keys are gone once published

    # another worker: nothing local but the tracking store; the snapshot (parsed before) and the
    # champion's (for drift) come from the object store
    shutil.rmtree(settings.snapshot_dir)
    code, out, err = run_cli(capsys, "run", "breast_cytology", "--force")
    assert code == 0, out + err
    assert "parsed on another worker" in err and f"snapshot {digest[:12]}" in err
    again = last_run(settings, "breast_cytology")
    assert again.data.tags["modelmill.snapshot"] == recorded and again.data.tags["modelmill.drift_reference"] == digest
    assert "drift/psi_max" in again.data.metrics

    # a worker process given the snapshot object (as a distributed task runner passes it) reads it from the store
    import pickle

    from modelmill.ingest import ingest
    from modelmill.spec import load_spec

    snap = ingest(load_spec("breast_cytology", settings), settings)
    shutil.rmtree(settings.snapshot_dir)
    shutil.rmtree(settings.home_dir / "store-cache", ignore_errors=True)
    elsewhere = pickle.loads(pickle.dumps(snap))
    assert not elsewhere.path.exists() and len(elsewhere.load()) == 569

    code, out, err = run_cli(capsys, "reproduce", "breast_cytology", "1")
    assert code == 0 and ": identical" in out, out + err

    # a tampered object is refused by its checksum
    key = recorded.removeprefix("s3://")
    s3 = seaweedfs.fs()
    with s3.open_input_stream(key) as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with s3.open_output_stream(key) as f:
        f.write(bytes(data))
    shutil.rmtree(settings.snapshot_dir, ignore_errors=True)
    shutil.rmtree(settings.home_dir / "store-cache", ignore_errors=True)
    code, out, err = run_cli(capsys, "reproduce", "breast_cytology", "1")
    assert code == 1 and f"the snapshot cannot be read: {recorded} fails its checksum" in out and "refusing it" in out


def test_a_store_that_goes_down_is_one_line_and_nothing_is_half_published(seaweedfs, tmp_path, monkeypatch, capsys, prefect_api):
    settings = _use(monkeypatch, tmp_path, seaweedfs)
    seaweedfs.stop()  # down before the snapshot is published: the source is parsed, then the store is needed
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 1, out + err
    lines = [ln for ln in err.splitlines() if "object store" in ln]
    assert lines and f"the object store MODELMILL_STORE_URI=s3://modelmill/team at {seaweedfs.endpoint} could not" in lines[0]
    run = last_run(settings, "breast_cytology")
    assert run.info.status == "FAILED" and "could not" in run.data.tags["modelmill.error"] and "\n" not in run.data.tags["modelmill.error"]
    seaweedfs.start()
    assert _objects(seaweedfs, "team/snapshots") == {}  # nothing under a final name
    versions = mlflow_client(settings).search_model_versions("name='modelmill-breast_cytology'")
    assert versions == []
