"""The modelmill command line: run pipelines, check and score data, review runs, serve schedules.

One module per command group, each a thin shell over the core; the core stays free of prefect:
flows are imported inside the commands that run them, after the environment (Prefect home, MLflow
store) has been set from :class:`Settings`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from modelmill.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, forget_prefect_api, log
from modelmill.config.settings import get_settings
from modelmill.errors import ModelmillError, one_line_cause
from modelmill.runtime.redact import redact

#: the command groups, in the order ``--help`` lists them
COMMAND_MODULES = ("init", "run", "check", "score", "outcomes", "approve", "review", "reproduce", "datasets", "service")


def _on_sigterm(signum, frame):
    raise Terminated("terminated by SIGTERM")


def _setup_logging(verbose: bool) -> None:
    from modelmill.runtime.redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())  # no password of a URL reaches the console
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", "%H:%M:%S"))
    root = logging.getLogger("modelmill")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    logging.captureWarnings(True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelmill", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"modelmill.cli.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    settings = get_settings()
    if args.command not in ("serve", "ui"):  # a command beside `modelmill serve` uses its servers
        from modelmill.cli.common import adopt_served

        adopt_served(settings)
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.fn(args, settings)
    except ModelmillError as e:
        print(f"modelmill: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - a full disk, a vanished folder…: the cause in one line
        log.debug("traceback", exc_info=True)
        print(f"modelmill: error: {redact(one_line_cause(e))} (run with -v for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(
            f"modelmill: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the run in progress was marked KILLED",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        forget_prefect_api()
