"""Getting source files: the cache, a mirror (directory or http base URL), or the canonical URL.

Every file is checked against what is known of it before it is used: the spec's own ``sha256`` (a
user's copy), else the catalog's pins of the canonical content (the file's sha256, or that of the
data files inside an archive), else the mirror's ``SHA256SUMS.tsv``, else the sha256 pinned at its
first use. A
download lands in the cache only after that check (written to a temporary file, then renamed), so
a failure never replaces a good copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from modelmill.config.settings import Settings
from modelmill.data.catalog import CatalogEntry, CatalogFile
from modelmill.data.digests import sha256_file
from modelmill.data.objectstore import ObjectStore, download_key
from modelmill.errors import ChecksumMismatch, SourceUnavailable, SpecError
from modelmill.runtime.reconcile import temp_prefix

log = logging.getLogger("modelmill.data.fetch")

MIRROR_HINT = (
    "set MODELMILL_DATA_MIRROR to a mirror directory or http base URL laid out as <id>/<file>, "
    "or run `modelmill datasets pull` where the internet is reachable"
)


@dataclass(frozen=True)
class LocalFile:
    name: str
    path: Path
    uri: str
    sha256: str
    #: how its content was vouched for: "known" (catalog, spec or mirror checksum), "pinned" (the
    #: sha256 recorded when this project first used it), "first-use" (nothing to check against:
    #: pinned once the run's gate passes), "live" (a source that changes every day), "user"
    verified: str = "known"
    pin_key: str | None = None


@dataclass(frozen=True)
class Expected:
    """What a file must be: its sha256, or (archives) the sha256 of the data files inside it."""

    sha256: str | None = None
    members: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sha256 or self.members)


PINS_FILE = "checksums.json"


def _pins(settings: Settings) -> dict[str, str]:
    p = settings.home_dir / PINS_FILE
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _pin(settings: Settings, what: str, sha: str) -> None:
    pins = _pins(settings) | {what: sha}
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=settings.home_dir, prefix=temp_prefix(PINS_FILE), suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(pins, out, indent=2, sort_keys=True)
    os.replace(tmp, settings.home_dir / PINS_FILE)


def pin_first_use(settings: Settings, sources: list[dict]) -> None:
    """Pin the sha256 of files accepted without a known checksum, once they passed the gate."""
    for s in sources:
        if s.get("verified") == "first-use" and s.get("pin_key"):
            _pin(settings, s["pin_key"], s["sha256"])
            log.info(
                "pinned the sha256 of %s (%s…) in %s", s["pin_key"], s["sha256"][:12], settings.home_dir / PINS_FILE
            )


def _vouch(entry: CatalogEntry, what: str, lf: LocalFile, expected: Expected, settings: Settings) -> LocalFile:
    """A file without a known checksum is checked against the sha256 pinned at its first use; on
    that first use it is said in the log and on the run, and pinned once the gate passes — so an
    altered copy never passes silently afterwards."""
    if expected:
        return lf
    if entry.max_age_hours is not None:
        return replace(lf, verified="live")
    pinned = _pins(settings).get(what)
    if pinned is None:
        log.warning(
            "%s accepted without a known checksum (none in the catalog, the spec or the mirror): sha256 %s…, to be pinned for later runs",
            what,
            lf.sha256[:12],
        )
        return replace(lf, verified="first-use", pin_key=what)
    if pinned != lf.sha256:
        raise ChecksumMismatch(
            f"{what} from {lf.uri} differs from the sha256 pinned at its first use ({pinned[:12]}…, now {lf.sha256[:12]}…); "
            f"if the source really changed, remove its entry from {settings.home_dir / PINS_FILE}"
        )
    return replace(lf, verified="pinned")


def is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in {"http", "https"}


def _download(url: str, dest: Path, settings: Settings, what: str) -> None:
    """Download ``url`` to ``dest`` atomically, with timeout and retries."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(1, settings.download_retries + 1):
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=temp_prefix(dest.name), suffix=".part")
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "modelmill/0.1"})
            with urllib.request.urlopen(req, timeout=settings.download_timeout) as r, os.fdopen(fd, "wb") as out:
                total = int(r.headers.get("Content-Length") or 0)
                done, next_report = 0, 8 << 20
                while chunk := r.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if done >= next_report:
                        pct = f" ({100 * done / total:.0f}%)" if total else ""
                        log.info("downloading %s: %.1f MB%s", what, done / 1e6, pct)
                        next_report += 8 << 20
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = e
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, urllib.error.HTTPError) and 400 <= e.code < 500 and e.code != 429:
                break
            if attempt < settings.download_retries:
                wait = min(2 ** (attempt - 1), 8)
                log.warning("download of %s failed (%s); retry %d in %ss", what, e, attempt, wait)
                time.sleep(wait)
    reason = getattr(last, "reason", None) or last
    raise SourceUnavailable(f"cannot download {what} from {url}: {reason}; {MIRROR_HINT}")


