"""The declarative pipeline spec: one YAML file per pipeline, parsed into a strict model."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelmill.config.bounded import load_yaml
from modelmill.config.settings import Settings
from modelmill.errors import SpecError

#: a pipeline's name: its file's, its MLflow experiment's and its registered model's
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

PROBLEM_KINDS = (
    "tabular_classification",
    "tabular_regression",
    "tabular_multiclass",
    "forecasting",
    "image_classification",
    "text_classification",
    "recommendation",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: what a predefined split column's values (case-insensitive) and an image folder's split folders
#: may be called, and the part each one names
SPLIT_NAMES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test", "holdout": "test", "eval": "test", "evaluation": "test",
}  # fmt: skip


class ReadOptions(Strict):
    """The reader options a spec may set (an allow-list with bounded values: a spec must not be
    able to pick pandas' slow python engine, skip a billion rows or read unbounded column lists)."""

    sep: str | None = Field(
        None, min_length=1, max_length=4, description="CSV field separator (default: a comma)", examples=["\t"]
    )
    header: int | None = Field(
        0,
        ge=0,
        le=100,
        description="row number of the CSV header (`false` or null: none; then `columns` names the columns)",
        examples=[False],
    )
    skiprows: int | None = Field(None, ge=0, le=1_000_000, description="CSV lines to skip at the start", examples=[2])
    nrows: int | None = Field(None, ge=1, le=100_000_000, description="read at most this many rows", examples=[100000])
    encoding: Literal["utf-8", "utf-8-sig", "latin-1", "cp1252", "ascii"] | None = Field(
        None, description="text encoding of the file (default: utf-8)", examples=["latin-1"]
    )
    na_values: list[str] | None = Field(
        None, max_length=100, description="extra strings read as missing", examples=[["n/a", "?"]]
    )
    decimal: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="decimal mark of the whole file, as pandas reads it",
        examples=[","],
    )
    thousands: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="thousands separator of the whole file, as pandas reads it",
        examples=["."],
    )
    quotechar: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="character that quotes CSV fields (default: a double quote)",
        examples=["'"],
    )
    comment: str | None = Field(
        None, min_length=1, max_length=1, description="the rest of a line after it is ignored", examples=["#"]
    )
    columns: list[str] | None = Field(
        None,
        max_length=10_000,
        description="read only these columns (CSV usecols / Parquet columns); with `header: false`, the names of all the file's columns",
        examples=[["age", "income", "label"]],
    )
    quoting: Literal["minimal", "none"] | None = Field(
        None,
        description="none: quote characters are plain text (a message with an unbalanced quote stays one row); minimal (default): quoted fields may hold separators and newlines",
        examples=["none"],
    )
    sheet: str | None = Field(
        None, max_length=100, description="worksheet of an xlsx file (default: the first)", examples=["Online Retail"]
    )

    #: the options a non-CSV format takes (CSV takes all but `sheet`)
    OTHER_FORMATS: ClassVar[dict[str, set[str]]] = {
        "parquet": {"columns"},
        "xlsx": {"sheet", "header", "skiprows", "nrows", "na_values", "columns"},
    }

    @field_validator("header", mode="before")
    @classmethod
    def _no_header(cls, v: Any) -> Any:
        """``header: false`` is no header (pydantic would read False as row 0); true is row 0."""
        return None if v is False else (0 if v is True else v)

    def for_reader(self, fmt: str) -> dict[str, Any]:
        given = self.model_dump(exclude_unset=True)
        allowed = self.OTHER_FORMATS.get(fmt, set(type(self).model_fields) - {"sheet"})
        extra = sorted(set(given) - allowed)
        if extra:
            raise SpecError(f"source.read_options: {', '.join(extra)} cannot be used with {fmt} files")
        if fmt == "parquet":
            return given
        if fmt == "xlsx":
            given["sheet_name"] = given.pop("sheet", 0)
        if "columns" in given:
            given["names" if "header" in given and given["header"] is None else "usecols"] = given.pop("columns")
        if "quoting" in given:
            import csv

            given["quoting"] = csv.QUOTE_NONE if given["quoting"] == "none" else csv.QUOTE_MINIMAL
        return given


