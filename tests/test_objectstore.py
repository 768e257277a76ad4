"""Snapshots on a real S3-compatible object store (SeaweedFS on loopback): every run records the
store's location, a worker with an empty local folder reads (or reuses) them from the store,
checksum verified; a tampered object is refused; a store that goes down is one line and leaves
nothing published under a final name."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from conftest import last_run, mlflow_client, modelmill_env, run_cli
from modelmill.config.settings import Settings


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


def test_snapshots_live_in_the_store_a_worker_with_an_empty_folder_uses_them_and_a_tampered_one_is_refused(
    seaweedfs, tmp_path, monkeypatch, capsys, prefect_api
):
    from modelmill.data import objectstore

    settings = _use(monkeypatch, tmp_path, seaweedfs)
    built, original = [], objectstore.ObjectStore.__init__

    def counted(self, *args):
        built.append(args[0])
        original(self, *args)

    monkeypatch.setattr(objectstore.ObjectStore, "__init__", counted)
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, out + err
    assert built == [settings.store_uri]  # one handle (one S3 client) for every stage of the command
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

    from modelmill.config.spec import load_spec
    from modelmill.data.ingest import ingest

    snap = ingest(load_spec("breast_cytology", settings), settings)
    shutil.rmtree(settings.snapshot_dir)
    shutil.rmtree(settings.home_dir / "store-cache", ignore_errors=True)
    elsewhere = pickle.loads(pickle.dumps(snap))
    assert not elsewhere.path.exists() and len(elsewhere.load()) == 569

    code, out, err = run_cli(capsys, "reproduce", "breast_cytology", "1")
    assert code == 0 and ": identical" in out, out + err

    # a scoring batch's predictions are kept in the store too, for the outcomes another worker joins
    from sklearn.datasets import load_breast_cancer

    from modelmill.data import scored_rows

    rows = load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(12)
    rows.rename(columns=lambda c: c.replace(" ", "_")).to_csv(tmp_path / "batch.csv", index=False)
    code, out, err = run_cli(
        capsys,
        "score",
        "breast_cytology",
        "--input",
        str(tmp_path / "batch.csv"),
        "--output",
        str(tmp_path / "s.parquet"),
    )
    assert code == 0, out + err
    (kept,) = scored_rows.batches(settings, "breast_cytology")
    stored = _objects(seaweedfs, "team/scored/breast_cytology")
    assert (
        list(stored) == [f"team/scored/breast_cytology/{kept.name}"]
        and stored[f"team/scored/breast_cytology/{kept.name}"] == kept.read_bytes()
    )

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


def test_a_store_that_goes_down_is_one_line_and_nothing_is_half_published(
    seaweedfs, tmp_path, monkeypatch, capsys, prefect_api
):
    settings = _use(monkeypatch, tmp_path, seaweedfs)
    seaweedfs.stop()  # down before the snapshot is published: the source is parsed, then the store is needed
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 1, out + err
    lines = [ln for ln in err.splitlines() if "object store" in ln]
    assert (
        lines
        and f"the object store MODELMILL_STORE_URI=s3://modelmill/team at {seaweedfs.endpoint} could not" in lines[0]
    )
    run = last_run(settings, "breast_cytology")
    assert (
        run.info.status == "FAILED"
        and "could not" in run.data.tags["modelmill.error"]
        and "\n" not in run.data.tags["modelmill.error"]
    )
    seaweedfs.start()
    assert _objects(seaweedfs, "team/snapshots") == {}  # nothing under a final name
    versions = mlflow_client(settings).search_model_versions("name='modelmill-breast_cytology'")
    assert versions == []


def test_downloads_and_embeddings_go_to_the_store_so_a_cluster_fetches_and_encodes_each_once(
    seaweedfs, tmp_path, monkeypatch
):
    """A second machine (another MODELMILL_HOME) takes a source file another one downloaded from
    the store, its sha256 checked, while the mirror is down; and reads the embeddings another one
    encoded instead of encoding them again."""
    from conftest import require_mirror, serve_directory
    from modelmill.data.catalog import CATALOG
    from modelmill.data.digests import sha256_file
    from modelmill.data.fetch import fetch_catalog_file
    from modelmill.errors import ChecksumMismatch
    from modelmill.learn.kinds import sentences

    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    german = CATALOG["german-credit"]
    with serve_directory(require_mirror()) as url:
        first = fetch_catalog_file(german, german.files[0], Settings(home=tmp_path / "a", data_mirror=url))
    downloads = _objects(seaweedfs, "team/downloads")
    content, [index] = (
        downloads.pop(f"team/downloads/{first.sha256}.zip"),
        downloads.values(),
    )  # the file by its content, and its index entry
    entry = json.loads(index)
    assert len(entry.pop("signature")) == 64  # signed with the project's key
    assert hashlib.sha256(content).hexdigest() == first.sha256 and entry == {
        "what": "german-credit/statlog+german+credit+data.zip",
        "sha256": first.sha256,
        "key": f"downloads/{first.sha256}.zip",
    }
    # the mirror is gone (the same URL answers nothing): the other machine takes the store's copy
    second = fetch_catalog_file(
        german, german.files[0], Settings(home=tmp_path / "b", data_mirror=url, download_retries=1, download_timeout=2)
    )
    assert (
        second.sha256 == first.sha256
        and second.path.is_relative_to(tmp_path / "b")
        and sha256_file(second.path) == first.sha256
    )

    calls: list[int] = []
    real = sentences.encode_batch
    monkeypatch.setattr(sentences, "encode_batch", lambda model, texts: calls.append(len(texts)) or real(model, texts))
    texts = [f"the parcel arrived {n} days late and the box was {w}" for n in range(12) for w in ("crushed", "fine")]
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "a"))
    sentences._CACHES.clear()
    here = sentences.SentenceEncoder(batch_size=8).fit(texts).transform(texts)
    assert sum(calls) == len(texts)
    stored = _objects(seaweedfs, "team/embeddings")
    shards = {k: b for k, b in stored.items() if k.endswith(".npz")}
    assert len(shards) == 3 and all(
        hashlib.sha256(b).hexdigest() == k.rsplit("/", 1)[1].removesuffix(".npz") for k, b in shards.items()
    )
    assert all(len(json.loads(stored[f"{k}.json"])["signature"]) == 64 for k in shards)  # each named, signed
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "b"))  # another machine: nothing of them on its disk
    sentences._CACHES.clear()
    there = sentences.SentenceEncoder(batch_size=8).fit(texts).transform(texts)
    assert sum(calls) == len(texts) and np.array_equal(here, there)  # nothing encoded again

    # a shard altered in the store is refused by its checksum
    key = next(iter(shards))
    with seaweedfs.fs().open_output_stream(f"{seaweedfs.BUCKET}/{key}") as out:
        out.write(shards[key][:-1] + bytes([shards[key][-1] ^ 1]))
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "c"))
    sentences._CACHES.clear()
    with pytest.raises(ChecksumMismatch, match="altered in the store"):
        sentences.SentenceEncoder(batch_size=8).fit(texts).transform(texts)

    # a shard added by someone without the project's key (its name unsigned) is refused
    from modelmill.config.trust import Untrusted

    rogue = shards[key]
    rogue_key = f"team/embeddings/{key.split('/')[2]}/{hashlib.sha256(rogue + b'x').hexdigest()}.npz"
    with seaweedfs.fs().open_output_stream(f"{seaweedfs.BUCKET}/{rogue_key}") as out:
        out.write(rogue)
    with seaweedfs.fs().open_output_stream(f"{seaweedfs.BUCKET}/{rogue_key}.json") as out:
        out.write(json.dumps({"sha256": hashlib.sha256(rogue).hexdigest()}).encode())
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "d"))
    sentences._CACHES.clear()
    with pytest.raises(Untrusted, match="is not signed"):
        sentences.SentenceEncoder(batch_size=8).fit(texts).transform(texts)


def test_a_snapshot_swapped_in_the_store_by_someone_without_the_key_is_refused(
    seaweedfs, tmp_path, monkeypatch, capsys, prefect_api
):
    """With the store's credentials but not the project's key: upload a label-flipped copy of a
    snapshot under its own sha256 and point the parse-map entry at it. A worker with an empty
    folder refuses the entry in one line instead of training on it; nothing is registered."""
    import io

    import pandas as pd

    from conftest import registry_state

    settings = _use(monkeypatch, tmp_path, seaweedfs)
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 0, out + err
    prefix = "team/snapshots/wisconsin-breast-cancer"
    objects = _objects(seaweedfs, prefix)
    (entry_key,) = [k for k in objects if "/parsed/" in k]
    digest = json.loads(objects[entry_key])["digest"]
    rows = pd.read_parquet(io.BytesIO(objects[f"{prefix}/{digest}.parquet"]))
    flipped = rows.assign(diagnosis=rows["diagnosis"].map({"malignant": "benign", "benign": "malignant"}))
    buf = io.BytesIO()
    flipped.to_parquet(buf, index=False)
    evil = hashlib.sha256(buf.getvalue()).hexdigest()
    s3 = seaweedfs.fs()
    for key, data in {
        f"{seaweedfs.BUCKET}/{prefix}/{evil}.parquet": buf.getvalue(),
        f"{seaweedfs.BUCKET}/{prefix}/{evil}.json": objects[f"{prefix}/{digest}.json"],
        f"{seaweedfs.BUCKET}/{entry_key}": json.dumps({"digest": evil}).encode(),
    }.items():
        with s3.open_output_stream(key) as f:
            f.write(data)
    before = registry_state(settings, "breast_cytology")
    shutil.rmtree(settings.snapshot_dir)  # a worker with an empty folder
    code, out, err = run_cli(capsys, "run", "breast_cytology", "--force")
    assert code == 1
    assert (
        f"object-store entry {entry_key.removeprefix('team/')} is not signed (MODELMILL_SIGNING_KEY): refusing it"
        in err
    )
    assert registry_state(settings, "breast_cytology")[:2] == before[:2]

    # signed with another key: refused too
    monkeypatch.setenv("MODELMILL_SIGNING_KEY", "someone-elses-key-0123456789")
    from modelmill.config.trust import signer

    forged = signer(Settings()).sign_entry(entry_key.removeprefix("team/"), {"digest": evil})
    with s3.open_output_stream(f"{seaweedfs.BUCKET}/{entry_key}") as f:
        f.write(json.dumps(forged).encode())
    monkeypatch.setenv("MODELMILL_SIGNING_KEY", "modelmill-test-suite-signing-key")
    code, out, err = run_cli(capsys, "run", "breast_cytology", "--force")
    assert code == 1 and "has a signature this project's key did not make: refusing it" in err


def test_an_object_store_needs_the_signing_key(seaweedfs, tmp_path, monkeypatch, capsys, prefect_api):
    _use(monkeypatch, tmp_path, seaweedfs)
    monkeypatch.delenv("MODELMILL_SIGNING_KEY")
    code, out, err = run_cli(capsys, "run", "breast_cytology")
    assert code == 1
    assert "MODELMILL_SIGNING_KEY (or MODELMILL_SIGNING_KEY_FILE) must be set with an object store" in err