def _download_verified(url: str, dest: Path, settings: Settings, what: str, expected: Expected) -> str:
    """Download next to ``dest``, check the sha256, then rename over ``dest`` (never half-written).

    With an object store, every download is published there by its content, with an index entry
    naming it, so a file another machine downloaded already is taken from the store (its sha256
    checked, then the same checks as a download): a cluster downloads each source file once."""
    store = ObjectStore.of(settings)
    tmp = dest.with_name(f"{temp_prefix(dest.name)}download.new")
    if store is not None and (sha := _from_store(store, tmp, dest.name, what, expected)):
        os.replace(tmp, dest)
        return sha
    _download(url, tmp, settings, what)
    try:
        sha = _check(tmp, expected, what, url)
    except ChecksumMismatch:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    if store is not None:
        _to_store(store, dest, what, sha)
    return sha


def _download_index(what: str) -> str:
    return f"downloads/index/{hashlib.sha256(what.encode()).hexdigest()[:32]}.json"


def _from_store(store: ObjectStore, tmp: Path, name: str, what: str, expected: Expected) -> str | None:
    """``what`` (file ``name``) from the store into ``tmp`` when some machine published it; its sha256."""
    sha = expected.sha256
    if sha is None and store.has(index := _download_index(what)):
        sha = store.read_entry(index)["sha256"]  # refused unless signed with the project's key
    if sha is None or not store.has(key := download_key(sha, name)):
        return None
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store.fetch(store.location(key), sha), tmp)  # fetch refuses an altered object
    try:
        _check(tmp, expected, what, store.location(key))
    except ChecksumMismatch:
        tmp.unlink(missing_ok=True)
        raise
    log.info("%s: taken from the object store (%s)", what, store.location(key))
    return sha


def _to_store(store: ObjectStore, local: Path, what: str, sha: str) -> None:
    """The file under its content's key, then the index entry naming it (published last)."""
    if not store.has(key := download_key(sha, local.name)):
        store.publish(local, key)
    store.publish_entry({"what": what, "sha256": sha, "key": key}, _download_index(what))