#: Upper bounds on estimator parameters that size the work (a spec asking for 10**12 trees is
#: refused when it is parsed, not after a night of training).
PARAM_BOUNDS: dict[str, float] = {
    "n_estimators": 5_000, "max_iter": 100_000, "max_depth": 128, "max_leaf_nodes": 1_000_000, "max_bins": 255,
    "n_neighbors": 10_000, "neighbours": 10_000, "factors": 1_024, "iterations": 1_000, "max_features": 5_000_000,
    "hidden_layer_sizes": 10_000, "epochs": 10_000, "batch_size": 1_000_000,
    "max_epochs": 1_000, "n_models": 20, "channels": 256, "embed_dim": 1_024, "hidden": 4_096, "max_len": 1_024,
    "layers": 64, "max_length": 1_024,
}  # fmt: skip
MAX_GRID_POINTS = 500


def _too_big(key: str, value: Any) -> bool:
    bound = PARAM_BOUNDS.get(key)
    if bound is None:
        return False
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) and v > bound for v in values)


class Limits(Strict):
    """Bounds on a run."""

    stage_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600, description="wall-clock limit of each stage")
    max_lost_rows: int = Field(
        0,
        ge=0,
        description="records of a user's CSV the parser may merge or lose (unbalanced quotes) before the run fails; any loss is a warning",
        examples=[10],
    )


class SqlSource(Strict):
    """A query against a database whose SQLAlchemy URL is in an environment variable (never in
    the spec: it holds credentials)."""

    url_env: str = Field(
        "MODELMILL_SQL_URL",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="environment variable holding the SQLAlchemy URL",
    )
    query: str = Field(
        min_length=1, description="the SELECT whose rows are the data", examples=["SELECT * FROM lab.cells"]
    )


class ImageFiles(Strict):
    """How a user's own images are read (``source.format: images`` or ``npz``, or a CSV of paths).
    Every image is read as grey levels 0-255 into one flattened ``pixels`` array per row."""

    paths_column: str | None = Field(
        None,
        description="with a CSV source: the column holding each image's file path (relative to the CSV)",
        examples=["file"],
    )
    size: list[int] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="resize every image to [height, width] pixels (default: keep each image's size; they must then all match the kind's options)",
        examples=[[28, 28]],
    )

    @field_validator("size")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not all(8 <= n <= 4096 for n in v):
            raise ValueError("source.images.size: height and width are 8 to 4096 pixels")
        return v


