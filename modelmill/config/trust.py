"""One trust root: what modelmill writes to places others can write to (the object store, the
tracking server's registry), it signs with a key only the project holds, and verifies before it
uses it.

The key is ``MODELMILL_SIGNING_KEY`` (or the file ``MODELMILL_SIGNING_KEY_FILE``, mode 0600). A
signature is HMAC-SHA256 over a purpose and the signed text (an object-store entry with its own
location, a model version's name, number and digest), so a signature made for one object never
validates another. With an object store, or a tracking server beyond this machine's loopback,
the key is required: whoever can write there could otherwise swap a snapshot or a model. On one
machine with the local store it is optional: there the trust boundary is the project folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse

from modelmill.config.settings import Settings
from modelmill.errors import ModelmillError

#: hosts that are this machine: a tracking server there is inside the project's trust boundary
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Untrusted(ModelmillError):
    """An object's signature is missing or does not match: it was not written by this project."""


class Signer:
    def __init__(self, key: bytes):
        self._key = key

    def sign(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}\0{text}".encode(), hashlib.sha256).hexdigest()

    def verify(self, purpose: str, text: str, signature: str | None, what: str) -> None:
        """Refuse, in one line naming ``what``, an object whose signature is missing or wrong."""
        if not signature:
            raise Untrusted(f"{what} is not signed (MODELMILL_SIGNING_KEY): refusing it")
        if not hmac.compare_digest(self.sign(purpose, text), signature):
            raise Untrusted(f"{what} has a signature this project's key did not make: refusing it")

    def sign_entry(self, location: str, entry: dict) -> dict:
        """A JSON entry of the object store with its signature, bound to its location."""
        return {**entry, "signature": self.sign("entry", f"{location}\0{_canonical(entry)}")}

    def verified_entry(self, location: str, entry: dict) -> dict:
        fields = {k: v for k, v in entry.items() if k != "signature"}
        self.verify(
            "entry", f"{location}\0{_canonical(fields)}", entry.get("signature"), f"object-store entry {location}"
        )
        return fields


def _canonical(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def remote_tracking(settings: Settings) -> bool:
    """A tracking server beyond this machine's loopback."""
    uri = settings.tracking_uri
    return uri.startswith("http") and (urllib.parse.urlsplit(uri).hostname or "") not in LOOPBACK


def signer(settings: Settings) -> Signer | None:
    """The project's signer; None without a key where one is optional. A one-line error where it
    is required (an object store, a remote tracking server) or where the key file is unsafe."""
    key: bytes | None = None
    if settings.signing_key is not None and settings.signing_key.get_secret_value():
        key = settings.signing_key.get_secret_value().encode()
    elif settings.signing_key_file is not None:
        path = settings.signing_key_file.expanduser()
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text().strip()
        except OSError as e:
            raise ModelmillError(f"MODELMILL_SIGNING_KEY_FILE={path}: cannot read it ({e.strerror or e})") from e
        if mode & 0o077:
            raise ModelmillError(
                f"MODELMILL_SIGNING_KEY_FILE={path} is readable by others (mode {mode:o}): chmod 600 it"
            )
        key = text.encode() or None
    if key is not None:
        if len(key) < 16:
            raise ModelmillError("the signing key (MODELMILL_SIGNING_KEY) is shorter than 16 characters")
        return Signer(key)
    if settings.store_uri or remote_tracking(settings):
        where = (
            "an object store (MODELMILL_STORE_URI)"
            if settings.store_uri
            else "a remote tracking server (MLFLOW_TRACKING_URI)"
        )
        raise ModelmillError(
            f"MODELMILL_SIGNING_KEY (or MODELMILL_SIGNING_KEY_FILE) must be set with {where}: "
            "modelmill signs what it stores there and refuses what it did not sign"
        )
    return None
