"""The one MLflow adapter: every MLflow call in modelmill goes through this module.

Runs are addressed by id (never by the fluent "active run" of a thread), so stages can run in
separate Prefect tasks or workers. MLflow is imported when a :class:`Tracker` is created, not at
import time.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from modelmill.config.settings import Settings
from modelmill.config.spec import PipelineSpec
from modelmill.config.trust import Untrusted, signer
from modelmill.registry.runview import EXPERIMENT_KIND
from modelmill.runtime.redact import redact

log = logging.getLogger("modelmill.registry.tracking")

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
CHAMPION, CHALLENGER, CANDIDATE = "champion", "challenger", "candidate"
AUDIT_SUFFIX = "/audit"
#: on a scoring run: the version that shadowed the champion on that batch
SHADOW_TAG = "modelmill.shadow_version"
SCORING_SUFFIX = "/scoring"
#: Local store URIs whose schema this process has already created or checked.
_INITIALISED: set[str] = set()
#: MLflow client HTTP settings (its defaults retry for minutes against a server that is down).
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
#: Model-version tag holding the sha256 of the model's artifact files, recorded at log time and
#: checked before anything in them is unpickled.
MODEL_DIGEST_TAG = "modelmill.model_sha256"
#: the digest's signature with the project's key (:mod:`modelmill.config.trust`), bound to the version
MODEL_SIGNATURE_TAG = "modelmill.model_signature"
#: prefix of the run tags that sign the records a reproduction rebuilds from (``…spec/spec.json``)
RECORD_TAG = "modelmill.signature."


#: Written by MLflow into a registered model's download, not part of what was logged.
_GENERATED = {"registered_model_meta"}


def _record_text(run_id: str, path: str, text: str) -> str:
    """What a signed record's signature covers: its run, its path and its content's sha256."""
    import hashlib

    return f"{run_id}\0{path}\0{hashlib.sha256(text.encode()).hexdigest()}"


def _model_text(ref: ModelRef, digest: str) -> str:
    """What a model version's signature covers: its name, its number and its files' digest."""
    return f"{ref.name}\0{ref.version}\0{digest}"


def dir_digest(root: Path) -> str:
    """sha256 over every file of a model version's download (what MLflow adds to it excluded)."""
    from modelmill.data.digests import folder_digest

    return folder_digest(root, frozenset(_GENERATED))


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str | None
    uri: str


class _LineLogger(io.TextIOBase):
    """A text stream whose lines become log records (MLflow prints registry events to stderr)."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO):
        self.logger, self.level, self.buffer, self.busy = logger, level, "", False

    def write(self, text: str) -> int:
        if self.busy:  # a log handler failing inside info() reports to stderr: not back into the log
            return sys.__stderr__.write(text)
        self.busy = True
        try:
            self.buffer += text
            *lines, self.buffer = self.buffer.split("\n")
            for line in lines:
                if line.strip():
                    self.logger.log(self.level, "%s", line.strip())
        finally:
            self.busy = False
        return len(text)


def safe_key(key: str) -> str:
    """MLflow keys allow alphanumerics and ``_-. :/``; anything else becomes ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", key)


#: one client per store in a process (:meth:`Tracker.of`)
_TRACKERS: dict[tuple[str, str], Tracker] = {}