class Source(Strict):
    """Where the data comes from: a catalog dataset, a user's own file(s), or a SQL query."""

    dataset: str | None = Field(None, description="id in the dataset catalog")
    path: str | None = Field(
        None,
        description="local CSV/Parquet/xlsx file (relative to the spec), or a glob of several with the same columns",
        examples=["data/cells.csv"],
    )
    file_column: str | None = Field(
        None, description="with a glob path: a column naming each row's file", examples=["export"]
    )
    url: str | None = Field(
        None,
        description="http(s) URL of a CSV/Parquet file, or of a catalog dataset's file",
        examples=["https://example.org/cells.parquet"],
    )
    format: Literal["csv", "parquet", "xlsx", "npz", "images"] | None = Field(
        None,
        description="file format (default: from the file name; a folder is `images`): images is a folder of image files, one sub-folder per class",
        examples=["images"],
    )
    images: ImageFiles | None = Field(
        None,
        description="how images are read: a CSV's column of image paths, and the size they are resized to",
        examples=[{"paths_column": "file", "size": [28, 28]}],
    )
    read_options: ReadOptions = Field(default_factory=ReadOptions, description="reader options (an allow-list)")
    sha256: str | dict[str, str] | None = Field(
        None,
        description="expected sha256 of the file; for a dataset of several files, a mapping file name -> sha256",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    sql: SqlSource | None = Field(None, description="a SQL query instead of a file")
    thousands: Literal[",", ".", " ", "'", "_"] | None = Field(
        None, description="thousands separator in declared numeric features (removed)", examples=[","]
    )
    decimal: Literal[".", ","] = Field(".", description="decimal mark in declared numeric features")
    parse_dates: list[str] = Field(
        default_factory=list,
        description="columns parsed as dates at ingest (roles.date is parsed too)",
        examples=[["signed_up"]],
    )
    dayfirst: bool = Field(False, description="05/03/2024 is 5 March (else 3 May)")
    date_unit: Literal["s", "ms"] | None = Field(
        None, description="declared dates written as numbers are epoch seconds (s) or milliseconds (ms)", examples=["s"]
    )

    @model_validator(mode="after")
    def _marks(self) -> Source:
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError("source.thousands and source.decimal must differ")
        glob = is_glob(self.path)
        if glob and self.sha256:
            raise ValueError("source.sha256 checks one file; a glob path matches several")
        if self.file_column and not glob:
            raise ValueError("source.file_column needs a glob path (several files)")
        if self.format == "images" and (self.path is None or self.sha256 or self.file_column):
            raise ValueError(
                "source.format images reads a local folder: give `path` (no sha256 or file_column; every image is checksummed)"
            )
        if (
            self.images is not None
            and self.images.paths_column
            and (glob or self.format in ("images", "npz", "parquet", "xlsx") or self.path is None)
        ):
            raise ValueError("source.images.paths_column reads image paths from one local CSV file")
        return self

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        if self.sql is not None:
            if self.dataset or self.path or self.url or self.sha256:
                raise ValueError("source.sql stands alone: no dataset, path, url or sha256 beside it")
            return self
        if self.dataset is None and (self.path is None) == (self.url is None):
            raise ValueError("source needs `dataset`, `sql`, or exactly one of `path` / `url`")
        if self.dataset is not None and self.path is not None:
            raise ValueError("source takes `dataset` or `path`, not both")
        return self


class Features(Strict):
    """The feature columns, by type; which groups a kind reads is listed under each kind."""

    numeric: list[str] = Field(default_factory=list, description="numeric feature columns")
    categorical: list[str] = Field(
        default_factory=list, description="categorical feature columns (one-hot encoded, or native codes)"
    )
    text: str | None = Field(None, description="one free-text column (TF-IDF, or a network's tokens)")
    image: str | None = Field(None, description="one column of images (arrays of pixels)", examples=["image"])

    def columns(self) -> list[str]:
        """Every declared feature column, in the order models take them."""
        return [
            *self.numeric,
            *self.categorical,
            *([self.text] if self.text else []),
            *([self.image] if self.image else []),
        ]


def is_glob(path: str | None) -> bool:
    """A ``source.path`` naming several files (``data/sales-*.csv``)."""
    return path is not None and any(ch in path for ch in "*?[")


class Impute(Strict):
    """Missing feature values, filled inside the model's pipeline (so the champion fills them
    the same way when it scores raw rows). Off by default: the gate then rejects nulls."""

    numeric: Literal["none", "median", "mean", "constant"] = Field(
        "none", description="how numeric holes are filled (none: the gate rejects them)"
    )
    numeric_value: float = Field(0.0, description="fill value for numeric: constant")
    categorical: Literal["none", "most_frequent", "missing"] = Field(
        "none", description="most frequent value, or a 'missing' level", examples=["missing"]
    )
    indicator: bool = Field(False, description="add a 0/1 column per feature that had missing values")


class Split(Strict):
    """How the test rows are held out (selection uses the training rows only)."""

    method: Literal["stratified", "predefined", "temporal", "walk_forward", "random"] = Field(
        "stratified",
        description="how the test rows are chosen: by class, by a split column, by date, by walk-forward folds, or at random per user",
    )
    test_size: float = Field(0.25, gt=0, lt=1, description="share of the rows held out for the test")
    seed: int = Field(42, description="seed of the split and of every seeded model")
    column: str | None = Field(None, description="split column for `predefined`", examples=["split"])
    folds: int = Field(5, ge=2, le=20, description="CV folds (or backtest folds)")
    test_period_days: int | None = Field(None, ge=1, description="length of the temporal test window")


class Candidate(Strict):
    """One model: an estimator of the problem kind, fixed parameters and a grid to search."""

    name: str = Field(
        description="the candidate's name in the run's tables (unique in the spec)", examples=["logistic_regression"]
    )
    estimator: str = Field(description="one estimator of the problem kind", examples=["logistic_regression"])
    params: dict[str, Any] = Field(
        default_factory=dict, description="fixed constructor parameters", examples=[{"class_weight": "balanced"}]
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="values to search (selected by CV or the validation split)",
        examples=[{"C": [0.1, 1.0]}],
    )

    @model_validator(mode="after")
    def _bounded(self) -> Candidate:
        for key, value in [*self.params.items(), *self.grid.items()]:
            if _too_big(key, value):
                raise ValueError(f"candidate {self.name}: {key}={value} is above the limit of {PARAM_BOUNDS[key]:g}")
        points = 1
        for values in self.grid.values():
            points *= max(len(values), 1)
        if points > MAX_GRID_POINTS:
            raise ValueError(f"candidate {self.name}: the grid has {points} points, more than {MAX_GRID_POINTS}")
        return self


class Explain(Strict):
    """How a run explains its model (importance, SHAP) and what that may cost."""

    importance: bool = Field(True, description="log permutation importance of each source column on the test split")
    importance_rows: int = Field(
        1000,
        ge=10,
        le=100_000,
        description="test rows permutation importance is computed on (a seeded sample when there are more)",
    )
    repeats: int = Field(3, ge=1, le=50, description="shuffles per column (mean and spread are logged)")
    shap: bool = Field(
        True,
        description="tabular kinds: log SHAP values per source column (and `modelmill score --reasons` can use them)",
    )
    shap_rows: int = Field(
        50, ge=1, le=5000, description="test rows whose SHAP values are computed and logged", examples=[200]
    )
    background_rows: int = Field(
        50,
        ge=5,
        le=1000,
        description="training rows a masked column takes its values from (the explainers' reference; cost grows with them)",
    )


class Slice(Strict):
    """A column whose values (or bands of a number) get their own test metrics."""

    column: str = Field(description="a column of the data (a feature or not)", examples=["personal_status_sex"])
    bands: list[float] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="band edges of a numeric column: [25, 50] gives <25, 25-50, >=50",
        examples=[[25, 35, 50]],
    )
    min_rows: int = Field(30, ge=1, description="slices with fewer test rows are reported but left out of the gap")


