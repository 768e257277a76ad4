"""Content digests: what pins a source file, a snapshot or an object in the store to its bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_digest(root: Path, exclude: frozenset[str] = frozenset()) -> str:
    """sha256 over every file under ``root`` (except names in ``exclude``): each file's relative
    path and its content's sha256, in path order. Any file added, removed, renamed or changed
    changes it."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(root).rglob("*") if q.is_file() and q.name not in exclude):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()
