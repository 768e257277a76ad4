"""The Prefect servers modelmill starts, `modelmill serve`'s and each command's temporary API: Prefect's own app (API, UI and services such as the
cron scheduler, as `prefect server start` runs it in the foreground) behind a Host allow-list.

Prefect has no setting that refuses a foreign ``Host`` header (DNS rebinding: a web page on
evil.com resolving to 127.0.0.1); Starlette's TrustedHostMiddleware answers such requests 400.
Authentication (``PREFECT_SERVER_API_AUTH_STRING``) and a narrow CORS origin
(``PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS``) come from the environment ``serve`` sets.

    python -m modelmill_flows.prefect_server --host 127.0.0.1 --port 4200 --allowed-host 127.0.0.1:4200
"""

from __future__ import annotations

import argparse
import os


def guarded(app, allowed: list[str]):
    """``app`` behind a Host allow-list: each ``host:port`` and its bare host."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    return TrustedHostMiddleware(app, allowed_hosts=sorted({h.split(":")[0] for h in allowed} | set(allowed)))


def temporary_app():
    """The temporary API a command starts (``uvicorn --factory``): Prefect's ephemeral app behind
    the same Host allow-list as ``serve``'s, for the URL the command gave it
    (``MODELMILL_TEMPORARY_PREFECT_API``); its CORS origin is that URL alone, set in its environment."""
    from prefect.server.api.server import create_app

    url = os.environ["MODELMILL_TEMPORARY_PREFECT_API"]
    return guarded(create_app(), [url.split("://", 1)[1].split("/", 1)[0]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--allowed-host", action="append", required=True, help="a Host header value to accept (repeat)")
    args = ap.parse_args()

    import uvicorn
    from prefect.server.api.server import create_app

    app = guarded(create_app(final=True), args.allowed_host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_keep_alive=5)


if __name__ == "__main__":
    main()