class Metric(Strict):
    """The primary metric: one of the kind's metrics, with its direction."""

    name: str = Field(description="the primary metric: candidates are selected and champions compared by it")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="whether higher or lower is better")


class Promotion(Strict):
    """When a new model takes the `champion` alias (else it becomes the `challenger`)."""

    margin: float = Field(0.0, ge=0, description="required improvement over the champion")
    mode: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: a better model becomes the champion; manual: it becomes the `candidate` until `modelmill approve`",
        examples=["manual"],
    )
    require_shadow: int = Field(
        0,
        ge=0,
        le=1000,
        description="scoring batches a candidate must shadow (`modelmill score --shadow`) before it can be approved",
        examples=[3],
    )
    max_slice_gap: float | None = Field(
        None,
        gt=0,
        description="a model whose primary metric differs by more than this between two slices of a `slices` column is not promoted",
        examples=[0.1],
    )
    min_compared_rows: int = Field(
        30,
        ge=1,
        description="the new model and the champion are compared on the test rows neither trained on; with fewer than this many, nothing is decided and the champion stays",
        examples=[100],
    )
    allow_worse_than_baseline: bool = Field(
        False,
        description="a first model worse than its naive baseline on the primary metric may become the champion",
        examples=[True],
    )


class Schedule(Strict):
    """A cron schedule, served by `modelmill serve` as a Prefect deployment."""

    cron: str = Field(description="five-field cron expression", examples=["0 6 * * 1"])
    timezone: str = Field("UTC", description="IANA time zone the cron expression is in", examples=["Europe/Berlin"])
    active: bool = Field(
        True,
        description="the schedule is deployed switched on; false deploys it switched off (the pipeline runs when triggered, and the schedule can be switched on in the Prefect UI), and `status` never calls the pipeline stale for a missed run",
    )

    @field_validator("cron")
    @classmethod
    def _cron_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"cron {v!r} must have 5 fields")
        return v


class Scoring(Strict):
    """A batch the champion scores on a schedule (``modelmill score`` without --input/--output)."""

    input: str = Field(
        description="CSV / Parquet / xlsx file to score, relative to the spec's folder", examples=["data/incoming.csv"]
    )
    output: str = Field(
        pattern=r"\.parquet$",
        description="where the scores are written (Parquet)",
        examples=["scores/incoming.parquet"],
    )
    schedule: Schedule | None = Field(None, description="score on this schedule under `modelmill serve`")
    shadow: bool = Field(
        False,
        description="the candidate (else the challenger) scores each batch too, for comparison (`modelmill score --shadow`)",
        examples=[True],
    )


class Outcomes(Strict):
    """Where the truth about scored rows arrives (``modelmill outcomes`` without --input)."""

    input: str | None = Field(
        None,
        description="CSV / Parquet / xlsx file of outcomes (roles.id, else the feature columns, and the target; "
        "a recommender's: the interactions since), relative to the spec's folder",
        examples=["data/outcomes.csv"],
    )
    sql: SqlSource | None = Field(
        None, description="or a query whose rows are the outcomes (read in a transaction that is rolled back)"
    )
    schedule: Schedule | None = Field(None, description="join it on this schedule under `modelmill serve`")

    @model_validator(mode="after")
    def _one_place(self) -> Outcomes:
        if (self.input is None) == (self.sql is None):
            raise ValueError("give one of input (a file) and sql (a query)")
        return self

    def where(self) -> str:
        return self.input if self.input is not None else "its outcomes query"