def _mirror_sums(mirror: str, settings: Settings) -> dict[str, str]:
    """The mirror's published checksums (``<id>/<file>`` -> sha256), if it has any."""
    text: str | None = None
    if is_url(mirror):
        try:
            url = mirror.rstrip("/") + "/SHA256SUMS.tsv"
            with urllib.request.urlopen(url, timeout=settings.download_timeout) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
    else:
        p = Path(mirror) / "SHA256SUMS.tsv"
        text = p.read_text() if p.is_file() else None
    sums: dict[str, str] = {}
    for line in (text or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            sums[parts[2].strip()] = parts[1].strip()
    return sums


def _member_problem(path: Path, members: tuple[tuple[str, str], ...]) -> str | None:
    """Why the archive's data files are not the pinned ones (None when every one matches). Every
    entry a reader could take for a member (same name in any folder) must match its pin."""
    if path.stat().st_size == 0:
        return "it is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.startswith("__MACOSX/")]
            for member, sha in members:
                entries = [n for n in names if n == member or n.endswith("/" + member)]
                if not entries:
                    return f"it has no {member}"
                for n in entries:
                    actual = hashlib.sha256(z.read(n)).hexdigest()
                    if actual != sha:
                        return f"its {n} has sha256 {actual[:12]}…, expected {sha[:12]}…"
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        return f"it is not a readable zip archive ({e})"
    return None


def _check(path: Path, expected: Expected, what: str, origin: str) -> str:
    actual = sha256_file(path)
    if not expected or actual == expected.sha256:
        return actual
    if expected.members:
        problem = _member_problem(path, expected.members)
        if problem is None:
            return actual
        raise ChecksumMismatch(f"checksum mismatch for {what} from {origin}: not the canonical data ({problem})")
    raise ChecksumMismatch(
        f"checksum mismatch for {what} from {origin}: expected sha256 {expected.sha256[:12]}…, got {actual[:12]}…"
    )


def check_mirror(settings: Settings) -> None:
    """A mirror folder that does not exist is a configuration error, said before any work starts."""
    mirror = settings.data_mirror
    if mirror and not is_url(mirror) and not Path(mirror).expanduser().is_dir():
        raise SourceUnavailable(
            f"MODELMILL_DATA_MIRROR={mirror}: the folder does not exist (set it to a directory or http base URL laid out as <id>/<file>, or unset it)"
        )


def fetch_catalog_file(
    entry: CatalogEntry,
    f: CatalogFile,
    settings: Settings,
    *,
    url_override: str | None = None,
    expected_sha256: str | None = None,
    refresh: bool = False,
) -> LocalFile:
    """Return a verified local copy of one catalog file."""
    what = f"{entry.id}/{f.name}"
    if expected_sha256:  # the spec's own pin (its `url:` may name another copy)
        expected = Expected(expected_sha256)
    elif f.pinned:  # the canonical content is known: a mirror cannot vouch for a different file
        expected = Expected(f.sha256, f.members)
    elif settings.data_mirror and not url_override:
        expected = Expected(_mirror_sums(settings.data_mirror, settings).get(what))
    else:
        expected = Expected()
    lf = _fetch_catalog_file(entry, f, settings, what, expected, url_override=url_override, refresh=refresh)
    return _vouch(entry, what, lf, expected, settings)


def _fetch_catalog_file(
    entry: CatalogEntry,
    f: CatalogFile,
    settings: Settings,
    what: str,
    expected: Expected,
    *,
    url_override: str | None,
    refresh: bool,
) -> LocalFile:
    mirror = settings.data_mirror
    if mirror and not url_override:
        check_mirror(settings)
        if is_url(mirror):
            url = f"{mirror.rstrip('/')}/{entry.id}/{urllib.parse.quote(f.name)}"
            dest = settings.cache_dir / "mirror" / entry.id / f.name
            if not refresh and dest.is_file():
                try:
                    return LocalFile(f.name, dest, url, _check(dest, expected, what, url))
                except ChecksumMismatch:
                    log.warning("cached %s fails its checksum; downloading it again", what)
            return LocalFile(f.name, dest, url, _download_verified(url, dest, settings, what, expected))
        path = Path(mirror).expanduser().resolve() / entry.id / f.name
        if not path.is_file():
            raise SourceUnavailable(f"{what} is not in the mirror MODELMILL_DATA_MIRROR={mirror}")
        return LocalFile(f.name, path, path.as_uri(), _check(path, expected, what, str(path)))

    url = url_override or f.url
    dest = settings.cache_dir / entry.id / f.name
    if url_override:  # another location of the same file: cached apart from the canonical copy
        dest = settings.cache_dir / "url" / hashlib.sha1(url.encode()).hexdigest()[:16] / f.name
    stale = (
        entry.max_age_hours is not None
        and dest.is_file()
        and time.time() - dest.stat().st_mtime > entry.max_age_hours * 3600
    )
    if not refresh and dest.is_file() and not stale:
        try:
            return LocalFile(f.name, dest, url, _check(dest, expected, what, str(dest)))
        except ChecksumMismatch:
            log.warning("cached %s fails its checksum; downloading it again", what)
    try:
        return LocalFile(f.name, dest, url, _download_verified(url, dest, settings, what, expected))
    except SourceUnavailable as e:
        if not stale:
            raise
        log.warning("%s; using the cached copy from %s", e, time.ctime(dest.stat().st_mtime))
        return LocalFile(f.name, dest, url, _check(dest, expected, what, str(dest)))


def _confined(location: str, settings: Settings, base: Path | None, what: str, verb: str) -> Path:
    """``location`` from ``base``, resolved (symlinks, ``..``) and confined to ``base`` and the data roots."""
    path = Path(location).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    path = path.resolve()  # symlinks and ../ resolved before the check
    roots = ([base.resolve()] if base is not None else []) + settings.allowed_data_roots
    if not any(path.is_relative_to(r) for r in roots):
        raise SpecError(
            f"{what} {location} resolves to {path}, outside the folders a spec may {verb} "
            f"({', '.join(map(str, roots))}); add its folder to MODELMILL_DATA_ROOTS to allow it"
        )
    return path


def writable_file(location: str, settings: Settings, *, base: Path | None) -> Path:
    """Where a spec's output (or one a deployment's parameter names) is written: from ``base`` (the
    spec's folder), confined like a source path. ``base`` None: an operator's own path from the
    command line, from the working directory."""
    if base is None:
        return Path(location).expanduser().resolve()
    return _confined(location, settings, base, "output path", "write")


def locate_user_file(location: str, settings: Settings, *, base: Path | None, folder: bool = False) -> Path:
    """A user's local file (or ``folder``), resolved (symlinks, ``..``) and confined to the folders a spec may read."""
    path = _confined(location, settings, base, "source path", "read")
    if not (path.is_dir() if folder else path.is_file()):
        raise SourceUnavailable(f"source {'folder' if folder else 'file'} {path} does not exist")
    return path


def fetch_user_file(location: str, settings: Settings, *, base: Path | None, expected_sha256: str | None) -> LocalFile:
    """A user's own file: a local path (relative to the spec) or an http(s) URL."""
    if is_url(location):
        name = Path(urllib.parse.urlparse(location).path).name or "data"
        key = hashlib.sha1(location.encode()).hexdigest()[:16]
        dest = settings.cache_dir / "url" / key / name
        return LocalFile(
            name,
            dest,
            location,
            _download_verified(location, dest, settings, name, Expected(expected_sha256)),
            "known" if expected_sha256 else "user",
        )
    path = locate_user_file(location, settings, base=base)
    return LocalFile(
        path.name,
        path,
        path.as_uri(),
        _check(path, Expected(expected_sha256), path.name, str(path)),
        "known" if expected_sha256 else "user",
    )
