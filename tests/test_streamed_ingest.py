"""A user's CSV goes into its snapshot a block at a time (memory flat in the
file's size), and the streamed snapshot loads as the same frame as the whole-file read: missing
values in pandas' spellings, integers with gaps, ISO dates, dropped columns. A file whose types the
first block does not settle (text further down a number column, a currency sign in a declared
number) is read whole instead, and a snapshot altered on disk is not reused."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, require_mirror
from modelmill.config.settings import Settings
from modelmill.config.spec import load_spec
from modelmill.data import ingest as ingest_module
from modelmill.data.digests import sha256_file
from modelmill.data.ingest import fetch_sources, ingest, read_source, write_snapshot
from modelmill.errors import ChecksumMismatch, SpecError

ROWS = 3000


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The benchmark's generated credit project (3000 rows), with some of a real export's mess,
    and a block small enough that the file is parsed in dozens of blocks."""
    sys.path.insert(0, str(REPO / "scripts"))
    from large_credit import write_project

    root = tmp_path / "project"
    settings = Settings(home=tmp_path / "home", data_mirror=str(require_mirror()), pipelines_dir=root / "pipelines")
    monkeypatch.setattr(ingest_module, "STREAM_BLOCK", 16 << 10)
    write_project(root, ROWS)
    csv = root / "pipelines" / "data" / "credit.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(3)
    for i, spelling in enumerate(["NA", "", "null", "N/A", "nan", "None"]):
        df.loc[rng.choice(ROWS, 20, replace=False), df.columns[i]] = spelling  # text columns, missing
    df.loc[rng.choice(np.arange(500, ROWS), 30, replace=False), "age"] = ""  # an integer column with gaps
    df["opened"] = pd.date_range("2020-01-01", periods=ROWS, freq="D").strftime("%Y-%m-%d")
    df.loc[rng.choice(ROWS, 10, replace=False), "opened"] = ""
    df["flag"] = np.where(np.arange(ROWS) % 3 == 0, "true", "false")
    df["note"] = "free text, with a comma"
    df.to_csv(csv, index=False)
    path = root / "pipelines" / "big_credit.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["source"]["parse_dates"] = ["opened"]
    spec["drop"] = ["note"]
    path.write_text(yaml.safe_dump(spec))
    return settings, csv, path


def _whole(settings: Settings, name: str = "big_credit") -> pd.DataFrame:
    """The snapshot the whole-file path (pandas' pyarrow engine, then typing) writes."""
    spec = load_spec(name, settings)
    snap = write_snapshot(read_source(spec, fetch_sources(spec, settings)), "whole", settings, [], None)
    return pd.read_parquet(snap.path)


def _spec(path, **changes) -> None:
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(spec | changes))


def test_a_csv_is_streamed_into_its_snapshot_and_loads_as_the_whole_read_does(project):
    settings, _, _ = project
    snap = ingest(load_spec("big_credit", settings), settings)
    assert pq.ParquetFile(snap.path).metadata.num_row_groups > 10  # a row group per block: streamed
    assert snap.rows == ROWS and "note" not in snap.columns and snap.digest == sha256_file(snap.path)
    streamed = pd.read_parquet(snap.path)
    pd.testing.assert_frame_equal(streamed, _whole(settings))
    assert streamed["age"].isna().sum() == 30 and streamed["checking_status"].isna().sum() == 20
    assert pd.api.types.is_datetime64_any_dtype(streamed["opened"]) and streamed["opened"].isna().sum() == 10


@pytest.mark.parametrize(
    "mess",
    [
        pytest.param(
            lambda df: df.assign(age=df["age"].where(df.index < ROWS - 1, "unknown")),
            id="text-far-down-a-number-column",
        ),
        pytest.param(lambda df: df.assign(credit_amount="$" + df["credit_amount"]), id="currency-in-a-declared-number"),
        pytest.param(
            lambda df: df.assign(opened=pd.to_datetime(df["opened"]).dt.strftime("%m/%d/%Y")), id="dates-not-iso"
        ),
    ],
)
def test_a_file_the_first_block_does_not_settle_is_read_whole(project, mess, caplog):
    settings, csv, _ = project
    mess(pd.read_csv(csv, dtype=str, keep_default_na=False)).to_csv(csv, index=False)
    with caplog.at_level(logging.INFO, logger="modelmill.data.ingest"):
        snap = ingest(load_spec("big_credit", settings), settings)
    assert "cannot be streamed" in caplog.text and "reading it whole" in caplog.text
    assert pq.ParquetFile(snap.path).metadata.num_row_groups == 1
    pd.testing.assert_frame_equal(pd.read_parquet(snap.path), _whole(settings))
    assert not [p for p in snap.path.parent.iterdir() if p.suffix == ".tmp"]  # the abandoned stream left nothing


def test_reader_options_and_a_missing_drop_column(project):
    settings, csv, path = project
    (csv.parent / "semi.csv").write_text(csv.read_text().replace(",", ";").replace("; with a comma", ", with a comma"))
    _spec(
        path,
        source={
            "path": "data/semi.csv",
            "parse_dates": ["opened"],
            "read_options": {"sep": ";", "na_values": ["unknown"]},
        },
    )
    snap = ingest(load_spec("big_credit", settings), settings)
    assert pq.ParquetFile(snap.path).metadata.num_row_groups > 10
    pd.testing.assert_frame_equal(pd.read_parquet(snap.path), _whole(settings))
    _spec(path, drop=["no_such_column"])
    with pytest.raises(SpecError, match="drop names columns the source does not have: no_such_column"):
        ingest(load_spec("big_credit", settings), settings)


def test_a_snapshot_altered_on_disk_is_not_reused(project, caplog):
    settings, _, _ = project
    spec = load_spec("big_credit", settings)
    snap = ingest(spec, settings)
    original = pd.read_parquet(snap.path)
    altered = original.assign(age=original["age"].fillna(0) + 1)
    altered.to_parquet(snap.path)
    with caplog.at_level(logging.INFO, logger="modelmill.data.ingest"):
        again = ingest(spec, settings)
    assert "was altered since it was written" in caplog.text
    assert again.path == snap.path and sha256_file(again.path) == snap.digest
    pd.testing.assert_frame_equal(pd.read_parquet(again.path), original)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="modelmill.data.ingest"):
        ingest(spec, settings)
    assert "reused without parsing" in caplog.text


def test_the_checksum_taken_beside_the_parse_still_refuses_a_file_that_fails_its_pin(project):
    settings, csv, path = project
    spec = yaml.safe_load(path.read_text())
    _spec(path, source={**spec["source"], "sha256": "0" * 64})
    with pytest.raises(ChecksumMismatch, match="checksum mismatch for credit.csv"):
        ingest(load_spec("big_credit", settings), settings)
    folder = settings.snapshot_dir / "big_credit"
    assert not list(folder.glob("*.parquet")) and not list(folder.glob("*.tmp"))  # nothing parsed is kept
    _spec(path, source={**spec["source"], "sha256": sha256_file(csv)})
    snap = ingest(load_spec("big_credit", settings), settings)
    assert snap.sources[0]["verified"] == "known" and snap.sources[0]["sha256"] == sha256_file(csv)
