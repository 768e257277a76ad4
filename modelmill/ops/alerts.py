"""Alerts: one message per event (a run failed or was rejected, data drifted, a model was
promoted or not, a pipeline went stale, a scoring batch set too many rows aside, the champion did
worse on the outcomes of the rows it scored than on its test split), sent through
apprise to the URLs a spec's ``notify`` (or the project's ``MODELMILL_NOTIFY_URLS``) names.

A notifier that fails never fails the run, and a slow one never holds it: the URLs are sent to
at once, each tried a bounded number of times with a short timeout, all under one deadline
(``MODELMILL_NOTIFY_DEADLINE``, 20 s); a failure is one log line. Secrets stay out of specs and logs: a URL may hold ``${VAR}``, filled
from the environment when the message is sent, and the logs show URLs with their credentials
masked."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
import time
from dataclasses import dataclass

from modelmill.config.settings import Settings
from modelmill.config.spec import ALERT_EVENTS as EVENTS
from modelmill.config.spec import PipelineSpec
from modelmill.runtime.redact import mask_url

log = logging.getLogger("modelmill.ops.alerts")

#: sent when neither the spec nor the project names events
DEFAULT_EVENTS = ("failed", "rejected", "drift", "promoted", "candidate", "stale", "score_rejected", "live_drop")
ATTEMPTS = 3
#: seconds each connection to a receiver, and each read from it, may take
URL_TIMEOUT = 5.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Alert:
    pipeline: str
    event: str
    cause: str
    link: str | None = None

    @property
    def title(self) -> str:
        return f"modelmill · {self.pipeline} · {self.event.replace('_', ' ')}"

    @property
    def body(self) -> str:
        return self.cause.splitlines()[0] + (f"\n{self.link}" if self.link else "")


def expand(url: str) -> str:
    """``${VAR}`` in a URL filled from the environment (a missing one is an error naming it)."""

    def value(m: re.Match) -> str:
        if m.group(1) not in os.environ:
            raise KeyError(m.group(1))
        return os.environ[m.group(1)]

    return _VARIABLE.sub(value, url)


#: a URL fit for a log line: its scheme and host, never a password, token or path secret
masked = mask_url


def targets(spec: PipelineSpec | None, settings: Settings) -> tuple[list[str], tuple[str, ...]]:
    """The URLs and events that apply: the spec's ``notify``, else the project's defaults."""
    if spec is not None and spec.notify is not None:
        return list(spec.notify.urls), tuple(spec.notify.events or DEFAULT_EVENTS)
    urls = [u for u in re.split(r"[\s,]+", settings.notify_urls or "") if u]
    events = tuple(e for e in re.split(r"[\s,]+", settings.notify_events or "") if e) or DEFAULT_EVENTS
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        log.warning(
            "MODELMILL_NOTIFY_EVENTS names unknown events %s (known: %s)", ", ".join(unknown), ", ".join(EVENTS)
        )
    return urls, events


def send(alert: Alert, spec: PipelineSpec | None, settings: Settings, *, pause: float = 0.5) -> int:
    """Send ``alert`` to every URL that takes its event, all at once; returns how many confirmed it.
    Never raises and never waits longer than ``settings.notify_deadline`` seconds in all: each URL
    is tried up to ``ATTEMPTS`` times with :data:`URL_TIMEOUT` per connection and read, in a daemon
    thread that a slow receiver may keep, never the caller (nor the interpreter's exit)."""
    urls, events = targets(spec, settings)
    if alert.event not in events or not urls:
        return 0
    import apprise  # noqa: F401 - imported once here, not in each sending thread

    logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its own lines may carry a URL
    deadline = settings.notify_deadline
    end = time.monotonic() + deadline
    delivered: list[str] = []
    over = threading.Event()
    threads = [
        threading.Thread(  # in a copy of this context: its log lines reach the run's (Prefect's) log
            target=contextvars.copy_context().run,
            args=(_deliver, alert, url, end, pause, delivered, over),
            name=f"alert-{masked(url)}",
            daemon=True,
        )
        for url in urls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    over.set()  # a thread still sending says nothing more: the line below speaks for it
    for url, thread in zip(urls, threads, strict=True):
        if thread.is_alive():
            log.warning(
                "%s: alert %s to %s not confirmed within %.0f s (MODELMILL_NOTIFY_DEADLINE); the run goes on",
                alert.pipeline,
                alert.event,
                masked(url),
                deadline,
            )
    return len(delivered)


def _deliver(alert: Alert, url: str, end: float, pause: float, delivered: list[str], over: threading.Event) -> None:
    """One URL's attempts, none started after ``end`` (a monotonic time); silent once ``over``
    (the caller has moved on and said this URL did not confirm in time)."""
    import apprise

    try:
        full = expand(url)
    except KeyError as e:
        log.warning(
            "%s: alert %s not sent to %s: environment variable %s is not set",
            alert.pipeline,
            alert.event,
            masked(url),
            e.args[0],
        )
        return
    notifier = apprise.Apprise()
    if not notifier.add(full):
        log.warning("%s: alert %s not sent: %s is not an apprise URL", alert.pipeline, alert.event, masked(url))
        return
    for plugin in notifier:
        plugin.socket_connect_timeout = plugin.socket_read_timeout = URL_TIMEOUT
    for attempt in range(1, ATTEMPTS + 1):
        try:
            ok = notifier.notify(title=alert.title, body=alert.body)
        except Exception as e:  # noqa: BLE001 - a notifier's failure is never the run's
            ok, why = False, type(e).__name__
        else:
            why = "not delivered"
        if over.is_set():
            return
        if ok:
            delivered.append(url)
            log.info("%s: alert %s sent to %s", alert.pipeline, alert.event, masked(url))
            return
        if attempt == ATTEMPTS or time.monotonic() + pause * attempt >= end:
            log.warning(
                "%s: alert %s to %s failed %s (%s); the run goes on",
                alert.pipeline,
                alert.event,
                masked(url),
                "once" if attempt == 1 else f"{attempt} times",
                why,
            )
            return
        time.sleep(pause * attempt)