#: what an alert can be about (``notify.events``)
ALERT_EVENTS = (
    "failed",
    "rejected",
    "drift",
    "promoted",
    "not_promoted",
    "candidate",
    "stale",
    "score_rejected",
    "live_drop",
)


class Notify(Strict):
    """Where a pipeline's alerts go (apprise URLs) and which events they are sent for."""

    urls: list[str] = Field(
        min_length=1, max_length=20, description="apprise URLs (json://, mailto://, slack://, …); `${VAR}` is filled from the environment when sent",
        examples=[["json://alerts.example.org/modelmill", "mailto://${SMTP_USER}:${SMTP_PASSWORD}@smtp.example.org?to=ops@example.org"]],
    )  # fmt: skip
    events: list[Literal[ALERT_EVENTS]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="events to send (default: all but not_promoted)",
        examples=[["failed", "rejected", "drift", "stale"]],
    )


class Monitoring(Strict):
    """Thresholds that turn a run's figures into alerts, and when a pipeline counts as stale."""

    psi_alert: float | None = Field(
        None,
        gt=0,
        description="a drift alert when a column's PSI against the champion's training data exceeds it",
        examples=[0.2],
    )
    metric_drop: float | None = Field(
        None,
        gt=0,
        description="a drift alert when the new model's primary metric falls this far below the champion's on the same test data",
        examples=[0.02],
    )
    max_age: str | None = Field(
        None,
        pattern=r"^\d+[hdw]$",
        description="stale after this long without a successful run (default: twice the schedule's period)",
        examples=["3d"],
    )
    score_rejected: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a score_rejected alert when a scoring batch sets aside more than this share of its rows",
    )

    live_drop: float | None = Field(
        None,
        gt=0,
        description="a live_drop alert when the primary metric measured on a scored batch's outcomes (`modelmill outcomes`) falls this far below the version's test figure and its 95 % interval excludes that figure",
        examples=[0.05],
    )

    retrain_on: list[Literal["live_drop", "drift"]] = Field(
        default_factory=list,
        description="events after which `modelmill serve` runs the pipeline again, the event and its cause recorded on the run: live_drop (outcomes or the estimate), drift (a scoring batch's PSI over psi_alert)",
        examples=[["live_drop"]],
    )

    def max_age_seconds(self) -> float | None:
        if self.max_age is None:
            return None
        return int(self.max_age[:-1]) * {"h": 3600, "d": 86400, "w": 7 * 86400}[self.max_age[-1]]


