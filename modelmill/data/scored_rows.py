"""What the champion predicted for each row it scored, kept so that the truth arriving later can be
joined to it.

Every scoring batch (``modelmill score``, a scheduled one, one with a shadow version beside the
champion) leaves one Parquet file, ``scored/<pipeline>/<batch>.parquet``, in the project's folder
and, when an object store is configured, under the same key there. It holds one row per scored
row (per recommended item for a recommender): ``row_key`` (the value of the spec's ``roles.id``
column, or when there is none a 64-bit digest of the row's input values, the same for the same
row in any later file), then what was predicted: the label and its probability or score, a
forecast's value, or the user, rank and item of a recommendation. Its file metadata name the
batch, its time (UTC), the pipeline, the model version, the input's sha256 and how rows are keyed.

Batches are named by their time, so they sort; those older than the retention
(``MODELMILL_SCORED_RETENTION_DAYS``, default 400) are removed when the next batch is written.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.config.settings import Settings

log = logging.getLogger("modelmill.scored")

KEY = "row_key"
FOLDER = "scored"
TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"


def batch_name(at: datetime, run_id: str) -> str:
    """A batch's name: its UTC time (so names sort by time) and its scoring run."""
    return f"{at.astimezone(UTC).strftime(TIME_FORMAT)}-{run_id[:12]}"


def batch_time(name: str) -> datetime | None:
    try:
        return datetime.strptime(name.split("-", 1)[0], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def row_keys(frame: pd.DataFrame, id_column: str | None, typed: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each row's key and how it was made: the ``id_column`` value of ``frame`` as text, or when
    the spec names no id a digest (hex, 16 characters) of the row as the model takes it
    (``typed``: values typed as at training, so a CSV and a Parquet copy of a row key alike)."""
    if id_column and id_column in frame.columns:
        return frame[id_column].astype("string").reset_index(drop=True), f"roles.id ({id_column})"
    from modelmill.data.rowdigests import row_digests

    if not isinstance(typed, pd.DataFrame):  # an image model's input: one array per row, hashed as a cell
        typed = pd.DataFrame({"input": list(np.asarray(typed))})
    digests = row_digests(typed, [str(c) for c in typed.columns])
    return pd.Series([f"{d:016x}" for d in digests], dtype="string"), "digest of the row's input values"


def folder(settings: Settings, pipeline: str) -> Path:
    return settings.home_dir / FOLDER / pipeline


def write_parquet(frame: pd.DataFrame, path: Path, meta: dict[str, str]) -> None:
    """``frame`` as Parquet with ``meta`` in its file metadata (``modelmill.<key>``), written beside
    its final name and then renamed: a killed writer leaves no half file under that name, and its
    temporary file is swept by the next command (:func:`modelmill.runtime.reconcile.clean_stale_temp`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelmill.runtime.reconcile import temp_prefix

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), **{f"modelmill.{k}".encode(): str(v).encode() for k, v in meta.items()}}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_prefix(path.name) + "write.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def record(settings: Settings, pipeline: str, name: str, rows: pd.DataFrame, meta: dict[str, str]) -> Path:
    """Keep one batch's scored rows (``rows`` starts with :data:`KEY`) under ``name``, locally and
    in the object store when there is one; then remove batches past the retention."""
    from modelmill.data.objectstore import ObjectStore

    path = folder(settings, pipeline) / f"{name}.parquet"
    write_parquet(rows, path, meta)
    store = ObjectStore.of(settings)
    if store is not None:
        store.publish(path, f"{FOLDER}/{pipeline}/{path.name}")
    prune(settings, pipeline, datetime.now(UTC), store, keep=name)
    return path


def batches(settings: Settings, pipeline: str) -> list[Path]:
    """The pipeline's kept batches here, oldest first."""
    return sorted(folder(settings, pipeline).glob("*.parquet"))


def prune(settings: Settings, pipeline: str, now: datetime, store=None, keep: str = "") -> list[str]:
    """Remove the batches older than the retention (here and in the store), all but ``keep`` (the
    batch just written); returns their names."""
    limit = now - timedelta(days=settings.scored_retention_days)

    def expired(stem: str) -> bool:
        at = batch_time(stem)
        return at is not None and at < limit and stem != keep

    removed = set()
    for path in batches(settings, pipeline):
        if expired(path.stem):
            path.unlink(missing_ok=True)
            removed.add(path.stem)
    for key in store.keys(f"{FOLDER}/{pipeline}") if store is not None else []:
        if expired(Path(key).stem):
            store.delete(key)
            removed.add(Path(key).stem)
    if removed:
        log.info(
            "%s: %d scored batches older than %d days removed", pipeline, len(removed), settings.scored_retention_days
        )
    return sorted(removed)


def read_batches(settings: Settings, pipeline: str) -> pd.DataFrame:
    """Every kept batch of the pipeline as one frame, oldest first: the batch's rows with its
        name, time, model version, model run, label names and the estimate made when it was scored
    (from its file metadata). Batches only
        in the object store (scored on another machine) are read from there."""
    import io

    import pyarrow.parquet as pq

    from modelmill.data.objectstore import ObjectStore

    files: dict[str, object] = {p.stem: p for p in batches(settings, pipeline)}
    store = ObjectStore.of(settings)
    for key in store.keys(f"{FOLDER}/{pipeline}") if store is not None else []:
        if key.endswith(".parquet") and Path(key).stem not in files:
            files[Path(key).stem] = io.BytesIO(store.read(key))
    frames = []
    for name in sorted(files):
        table = pq.read_table(files[name])
        meta = {k.decode().removeprefix("modelmill."): v.decode() for k, v in (table.schema.metadata or {}).items()}
        frame = table.to_pandas()
        frame[KEY] = frame[KEY].astype("string")
        frames.append(
            frame.assign(
                batch=name,
                scored_at=pd.Timestamp(meta.get("scored_at") or batch_time(name)),
                model_version=meta.get("model_version", ""),
                model_run=meta.get("model_run", ""),
                labels=meta.get("labels", ""),
                label_names=meta.get("label_names", ""),
                estimate=meta.get("estimate", ""),
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[KEY, "batch", "scored_at"])
