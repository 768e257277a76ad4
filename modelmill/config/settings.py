"""Settings from the environment (``MODELMILL_*``), resolved when asked for, never at import."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Where modelmill keeps its state and finds its data, from ``MODELMILL_*`` variables.

    ``MODELMILL_HOME`` holds the dataset cache, snapshots, the local MLflow store and the Prefect
    home when no servers are configured.
    """

    model_config = SettingsConfigDict(env_prefix="MODELMILL_", extra="ignore")

    home: Path = Field(default=Path(".modelmill"), description="project data folder")
    data_mirror: str | None = Field(default=None, description="directory or http(s) base URL laid out as <id>/<file>")
    pipelines_dir: Path | None = Field(default=None, description="folder of pipeline specs")
    expectations_dir: Path | None = Field(default=None, description="folder of GX suites")
    data_roots: str | None = Field(
        default=None, description="extra folders a spec's local source path may point into (os.pathsep-separated)"
    )
    min_free_mb: int = Field(default=200, ge=0, description="free space MODELMILL_HOME needs before a run starts")
    notify_urls: str | None = Field(
        default=None,
        description="apprise URLs (space- or comma-separated) for pipelines whose spec has no `notify`; `${VAR}` filled from the environment",
    )
    notify_events: str | None = Field(
        default=None,
        description="the events they get (default: failed, rejected, drift, promoted, candidate, stale, score_rejected)",
    )
    notify_deadline: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="seconds all of one alert's sends may take together; a run or command never waits longer for its receivers",
    )
    download_timeout: float = Field(default=60.0, gt=0, description="seconds a download may take before it is retried")
    download_retries: int = Field(default=3, ge=1, description="attempts at each download")
    store_uri: str | None = Field(
        default=None,
        description="an S3-compatible object store (s3://bucket/prefix) that holds every snapshot, download and sentence embedding, so that workers on any machine can run any stage; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
    )
    store_endpoint: str | None = Field(
        default=None, description="the object store's endpoint when it is not AWS (e.g. http://seaweedfs:8333)"
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="the key modelmill signs what it later trusts with (HMAC-SHA256: object-store entries, embedding shards, model digests); required with an object store or a tracking server beyond this machine",
    )
    signing_key_file: Path | None = Field(
        default=None, description="a file holding the signing key instead (mode 0600: readable by its owner only)"
    )
    scored_retention_days: int = Field(
        default=400,
        ge=0,
        le=36_500,
        description="days a scoring batch's record of what was predicted for each row is kept (MODELMILL_HOME/scored/), so that outcomes arriving later can be joined to it",
    )
    load_pickles: bool = Field(
        default=False,
        description="load a registered model stored as a pickle for a pipeline none of whose candidates holds a network (a model registered by an older release); off by default: loading a pickle can run code",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="threads of each fit, explanation and scoring batch (default: the cores free when the command starts, split between its workers; OMP_NUM_THREADS when set)",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def allowed_data_roots(self) -> list[Path]:
        """Folders beside the spec's own where local source files may live: MODELMILL_HOME,
        MODELMILL_DATA_ROOTS, and the folders the operator granted by naming a file in them on
        the command line (``modelmill init --from``: :attr:`granted_roots_file`)."""
        extra = [Path(p).expanduser().resolve() for p in (self.data_roots or "").split(os.pathsep) if p.strip()]
        granted = self.granted_roots_file
        if granted.is_file():
            extra += [Path(line).resolve() for line in granted.read_text().splitlines() if line.strip()]
        return [self.home_dir, *extra]

    @property
    def granted_roots_file(self) -> Path:
        """The folders ``init`` was pointed at, one per line, in the project's own data folder
        (a spec cannot write there, so it cannot widen what specs may read)."""
        return self.home_dir / "data_roots.txt"

    def grant_root(self, folder: Path) -> bool:
        """Add ``folder`` to :attr:`granted_roots_file`; False when it was readable already."""
        folder = folder.resolve()
        if any(folder.is_relative_to(r) for r in self.allowed_data_roots):
            return False
        self.granted_roots_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.granted_roots_file, "a") as f:
            f.write(f"{folder}\n")
        return True

    @property
    def cache_dir(self) -> Path:
        return self.home_dir / "cache"

    @property
    def snapshot_dir(self) -> Path:
        return self.home_dir / "snapshots"

    @property
    def project_specs_dir(self) -> Path:
        """Where ``init`` writes a new spec: the configured folder, else the working folder's
        ``pipelines/`` (created if need be), never the installed package's own folder."""
        if self.pipelines_dir is not None:
            return self.specs_dir
        return (Path.cwd() / "pipelines").resolve()

    @property
    def specs_dir(self) -> Path:
        if self.pipelines_dir is not None:
            return self.pipelines_dir.expanduser().resolve()
        local = Path("pipelines")
        return (local if local.is_dir() else REPO_ROOT / "pipelines").resolve()

    @property
    def suites_dir(self) -> Path:
        if self.expectations_dir is not None:
            return self.expectations_dir.expanduser().resolve()
        return (self.specs_dir.parent / "expectations").resolve()

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.home_dir / "mlartifacts"


#: variables read where they are used rather than through :class:`Settings` (the reference page
#: lists them; a test checks that every ``MODELMILL_*`` name in the code is one or the other)
OTHER_VARIABLES: dict[str, str] = {
    "MODELMILL_MAX_EPOCHS": "an upper bound on every neural network's epochs (smoke runs, tests); part of a run's fingerprint",
    "MODELMILL_SQL_URL": "the SQLAlchemy URL of a SQL source (a spec's `source.sql.url_env` may name another variable)",
    "MODELMILL_SHARED_CORES": "set by `run --workers N` on a local cluster: the folder of busy marks through which side-by-side networks share the cores",
    "MODELMILL_TEMPORARY_PREFECT_API": "set by a command for the temporary Prefect API it started (its runs send no heartbeats)",
    "MODELMILL_TEXT_ENCODER": "a sentence-transformers folder to use instead of the `text` extra's all-MiniLM-L6-v2 (pinned by the spec's `options.encoder_sha256`)",
    "MODELMILL_USER": "who approves or rolls back a champion, as recorded in the audit trail (default: the operating-system user)",
    "MLFLOW_TRACKING_URI": "an MLflow server instead of the local store `sqlite:///$MODELMILL_HOME/mlflow.db`",
    "PREFECT_API_URL": "a Prefect server instead of a temporary local API per command",
}


def get_settings() -> Settings:
    return Settings()
