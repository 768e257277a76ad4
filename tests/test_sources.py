"""Input shapes read as they come, with nothing lost silently: a tab-separated file whose
messages hold unbalanced quotes (counted against its lines: an error, a tolerated loss, or read
whole with quoting off), a CSV whose quoted messages span lines (read whole, no warning), and a
headerless TSV of epoch-second ratings named by `columns`."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import require_mirror
from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec, ReadOptions
from modelmill.data.ingest import count_records, ingest
from modelmill.errors import CorruptSource


def _spec(folder, **source) -> PipelineSpec:
    base = {
        "name": "messages", "domain": "customer_service", "description": "d", "target": "label", "features": {"text": "text"},
        "suite": "messages.json", "problem": "text_classification", "baseline": {"name": "prior", "estimator": "dummy_most_frequent"},
        "candidates": [{"name": "svc", "estimator": "linear_svc"}], "metric": {"name": "accuracy"}, "schedule": {"cron": "0 6 * * 1"},
    }  # fmt: skip
    limits = source.pop("limits", {})
    extra = source.pop("spec", {})
    return PipelineSpec(
        **{**base, **extra, "source": {"format": "csv", **source}, "limits": limits}, spec_path=folder / "messages.yaml"
    )


@pytest.fixture
def messages(tmp_path):
    """Real banking queries as a tab-separated export; four carry a stray double quote, which a
    CSV parser reads as a quoted field running on until the next one: 1 + 3 rows merged away."""
    queries = pd.read_csv(require_mirror() / "banking77" / "train.csv").head(300)
    texts = queries["text"].str.replace("\t", " ").tolist()
    texts[150], texts[151] = '"' + texts[150], texts[151] + '"'
    texts[200], texts[203] = '"' + texts[200], texts[203] + '"'
    lines = ["text\tlabel", *(f"{t}\t{c}" for t, c in zip(texts, queries["category"], strict=True)), ""]
    (tmp_path / "messages.tsv").write_text("\n".join(lines))
    return tmp_path


def test_records_are_counted_from_the_lines(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"a,b\r\n1,2\r\n\r\n3,4\n\n5,6")  # blank lines and a last line with no newline
    assert count_records(p, 1) == 3


def test_rows_merged_by_unbalanced_quotes_are_an_error_a_warning_or_read_with_quoting_off(
    messages, monkeypatch, caplog
):
    monkeypatch.setenv("MODELMILL_HOME", str(messages / "home"))
    settings = Settings()
    with pytest.raises(
        CorruptSource,
        match=r"messages.tsv holds 300 records \(non-blank lines\) but 296 rows were read: 4 lost or merged .*quoting: none.*max_lost_rows is 0",
    ):
        ingest(_spec(messages, path="messages.tsv", read_options={"sep": "\t"}), settings)
    tolerant = _spec(messages, path="messages.tsv", read_options={"sep": "\t"}, limits={"max_lost_rows": 300})
    snap = ingest(tolerant, settings)
    records, read = snap.parsed
    assert (records, read) == (300, 296) and snap.rows == read
    assert any("lost or merged" in m for m in caplog.messages)
    whole = ingest(_spec(messages, path="messages.tsv", read_options={"sep": "\t", "quoting": "none"}), settings)
    assert whole.parsed == (300, 300) and whole.rows == 300
    frame = whole.load()
    assert (
        frame["text"].iloc[150].startswith('"')
        and frame["label"].iloc[151] == pd.read_csv(require_mirror() / "banking77" / "train.csv")["category"].iloc[151]
    )


def test_fields_written_over_several_lines_are_records_not_losses(tmp_path, monkeypatch, caplog):
    """A well-formed export whose quoted messages hold line breaks (as exported tweets and
    tickets do) is read whole with no warning; the stray quotes of the test above still count."""
    import logging

    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "home"))
    queries = pd.read_csv(require_mirror() / "banking77" / "train.csv").head(300)
    texts = queries["text"].copy()
    broken = texts.index[::7]  # 43 messages, each written over two or three lines, one with a comma
    texts[broken] = texts[broken].str.replace(" ", "\n", n=2) + ", sent from my phone"
    pd.DataFrame({"text": texts, "label": queries["category"]}).to_csv(tmp_path / "messages.csv", index=False)
    assert count_records(tmp_path / "messages.csv", 1) > 300 + len(broken)  # its lines say more
    with caplog.at_level(logging.INFO, logger="modelmill"):
        snap = ingest(_spec(tmp_path, path="messages.csv"), Settings())
    assert snap.parsed == (300, 300) and snap.rows == 300
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "messages.csv" in r.getMessage()]
    assert any("holds 300 records over" in m and "line breaks inside quoted fields" in m for m in caplog.messages)
    assert snap.load()["text"].iloc[broken[1]] == texts[broken[1]]


def test_a_headerless_tsv_with_epoch_seconds_is_named_and_dated(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELMILL_HOME", str(tmp_path / "home"))
    rows = [(1, "m10", 4, 1_577_836_800), (1, "m11", 2, 1_577_923_200), (2, "m10", 5, 1_578_009_600)] * 20
    (tmp_path / "ratings.tsv").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    assert ReadOptions(header=False).header is None  # not row 0, as pydantic alone would read False
    spec = _spec(
        tmp_path, path="ratings.tsv", read_options={"sep": "\t", "header": False, "columns": ["user", "item", "rating", "rated_at"]}, parse_dates=["rated_at"], date_unit="s",
        spec={"target": None, "features": {}, "problem": "recommendation", "roles": {"user": "user", "item": "item", "rating": "rating", "date": "rated_at"},
              "baseline": {"name": "popularity", "estimator": "popularity"}, "candidates": [{"name": "knn", "estimator": "item_knn"}], "metric": {"name": "ndcg_at_10"}},
    )  # fmt: skip
    snap = ingest(spec, Settings())
    frame = snap.load()
    assert list(frame.columns) == ["user", "item", "rating", "rated_at"] and snap.rows == 60 and snap.parsed == (60, 60)
    assert pd.api.types.is_datetime64_any_dtype(frame["rated_at"]) and frame["rated_at"].iloc[0] == pd.Timestamp(
        "2020-01-01"
    )
