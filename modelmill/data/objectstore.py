"""Snapshots on an S3-compatible object store, so that a worker on any machine can run any stage.

``MODELMILL_STORE_URI=s3://bucket/prefix`` (endpoint ``MODELMILL_STORE_ENDPOINT`` for a store
that is not AWS; credentials from the environment, as every S3 client reads them:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``). Unset: snapshots stay in the local
``MODELMILL_HOME`` only, as before.

Every object is content-addressed (its name is its sha256). A file is published by uploading it
under a temporary key and then copying it to its final key, so a reader never finds half an
object under a final name; a run records the final key. A reader downloads into a local cache
and checks the sha256 before anything reads the bytes: a tampered object is refused. A store
that does not answer is one line naming it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from pathlib import Path

from modelmill.config.settings import Settings
from modelmill.config.trust import Signer, signer
from modelmill.errors import ChecksumMismatch, ModelmillError
from modelmill.runtime.redact import redact

log = logging.getLogger("modelmill.store")

SCHEME = "s3://"
#: this process's store handles, by store, project folder and credentials (:meth:`ObjectStore.of`)
_STORES: dict[tuple, ObjectStore] = {}


class StoreUnavailable(ModelmillError):
    """The object store named by MODELMILL_STORE_URI does not answer (or refuses the credentials)."""


class ObjectStore:
    def __init__(self, uri: str, endpoint: str | None, cache: Path, signer: Signer | None = None):
        if not uri.startswith(SCHEME) or len(uri) <= len(SCHEME):
            raise ModelmillError(f"MODELMILL_STORE_URI={uri}: give an s3://bucket/prefix location")
        self.uri = uri.rstrip("/")
        self.root = self.uri[len(SCHEME) :]
        self.endpoint, self.cache, self.signer = endpoint, cache, signer
        self._fs = None

    @classmethod
    def of(cls, settings: Settings) -> ObjectStore | None:
        """The project's store, or None when MODELMILL_STORE_URI is not set (a store needs the
        project's signing key: :mod:`modelmill.config.trust`). Built once per process and store
        (its S3 client and connections then serve every stage of a command), under the calling
        command's key."""
        if not settings.store_uri:
            return None
        key = (settings.store_uri, settings.store_endpoint, str(settings.home_dir), os.environ.get("AWS_ACCESS_KEY_ID"))
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = cls(
                settings.store_uri, settings.store_endpoint, settings.home_dir / "store-cache", None
            )
        store.signer = signer(settings)  # the key is checked (and required) on every call
        return store

    def publish_entry(self, entry: dict, key: str) -> str:
        """A small JSON record (a parse-map entry, a download's index, a shard's name) as ``key``,
        signed with the project's key and bound to that key."""
        signed = self.signer.sign_entry(key, entry) if self.signer is not None else entry
        with tempfile.TemporaryDirectory(prefix="modelmill-entry-") as folder:
            path = Path(folder) / "entry.json"
            path.write_text(json.dumps(signed))
            return self.publish(path, key)

    def read_entry(self, key: str) -> dict:
        """A record :meth:`publish_entry` wrote, its signature verified (refused in one line, naming
        it, when it is missing or was not made with the project's key)."""
        try:
            entry = json.loads(self.read(key))
        except json.JSONDecodeError as e:
            raise ModelmillError(f"object-store entry {key} is not JSON: refusing it") from e
        return self.signer.verified_entry(key, entry) if self.signer is not None else entry

    @property
    def fs(self):
        if self._fs is None:
            from pyarrow import fs

            kw = {
                "connect_timeout": 5,
                "request_timeout": 60,
                "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3),
            }
            if self.endpoint:
                scheme, _, host = self.endpoint.partition("://")
                kw |= {
                    "endpoint_override": host or scheme,
                    "scheme": scheme if host else "https",
                    "region": os.environ.get("AWS_REGION", "us-east-1"),
                }
            self._fs = fs.S3FileSystem(**kw)
        return self._fs

    def _unavailable(self, what: str, error: BaseException) -> StoreUnavailable:
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = f" at {redact(self.endpoint)}" if self.endpoint else ""
        return StoreUnavailable(
            f"the object store MODELMILL_STORE_URI={self.uri}{where} could not {what} ({cause[:300]})"
        )

    def location(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def _path(self, location: str) -> str:
        if not location.startswith(self.uri + "/"):
            raise ModelmillError(f"{location} is not in the object store {self.uri}")
        return location[len(SCHEME) :]

    def has(self, key: str) -> bool:
        from pyarrow import fs

        try:
            return self.fs.get_file_info(f"{self.root}/{key}").type == fs.FileType.File
        except OSError as e:
            raise self._unavailable(f"look up {key}", e) from e

    def keys(self, prefix: str) -> list[str]:
        """The published keys under ``prefix`` (not the temporary keys of uploads)."""
        from pyarrow import fs

        try:
            found = self.fs.get_file_info(fs.FileSelector(f"{self.root}/{prefix}", allow_not_found=True))
        except OSError as e:
            raise self._unavailable(f"list {prefix}", e) from e
        return sorted(
            i.path[len(self.root) + 1 :] for i in found if i.type == fs.FileType.File and ".upload-" not in i.base_name
        )

    def delete(self, key: str) -> None:
        """Remove a published object (one already gone is not an error)."""
        from pyarrow import fs

        try:
            if self.fs.get_file_info(f"{self.root}/{key}").type == fs.FileType.File:
                self.fs.delete_file(f"{self.root}/{key}")
        except OSError as e:
            raise self._unavailable(f"delete {key}", e) from e

    def read(self, key: str) -> bytes:
        """A small object's bytes (a parse-map entry, a lineage record)."""
        try:
            with self.fs.open_input_stream(f"{self.root}/{key}") as src:
                return src.read()
        except OSError as e:
            raise self._unavailable(f"read {key}", e) from e

    def publish(self, local: Path, key: str) -> str:
        """Upload ``local`` as ``key``: under a temporary key first, then copied to ``key`` (a
        reader never sees part of it under that name); returns its location."""
        final, temporary = f"{self.root}/{key}", f"{self.root}/{key}.upload-{uuid.uuid4().hex[:12]}"
        try:
            with open(local, "rb") as src, self.fs.open_output_stream(temporary) as out:
                for block in iter(lambda: src.read(8 << 20), b""):
                    out.write(block)
            self.fs.copy_file(temporary, final)
        except OSError as e:
            raise self._unavailable(f"store {key}", e) from e
        finally:
            try:
                self.fs.delete_file(temporary)
            except OSError:
                pass  # a store that went down leaves the temporary key: never read, as no run names it
        log.info("published %s to %s", local.name, self.location(key))
        return self.location(key)

    def fetch(self, location: str, sha256: str) -> Path:
        """The object at ``location`` as a local file, its sha256 checked (a cached copy is
        checked too); a mismatch refuses it."""
        from modelmill.data.digests import sha256_file

        cached = self.cache / sha256[:2] / f"{sha256}{Path(location).suffix}"
        if cached.is_file() and sha256_file(cached) == sha256:
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".fetch-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, self.fs.open_input_stream(self._path(location)) as src:
                for block in iter(lambda: src.read(8 << 20), b""):
                    out.write(block)
            found = sha256_file(Path(tmp))
            if found != sha256:
                raise ChecksumMismatch(
                    f"{location} fails its checksum (sha256 {found[:12]}…, expected {sha256[:12]}…): the object was altered in the store; refusing it"
                )
            os.replace(tmp, cached)
        except OSError as e:
            raise self._unavailable(f"read {location}", e) from e
        finally:
            Path(tmp).unlink(missing_ok=True)
        return cached


def snapshot_key(dataset: str, name: str) -> str:
    return f"snapshots/{dataset}/{name}"


def download_key(sha256: str, name: str) -> str:
    """A downloaded source file, by its content (the suffix kept for the readers that look at it)."""
    return f"downloads/{sha256}{''.join(Path(name).suffixes[-2:])}"


def local_snapshot(recorded: str, settings: Settings) -> Path | None:
    """The snapshot a run recorded (a local path, or a location in the object store) as a local
    file, or None when it is not to be had here (a local path of another machine, removed)."""
    if not recorded:
        return None
    if recorded.startswith(SCHEME):
        store = ObjectStore.of(settings)
        if store is None or not recorded.startswith(store.uri + "/"):
            raise ModelmillError(
                f"the snapshot {recorded} is in an object store this machine is not set up for (MODELMILL_STORE_URI)"
            )
        return store.fetch(recorded, Path(recorded).stem)
    path = Path(recorded)
    return path if path.is_file() else None
