"""Secrets out of everything modelmill records: run params and tags, the spec artifact, the card,
log lines (the console's and Prefect's) and one-line errors.

A URL may carry a password (``http://user:password@host``, ``postgresql://u:p@db/x``) or a
token in its query (``?token=…``, ``&api_key=…``); :func:`redact` replaces those with ``***``
wherever they appear in a text. Notification URLs carry their secrets in paths too
(``slack://T000/B000/XXXX``), so :func:`mask_url` keeps only a URL's scheme and host, for the
places that name a notify URL.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
#: ``scheme://user:password@`` (the password is everything up to the last ``@`` of the authority)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/?#@\s'\"]*):(?P<password>[^/?#\s'\"]*)@")
#: query parameters whose value is a credential
_QUERY = re.compile(
    r"(?P<key>[?&;](?:access_?token|api_?key|apikey|auth|key|password|passwd|pwd|secret|sig|signature|token|X-Amz-Signature|X-Amz-Credential)=)[^&#\s'\"]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with URL passwords and credential query values replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


def mask_url(url: str) -> str:
    """A URL reduced to its scheme and host: for notification URLs, whose paths hold secrets too."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if rest else scheme


class RedactingFilter(logging.Filter):
    """A handler's filter that redacts each record's message (after its arguments are merged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