class Tracker:
    def __init__(self, settings: Settings):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # Bounded client retries: a server that is down fails a call in ~15 s, not after minutes.
        for key, value in HTTP_LIMITS.items():
            os.environ.setdefault(key, value)
        import mlflow

        self.settings = settings
        self.signer = signer(settings)  # required with a remote server: a one-line error before any call
        self.uri = settings.tracking_uri
        self.local = self.uri.startswith("sqlite:") or self.uri.startswith("file:")
        if self.local:
            settings.home_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self._mlflow = mlflow
        if self.uri.startswith("sqlite:") and self.uri not in _INITIALISED:
            # The client creates (or migrates) the local store's schema: two processes doing it at
            # once on a brand-new store break it (``No such constraint: 'uq_experiments_name'``).
            # Once per process and store: later clients find the schema in place.
            from modelmill.runtime.locks import file_lock, lock_dir

            with file_lock(
                lock_dir(settings.home_dir) / "mlflow-store.lock", "MLflow store initialisation", timeout=600
            ):
                self.client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                self.client.search_registered_models(max_results=1)  # the registry store too
            _INITIALISED.add(self.uri)
        else:
            self.client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @classmethod
    def of(cls, settings: Settings) -> Tracker:
        """This process's client of the settings' store: built once (an MLflow client, the local
        schema's check), and handed to every stage and command after; each call points MLflow's
        process-wide URIs back at this store, which another store's client may have moved."""
        key = (settings.tracking_uri, str(settings.artifact_root))
        tracker = _TRACKERS.get(key)
        if tracker is None:
            tracker = _TRACKERS[key] = cls(settings)
        else:  # the same store under this command's settings (and key)
            tracker.settings, tracker.signer = settings, signer(settings)
            tracker._mlflow.set_tracking_uri(tracker.uri)
            tracker._mlflow.set_registry_uri(tracker.uri)
        return tracker

    def check_reachable(self, attempts: int = 3, timeout: float = 5) -> None:
        """Fail fast, in one line naming MLFLOW_TRACKING_URI, when a tracking server is down."""
        if not self.uri.startswith("http"):
            return
        import base64
        import urllib.error
        import urllib.parse
        import urllib.request

        from modelmill.errors import TrackingUnavailable

        parts = urllib.parse.urlsplit(self.uri)
        headers = {}
        if parts.username is not None:  # credentials in the URI: a header, as MLflow's client sends them
            user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        health = urllib.request.Request(f"{urllib.parse.urlunsplit(parts).rstrip('/')}/health", headers=headers)
        reason: object = None
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(health, timeout=timeout):
                    return
            except urllib.error.HTTPError as e:  # it answers (auth, proxies): reachable
                if e.code < 500:
                    return
                reason = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
            if attempt < attempts - 1:
                time.sleep(1)
        raise TrackingUnavailable(
            f"the MLflow tracking server MLFLOW_TRACKING_URI={redact(self.uri)} is unreachable ({reason}): start it, or unset MLFLOW_TRACKING_URI to use the local store"
        )

    # -- experiments and runs -------------------------------------------------------------
    def experiment_id(self, spec: PipelineSpec, create: bool = True, suffix: str = "") -> str | None:
        name = spec.experiment_name + suffix
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        location = None
        if self.local:
            location = (self.settings.artifact_root / re.sub(r"[^a-z0-9_]+", "_", spec.name + suffix)).as_uri()
        try:
            return self.client.create_experiment(
                name,
                artifact_location=location,
                tags={
                    "modelmill.domain": spec.domain,
                    "mlflow.note.content": spec.description,
                    **(EXPERIMENT_KIND if suffix else {}),
                },
            )
        except Exception:  # created concurrently by another run: read it back
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def experiment_ids(self, spec: PipelineSpec) -> list[str]:
        """The pipeline's experiments that exist: its training runs' and its scoring batches'."""
        found = (self.experiment_id(spec, create=False, suffix=suffix) for suffix in ("", SCORING_SUFFIX))
        return [e for e in found if e is not None]

    def start_run(self, spec: PipelineSpec, run_name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id(spec), run_name=run_name, tags={k: redact(str(v)) for k, v in tags.items()}
        )
        return run.info.run_id

    def start_scoring_run(self, spec: PipelineSpec, run_name: str, tags: dict[str, str]) -> str:
        """A run in the pipeline's ``…/scoring`` experiment: batches scored by the champion stay
        apart from training runs (history, promotion and skip-unchanged read only those)."""
        run = self.client.create_run(self.experiment_id(spec, suffix=SCORING_SUFFIX), run_name=run_name, tags=tags)
        return run.info.run_id

    def set_experiment_tags(self, spec: PipelineSpec, tags: dict[str, str]) -> None:
        """Upserts; two runs setting the same new tag at once race on SQLite's insert (UNIQUE
        constraint): the loser retries, and then updates the row the winner wrote."""
        from mlflow.exceptions import MlflowException

        exp = self.experiment_id(spec)
        for k, v in tags.items():
            for attempt in range(3):
                try:
                    self.client.set_experiment_tag(exp, k, v)
                    break
                except MlflowException as e:
                    if "UNIQUE constraint" not in str(e) or attempt == 2:
                        raise

    def rename_run(self, run_id: str, name: str) -> None:
        self.client.update_run(run_id, name=name[:250])

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def run_url(self, run_id: str) -> str:
        run = self.client.get_run(run_id)
        if self.uri.startswith("http"):
            return f"{redact(self.uri).rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}?workflowType=machine_learning"
        return f"(`modelmill ui`) http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run_id}?workflowType=machine_learning"

    def experiment_url(self, experiment_id: str, base: str | None = None, shared: bool = False) -> str:
        """The experiment's runs table without the skipped reruns; ``shared``: in modelmill's
        shared view (metric, baseline, lift, decision, digest columns)."""
        from modelmill.registry.runview import view_path

        root = base or (redact(self.uri) if self.uri.startswith("http") else "http://127.0.0.1:5000")
        return f"{root.rstrip('/')}/{view_path(experiment_id, shared)}"

    @contextmanager
    def _resumed(self, run_id: str):
        """Make ``run_id`` the active run for flavour APIs that need one, and leave it RUNNING."""
        mlflow = self._mlflow
        mlflow.start_run(run_id=run_id)
        try:
            yield
        finally:  # MLflow prints "View run … at: URL" to stdout when a server run ends: a debug line
            with contextlib.redirect_stdout(_LineLogger(log, logging.DEBUG)):
                mlflow.end_run(status=RUNNING)

    # -- logging ----------------------------------------------------------------------------
    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        """One request per 100 tags (``log_batch``), not one per tag."""
        from mlflow.entities import RunTag

        items = [RunTag(k, redact(str(v))[:5000]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i : i + 100])

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(safe_key(k), redact(str(v))[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import math

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(safe_key(k), float(v), ts, step)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def log_dict(self, run_id: str, obj: Any, path: str, *, signed: bool = False) -> None:
        self.log_text(run_id, json.dumps(obj, indent=2, default=str), path, signed=signed)

    def log_text(self, run_id: str, text: str, path: str, *, signed: bool = False) -> None:
        """A text artifact, redacted. ``signed``: a record something later rebuilds from (the spec,
        the suite, the fingerprint, the lineage): its sha256 is signed with the project's key in
        a run tag, bound to the run and the path, and :meth:`signed_artifact` verifies it."""
        text = redact(text)
        self.client.log_text(run_id, text, path)
        if signed and self.signer is not None:
            self.client.set_tag(run_id, RECORD_TAG + path, self.signer.sign("record", _record_text(run_id, path, text)))

    def signed_artifact(self, run_id: str, path: str, folder: str) -> Path | None:
        """:meth:`run_artifact` for a record logged ``signed``: with the project's key, refused
        in one line when its signature is missing or not the key's."""
        local = self.run_artifact(run_id, path, folder)
        if local is not None and self.signer is not None:
            tags = self.client.get_run(run_id).data.tags
            self.signer.verify(
                "record",
                _record_text(run_id, path, local.read_text()),
                tags.get(RECORD_TAG + path),
                f"{path} of run {run_id}",
            )
        return local

    def log_figure(self, run_id: str, fig, path: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(run_id, fig, path)
        plt.close(fig)

    def log_table(self, run_id: str, df: pd.DataFrame, path: str) -> None:
        self.client.log_text(run_id, df.to_csv(index=False), path)

    def run_artifact(self, run_id: str, path: str, folder: str) -> Path | None:
        """One of a run's artifacts downloaded into ``folder``, or None when the run has none there."""
        from mlflow.exceptions import MlflowException

        try:
            return Path(self._mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=folder))
        except (MlflowException, OSError):
            return None

    def log_dir(self, run_id: str, local: Path, artifact_dir: str) -> None:
        self.client.log_artifacts(run_id, str(local), artifact_dir)

    def log_dataset(
        self,
        run_id: str,
        df: pd.DataFrame,
        *,
        source: str,
        name: str,
        context: str,
        digest: str,
        targets: str | None = None,
    ) -> None:
        """Dataset lineage (`mlflow.log_input`): name, digest, schema and source of a frame.

        A ``MetaDataset`` with our digest and a schema read off the first rows: ``from_pandas``
        profiles and infers over the whole frame, a cost that grows with its rows. The target
        column is named by the run's tag ``modelmill.targets``."""
        mlflow = self._mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.exceptions import MlflowException
        from mlflow.types.utils import _infer_schema

        from modelmill.quality.validate import is_array_column

        scalar = df[[c for c in df.columns if not is_array_column(df[c])]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = MetaDataset(
                resolve_dataset_source(source), name=name, digest=digest, schema=_infer_schema(scalar.head(1000))
            )
        if targets in scalar.columns:
            self.set_tags(run_id, {"modelmill.targets": targets})
        for attempt in range(4):
            try:
                with self._resumed(run_id):
                    mlflow.log_input(ds, context=context)
                return
            except MlflowException as e:
                # two runs logging the same new dataset at once: the server's check-then-insert
                # loses the race for one of them; on a retry the dataset exists and is linked
                if attempt == 3 or not any(
                    m in str(e) for m in ("UNIQUE constraint", "duplicate key", "IntegrityError")
                ):
                    raise
                log.info("dataset %s was being logged by another run at the same moment; linking it again", name)
                time.sleep(0.2 * (attempt + 1))

    # -- models and the registry --------------------------------------------------------------
    def log_model(
        self,
        run_id: str,
        spec: PipelineSpec,
        model,
        input_example,
        output_example,
        raw_columns: list[str] | None = None,
        labels: tuple | None = None,
        row_rules: list[dict] | None = None,
        threshold: float | None = None,
        label_names: tuple | None = None,
    ) -> ModelRef:
        """Log the fitted featurizer+model pipeline with signature and example, and register it.
        ``raw_columns``: input columns the signature takes of any type (the model types them).
        ``row_rules``: the gate's row rules its pyfunc checks each row against first
        (:class:`ServedModel`); ``threshold``: a binary classifier's decision threshold, in its answer.
        ``labels``: a classifier's — its pyfunc returns the label and each class's probability
        (:class:`ServedClassifier`; the data's (negative, positive) labels of a binary model),
        called by ``label_names`` where the spec names them."""
        mlflow = self._mlflow
        import numpy
        import scipy
        import sklearn

        if isinstance(input_example, pd.DataFrame):  # integers cannot carry missing values at serving time
            ints = input_example.select_dtypes("integer").columns
            input_example = input_example.astype(dict.fromkeys(ints, "float64"))
        if labels is not None:
            output_example = ServedClassifier(model, labels, row_rules or (), threshold, label_names or ()).predict(
                input_example
            )
        elif row_rules:
            output_example = ServedModel(model, row_rules).predict(input_example)
        signature = mlflow.models.infer_signature(input_example, output_example)
        if isinstance(input_example, numpy.ndarray) and input_example.ndim == 2:  # images: grey or colour rows
            from mlflow.types.schema import Schema, TensorSpec

            signature.inputs = Schema([TensorSpec(input_example.dtype, (-1, -1))])
        if raw_columns:
            from mlflow.types.schema import AnyType, ColSpec, Schema

            # optional, so a row missing one is answered with the column's name (a served row rule);
            # a model of one column needs it: MLflow would otherwise drop the payload's other
            # columns and answer nothing at all, where it now refuses the request naming the column
            required = len(raw_columns) == 1
            signature.inputs = Schema([ColSpec(AnyType(), c, required=required) for c in raw_columns])
        reqs = [
            f"scikit-learn=={sklearn.__version__}",
            f"numpy=={numpy.__version__}",
            f"pandas=={pd.__version__}",
            f"scipy=={scipy.__version__}",
        ]
        from importlib.metadata import version

        from modelmill.errors import ModelIntegrityError
        from modelmill.learn.kinds.neural import network
        from modelmill.registry import model_files

        trusted, outside = model_files.skops_types(model)
        if network(model) is not None:  # a PyTorch network inside: loading it needs torch and skorch
            reqs += [f"torch=={version('torch').split('+')[0]}", f"skorch=={version('skorch')}"]
        elif outside:
            raise ModelIntegrityError(
                f"pipeline {spec.name}: the model holds types outside modelmill's allow-list "
                f"({', '.join(outside[:5])}), so it cannot be stored without a pickle: not registered"
            )
        fmt = model_files.PICKLE if outside else model_files.SKOPS  # a pickle only for a network skops cannot store
        if fmt == model_files.SKOPS:
            reqs += [f"skops=={version('skops')}"]
        with self._resumed(run_id), warnings.catch_warnings(), redirect_stderr(_LineLogger(log)):
            warnings.simplefilter("ignore")
            info = mlflow.models.Model.log(
                artifact_path=None,
                name="model",
                flavor=sys.modules[__name__],
                flavor_name="sklearn",
                sk_model=model,
                labels=labels,
                label_names=label_names,
                row_rules=row_rules,
                threshold=threshold,
                signature=signature,
                input_example=input_example,
                registered_model_name=spec.registered_model_name,
                pip_requirements=reqs,
                serialization_format=fmt,
                skops_trusted_types=trusted or None,
                await_registration_for=60,
            )
        ref = ModelRef(
            spec.registered_model_name,
            str(info.registered_model_version),
            run_id,
            f"models:/{spec.registered_model_name}/{info.registered_model_version}",
        )
        with tempfile.TemporaryDirectory(prefix="modelmill-model-") as tmp:
            digest = dir_digest(Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=tmp)))
        self.client.set_model_version_tag(ref.name, ref.version, MODEL_DIGEST_TAG, digest)
        if self.signer is not None:
            signature = self.signer.sign("model", _model_text(ref, digest))
            self.client.set_model_version_tag(ref.name, ref.version, MODEL_SIGNATURE_TAG, signature)
        return ref

    def alias(self, spec: PipelineSpec, alias: str) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(spec.registered_model_name, alias)
        except MlflowException:
            return None
        return ModelRef(mv.name, str(mv.version), mv.run_id, f"models:/{mv.name}@{alias}")

    def set_alias(self, spec: PipelineSpec, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(spec.registered_model_name, alias, version)

    def describe_version(self, spec: PipelineSpec, version: str, text: str) -> None:
        """The registered version's description (the registry UI shows it as markdown)."""
        self.client.update_model_version(spec.registered_model_name, version, description=redact(text)[:60000])

    def set_version_tags(self, spec: PipelineSpec, version: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(spec.registered_model_name, version, k, redact(str(v)))

    def verified_copy(self, ref: ModelRef, folder: str) -> Path:
        """A registered version's files downloaded into ``folder``, after checking them against the
        sha256 recorded when it was logged; a mismatch (or no record) raises ModelIntegrityError,
        and so do missing files, said as missing."""
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        from modelmill.errors import ModelIntegrityError

        tags = self.client.get_model_version(ref.name, ref.version).tags
        expected = tags.get(MODEL_DIGEST_TAG)
        if self.signer is not None and expected is not None:  # the digest itself is the project's, or nothing loads
            try:
                self.signer.verify(
                    "model",
                    _model_text(ref, expected),
                    tags.get(MODEL_SIGNATURE_TAG),
                    f"the sha256 of model {ref.name} v{ref.version}",
                )
            except Untrusted as e:
                raise ModelIntegrityError(f"{e} (nothing was loaded)") from e
        try:
            local = Path(
                self._mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{ref.name}/{ref.version}", dst_path=folder
                )
            )
        except (MlflowException, OSError) as e:
            raise ModelIntegrityError(
                f"model {ref.name} v{ref.version} is missing from the artifact store ({str(e).splitlines()[0][:200]}): nothing was loaded"
            ) from e
        mlmodel = local / "MLmodel"
        needed = ["MLmodel"]
        if mlmodel.is_file():
            needed += [Model.load(str(mlmodel)).flavors.get("sklearn", {}).get("pickled_model", "model.pkl")]
        missing = [n for n in needed if not (local / n).is_file()]
        if missing:
            raise ModelIntegrityError(
                f"model {ref.name} v{ref.version} is missing {', '.join(missing)} in the artifact store "
                "(lost or deleted, not altered): nothing was loaded"
            )
        found = dir_digest(local)
        if expected is None:
            raise ModelIntegrityError(
                f"model {ref.name} v{ref.version} has no recorded sha256 (tag {MODEL_DIGEST_TAG}): refusing to load it"
            )
        if found != expected:
            raise ModelIntegrityError(
                f"model {ref.name} v{ref.version} fails its sha256 check (recorded {expected[:12]}…, found {found[:12]}…): "
                "its files changed after it was logged; refusing to load it"
            )
        return local

    def verify_model(self, ref: ModelRef) -> None:
        """Check a registered version's files against their recorded sha256, loading nothing."""
        with tempfile.TemporaryDirectory(prefix="modelmill-model-") as tmp:
            self.verified_copy(ref, tmp)

    def load_model(self, ref: ModelRef, spec: PipelineSpec):
        """Load a registered version of ``spec``'s model, after checking its files against the sha256
        recorded when it was logged; a mismatch (or no record) refuses to load anything from them.
        A skops file loads against modelmill's allow-list; a pickle only for a pipeline whose
        candidates can hold a network (:mod:`modelmill.registry.model_files`)."""
        return self.load_model_and_labels(ref, spec)[0]

    def load_model_and_labels(self, ref: ModelRef, spec: PipelineSpec) -> tuple[Any, tuple]:
        """:meth:`load_model`, and the class labels that travel in its files (a binary classifier's
        (negative, positive) as the data wrote them; empty for other models)."""
        from mlflow.models import Model

        from modelmill.errors import ModelIntegrityError
        from modelmill.learn.kinds import get_kind

        with tempfile.TemporaryDirectory(prefix="modelmill-model-") as tmp:
            local = self.verified_copy(ref, tmp)
            mlmodel = Model.load(str(local / "MLmodel"))
            labels = tuple((mlmodel.metadata or {}).get("modelmill.labels", []))
            pickled = mlmodel.flavors.get("sklearn", {}).get("serialization_format") != "skops"
            if pickled and not self.settings.load_pickles and not get_kind(spec.problem).may_hold_a_network(spec):
                raise ModelIntegrityError(
                    f"model {ref.name} v{ref.version} is a pickle, and no candidate of pipeline {spec.name} holds a "
                    "network: only a skops file loads for it (loading a pickle can run code). "
                    f"Retrain it with `modelmill run {spec.name} --force`, or set MODELMILL_LOAD_PICKLES=1 "
                    "if you trust every file in the registry"
                )
            return _load_sklearn(str(local), f"model {ref.name} v{ref.version}"), labels

    def model_version(self, spec: PipelineSpec, version: str):
        """A version of the pipeline's registered model (with its tags), or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(spec.registered_model_name, str(version))
        except MlflowException:
            return None

    def versions(self, spec: PipelineSpec) -> list:
        """Every version of the pipeline's registered model, oldest first."""
        found = self.client.search_model_versions(f"name = '{spec.registered_model_name}'")
        return sorted(found, key=lambda mv: int(mv.version))

    def delete_alias(self, spec: PipelineSpec, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(spec.registered_model_name, alias)
        except MlflowException:
            pass

    def model_tags(self, spec: PipelineSpec) -> dict[str, str]:
        """The registered model's own tags (empty before its first version)."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(spec.registered_model_name).tags)
        except MlflowException:
            return {}

    def set_model_tag(self, spec: PipelineSpec, key: str, value: str) -> None:
        self.client.set_registered_model_tag(spec.registered_model_name, key, value)

    def delete_model_tag(self, spec: PipelineSpec, key: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_tag(spec.registered_model_name, key)
        except MlflowException:
            pass

    # -- the audit trail of champion moves ----------------------------------------------------
    def audit_rows(self, spec: PipelineSpec) -> pd.DataFrame:
        """Every recorded move of the champion alias (approve, rollback), oldest first."""
        exp = self.experiment_id(spec, create=False, suffix=AUDIT_SUFFIX)
        if exp is None:
            return pd.DataFrame()
        runs = self.client.search_runs([exp], order_by=["attributes.start_time ASC"], max_results=10_000)
        return pd.DataFrame([dict(r.data.params) for r in runs])

    def log_audit(self, spec: PipelineSpec, row: dict[str, str]) -> str:
        """One run per move in the pipeline's ``…/audit`` experiment, its fields as params, and
        the whole trail so far as ``audit.csv`` on it."""
        table = pd.concat([self.audit_rows(spec), pd.DataFrame([row])], ignore_index=True)
        run = self.client.create_run(
            self.experiment_id(spec, suffix=AUDIT_SUFFIX),
            run_name=f"{row['action']} v{row['version']}",
            tags={"modelmill.pipeline": spec.name, "modelmill.audit": row["action"]},
        )
        for k, v in row.items():
            self.client.log_param(run.info.run_id, k, v)
        self.log_table(run.info.run_id, table, "audit.csv")
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    # -- queries for list / history -----------------------------------------------------------
    def runs(self, spec: PipelineSpec, max_results: int = 1000) -> pd.DataFrame:
        exp = self.experiment_id(spec, create=False)
        if exp is None:
            return pd.DataFrame()
        return self._mlflow.search_runs(
            experiment_ids=[exp], max_results=max_results, order_by=["attributes.start_time ASC"]
        )

    def last_trained_run(self, spec: PipelineSpec):
        """The newest run of the pipeline that finished training (not a skipped one), or None."""
        exp = self.experiment_id(spec, create=False)
        if exp is None:
            return None
        found = self.client.search_runs(
            [exp],
            filter_string="attributes.status = 'FINISHED' and tags.`modelmill.decision` != 'skipped_unchanged'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0] if found else None

    def last_seconds(self, spec: PipelineSpec) -> float | None:
        """How long the pipeline's newest trained run took (wall seconds), if it has one."""
        run = self.last_trained_run(spec)
        if run is None or not run.info.end_time:
            return None
        return (run.info.end_time - run.info.start_time) / 1000

    def find_run(self, spec: PipelineSpec, flow_run_id: str):
        """The MLflow run a given Prefect flow run logged to, if any."""
        exp = self.experiment_id(spec, create=False)
        if exp is None:
            return None
        found = self.client.search_runs(
            [exp], filter_string=f"tags.`modelmill.prefect_flow_run_id` = '{flow_run_id}'", max_results=1
        )
        return found[0] if found else None

    def latest_metric(self, run_id: str, key: str):
        """The value MLflow shows as a run's ``key`` (its highest step, then its latest), and when
        it was logged (UTC); None when the run has no such metric."""
        import pandas as pd

        history = self.client.get_metric_history(run_id, key)
        if not history:
            return None
        last = max(history, key=lambda m: (m.step, m.timestamp))
        return last.value, pd.Timestamp(last.timestamp, unit="ms", tz="UTC")

    def run(self, run_id: str):
        return self.client.get_run(run_id)


# -- the registered model's pyfunc ------------------------------------------------------------
class ServedModel:
    """A registered model as ``mlflow.pyfunc.load_model(...).predict`` (and so ``mlflow models
    serve``) serves it. It wraps the very pipeline the scikit-learn flavour of the same files
    loads, so both give the same numbers on the same raw rows. A model registered with the gate's
    row rules (:mod:`modelmill.quality.served_rules`) checks each row first: a row that breaks one
    gets no prediction and a ``rejected_because`` naming the rule, as ``modelmill score`` does.
    Its answer: ``prediction``, and a regressor's ``lower`` and ``upper``; without row rules (a
    model registered before they were carried), the pipeline's own ``predict``."""

    def __init__(self, model, rules: list | tuple = (), threshold: float | None = None):
        self.model, self.rules, self.threshold = model, list(rules), threshold

    def get_raw_model(self):
        return self.model

    def columns(self) -> list[str]:
        from modelmill.learn.kinds.regression import has_interval

        return ["prediction", "lower", "upper"] if has_interval(self.model) else ["prediction"]

    def answer(self, rows) -> pd.DataFrame:
        from modelmill.learn.kinds.regression import prediction_frame

        return prediction_frame(self.model, rows)

    def predict(self, data, params: dict | None = None):
        import numpy as np

        if not self.rules:
            return self.answer(data) if self.columns() != ["prediction"] else self.model.predict(data)
        from modelmill.quality.served_rules import check

        rows = data.reset_index(drop=True) if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        reasons = check(self.rules, rows)
        ok = (reasons == "").to_numpy()
        out = pd.DataFrame({c: pd.Series([None] * len(rows), dtype=object) for c in self.columns()})
        if ok.any():
            answered = self.answer(rows[ok])
            out = out.astype({c: answered[c].dtype if answered[c].dtype != object else object for c in answered})
            out.loc[np.flatnonzero(ok), list(answered.columns)] = answered.to_numpy()
        if self.threshold is not None:
            out["threshold"] = self.threshold
        out["rejected_because"] = reasons.where(~ok, None).astype(object).to_numpy()
        return out


class ServedClassifier(ServedModel):
    """A classifier: ``prediction`` as the data's own label (not a code), or the name the spec
    gives it (``names``), and ``probability_<name>`` for every class; a binary one also its
    decision ``threshold``."""

    def __init__(
        self,
        model,
        labels: tuple | list = (),
        rules: list | tuple = (),
        threshold: float | None = None,
        names: tuple | list = (),
    ):
        super().__init__(model, rules, threshold)
        self.labels = tuple(names) if names else tuple(labels)

    def columns(self) -> list[str]:
        names = self.labels or list(getattr(self.model, "classes_", []))
        probabilities = [f"probability_{n}" for n in names] if hasattr(self.model, "predict_proba") else []
        return ["prediction", *probabilities]

    def answer(self, rows) -> pd.DataFrame:
        import numpy as np

        predicted = np.asarray(self.model.predict(rows))
        if self.labels:  # each class's code -> its label as the data writes it ((negative, positive) of a binary model)
            out = pd.DataFrame({"prediction": np.asarray(self.labels, dtype=object)[predicted.astype(int)]})
        else:
            out = pd.DataFrame({"prediction": predicted})
        if hasattr(self.model, "predict_proba"):
            proba = np.asarray(self.model.predict_proba(rows))
            names = self.labels or list(self.model.classes_)
            for i, name in enumerate(names):
                out[f"probability_{name}"] = proba[:, i]
        return out

    def predict(self, data, params: dict | None = None) -> pd.DataFrame:
        if not self.rules:
            out = self.answer(data)
            return out.assign(threshold=self.threshold) if self.threshold is not None else out
        return super().predict(data, params)


def save_model(
    path,
    mlflow_model,
    sk_model,
    labels: tuple | None = None,
    row_rules: list | None = None,
    threshold: float | None = None,
    label_names: tuple | None = None,
    **kwargs,
) -> None:
    """The flavour ``Model.log`` saves with: scikit-learn's files and flavour, a pyfunc served by
    this module (which loads a skops file against modelmill's allow-list, never the file's own),
    and for a classifier (:class:`ServedClassifier`) its labels in the MLmodel's metadata."""
    import mlflow.sklearn

    metadata = dict(kwargs.get("metadata") or {})
    if labels is not None:
        metadata["modelmill.labels"] = [v.item() if hasattr(v, "item") else v for v in labels]
    if label_names is not None and tuple(map(str, label_names)) != tuple(map(str, labels or ())):
        metadata["modelmill.label_names"] = list(label_names)
    if row_rules:
        metadata["modelmill.row_rules"] = row_rules
    if threshold is not None:
        metadata["modelmill.threshold"] = threshold
    if metadata:
        kwargs["metadata"] = metadata
    mlflow.sklearn.save_model(sk_model, path, mlflow_model=mlflow_model, **kwargs)
    mlflow_model.flavors["python_function"]["loader_module"] = __name__
    mlflow_model.save(os.path.join(path, "MLmodel"))


def _load_sklearn(folder: str, what: str):
    """The estimator in a model folder: a skops file against the allow-list, else MLflow's loader."""
    import mlflow.sklearn
    from mlflow.models import Model

    from modelmill.registry.model_files import SKOPS, load_skops

    conf = Model.load(os.path.join(folder, "MLmodel")).flavors.get("sklearn", {})
    if conf.get("serialization_format") == SKOPS:
        return load_skops(Path(folder) / conf["pickled_model"], what)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.sklearn.load_model(folder)


def _load_pyfunc(path):
    """The pyfunc loader of a model's files (see :func:`save_model`)."""
    from mlflow.models import Model

    folder = path if os.path.isdir(path) else os.path.dirname(path)
    mlmodel = Model.load(os.path.join(folder, "MLmodel"))
    model = _load_sklearn(folder, f"the model in {folder}")
    meta = mlmodel.metadata or {}
    rules, threshold = meta.get("modelmill.row_rules", []), meta.get("modelmill.threshold")
    if "modelmill.labels" in meta:
        return ServedClassifier(
            model, meta["modelmill.labels"], rules, threshold, meta.get("modelmill.label_names", ())
        )
    return ServedModel(model, rules)