class PipelineSpec(Strict):
    name: str = Field(
        pattern=NAME_PATTERN,
        description="the pipeline's name: the file's name, the MLflow experiment and registered model",
    )
    domain: str = Field(description="business domain, a tag on every run")
    description: str = Field(
        description="what the model is for, one or two sentences",
        examples=["Malignancy from my lab's cell measurements."],
    )
    source: Source = Field(description="where the data comes from")
    target: str | None = Field(None, description="the label column (classification kinds)")
    positive_label: str | int | None = Field(
        None, description="the label value that is the positive class (binary classification)"
    )
    features: Features = Field(default_factory=Features, description="the feature columns, by type")
    roles: dict[str, str] = Field(
        default_factory=dict, description="other column roles: id, date, user, item, rating, source, …"
    )
    suite: str = Field(description="the Great Expectations suite (JSON) that gates the data")
    split: Split = Field(default_factory=Split, description="how the test split is held out")
    problem: Literal[PROBLEM_KINDS] = Field(description="the problem kind: its evaluator, featurizers and estimators")  # type: ignore[valid-type]
    baseline: Candidate = Field(description="the naive model every candidate is compared with")
    candidates: list[Candidate] = Field(
        min_length=1,
        description="the models to select among",
        examples=[[{"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [0.1, 1.0]}}]],
    )
    metric: Metric = Field(description="the primary metric")
    promotion: Promotion = Field(default_factory=Promotion, description="when a new model becomes the champion")
    schedule: Schedule = Field(description="when `modelmill serve` runs the pipeline")
    options: dict[str, Any] = Field(default_factory=dict, description="problem-kind options (see each kind below)")
    limits: Limits = Field(default_factory=Limits, description="bounds on a run")
    impute: Impute = Field(default_factory=Impute, description="how missing feature values are filled (tabular kind)")
    drop: list[str] = Field(
        default_factory=list,
        description="source columns removed at ingest (never features, not in the snapshot)",
        examples=[["email"]],
    )
    scoring: Scoring | None = Field(None, description="a batch the champion scores (`modelmill score`)")
    outcomes: Outcomes | None = Field(
        None, description="where the truth about scored rows arrives (`modelmill outcomes`)"
    )
    notify: Notify | None = Field(None, description="where alerts go (default: MODELMILL_NOTIFY_URLS)")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="alert thresholds and staleness")
    slices: list[Slice] = Field(
        default_factory=list,
        max_length=20,
        description="columns (or bands of a number) reported per slice on the test split; their largest gap can block promotion",
        examples=[[{"column": "age", "bands": [25, 35, 50]}]],
    )
    explain: Explain = Field(
        default_factory=Explain, description="permutation importance and SHAP values of the trained model"
    )
    reference: str | None = Field(
        None,
        description="the published reference figures for this data, quoted in the model card",
        examples=["Casanueva et al. 2020: 93.66% accuracy"],
    )
    duplicates: Literal["drop", "reject", "keep"] = Field(
        "drop",
        description="repeated rows (or repeated roles.id) of example-per-row kinds: dropped before the split, rejected at the gate, or kept",
    )

    # Set by the loader, not by the YAML.
    spec_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_candidates(self) -> PipelineSpec:
        names = [c.name for c in self.candidates] + [self.baseline.name]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique: {names}")
        return self

    @property
    def experiment_name(self) -> str:
        return f"modelmill/{self.name}"

    @property
    def registered_model_name(self) -> str:
        return f"modelmill-{self.name}"

    def suite_path(self, settings: Settings) -> Path:
        p = Path(self.suite)
        if p.is_absolute():
            return p
        candidates = [settings.suites_dir / p]
        if self.spec_path is not None:
            candidates += [self.spec_path.parent / p, self.spec_path.parent.parent / "expectations" / p]
        for c in candidates:
            if c.is_file():
                return c
        raise SpecError(f"pipeline {self.name}: expectation suite {self.suite!r} not found in {settings.suites_dir}")

    def spec_hash(self, settings: Settings) -> str:
        """Digest of the spec and its suite: same hash, same pipeline definition."""
        h = hashlib.sha256(self.model_dump_json().encode())
        h.update(self.suite_path(settings).read_bytes())
        return h.hexdigest()


def _parse(path: Path) -> PipelineSpec:
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping")
    try:
        return PipelineSpec(**raw, spec_path=path.resolve())
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise SpecError(f"{path}: {where}: {first['msg']} ({e.error_count()} error(s))") from e


def available(settings: Settings) -> dict[str, Path]:
    d = settings.specs_dir
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def load_spec(name_or_path: str, settings: Settings, *, names_only: bool = False) -> PipelineSpec:
    """Load a pipeline by name (``pipelines/<name>.yaml``) or by path to a YAML file.

    ``names_only``: a name of a spec in the specs folder, never a path (what a deployment's
    parameters may say: whoever can call the Prefect API must not choose the file a worker runs)."""
    if names_only and not re.fullmatch(NAME_PATTERN, name_or_path):
        raise SpecError(
            f"pipeline {name_or_path!r}: a deployment's `pipeline` parameter names a pipeline of "
            f"{settings.specs_dir}, never a file"
        )
    p = Path(name_or_path)
    if p.suffix in {".yaml", ".yml"}:
        if not p.is_file():
            raise SpecError(f"spec file {p} does not exist")
        return _parse(p)
    specs = available(settings)
    if name_or_path not in specs:
        import difflib

        close = difflib.get_close_matches(name_or_path, list(specs), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        known = ", ".join(specs) or "none"
        raise SpecError(f"unknown pipeline {name_or_path!r}: {hint}(known in {settings.specs_dir}: {known})")
    spec = _parse(specs[name_or_path])
    if spec.name != name_or_path:
        raise SpecError(f"{specs[name_or_path]}: name {spec.name!r} does not match the file name")
    return spec


def load_all(settings: Settings) -> list[PipelineSpec]:
    return [load_spec(n, settings) for n in available(settings)]
