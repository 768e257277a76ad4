"""Settings from the environment (``MODELMILL_*``), resolved when asked for, never at import."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where modelmill keeps its state and finds its data.

    ``home`` holds the dataset cache, snapshots, the local MLflow store and the Prefect home
    when no servers are configured. ``MLFLOW_TRACKING_URI`` / ``PREFECT_API_URL`` override the
    local stores.
    """

    model_config = SettingsConfigDict(env_prefix="MODELMILL_", extra="ignore")

    home: Path = Field(default=Path(".modelmill"), description="project data folder")
    data_mirror: str | None = Field(
        default=None, description="directory or http(s) base URL laid out as <id>/<file>"
    )
    pipelines_dir: Path | None = Field(default=None, description="folder of pipeline specs")
    expectations_dir: Path | None = Field(default=None, description="folder of GX suites")
    data_roots: str | None = Field(
        default=None, description="extra folders a spec's local source path may point into (os.pathsep-separated)"
    )
    min_free_mb: int = Field(default=200, ge=0, description="free space MODELMILL_HOME needs before a run starts")
    download_timeout: float = 60.0
    download_retries: int = 3

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def allowed_data_roots(self) -> list[Path]:
        """Folders beside the spec's own where local source files may live: MODELMILL_HOME and
        MODELMILL_DATA_ROOTS."""
        extra = [Path(p).expanduser().resolve() for p in (self.data_roots or "").split(os.pathsep) if p.strip()]
        return [self.home_dir, *extra]

    @property
    def cache_dir(self) -> Path:
        return self.home_dir / "cache"

    @property
    def snapshot_dir(self) -> Path:
        return self.home_dir / "snapshots"

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


def get_settings() -> Settings:
    return Settings()
