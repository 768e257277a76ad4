"""Look at the MLflow UI as a reviewer would, in a real headless browser, and save screenshots.

    python scripts/ui_screenshots.py --run credit_risk price_forecast --out ui-shots/
    python scripts/ui_screenshots.py --home .modelmill --out ui-shots/     # an existing store

With ``--run`` the pipelines are run (twice, so the tables have history) into a fresh temporary
project folder first. Then an MLflow server is started on that store (127.0.0.1, a free port) and
headless Chromium (Debian's ``chromium`` package) saves, per experiment: the runs table as it
opens in the model-training mode, the same table in modelmill's shared view (``?viewStateShareKey=modelmill``:
primary metric, baseline, lift, decision, data digest…), the chart view, and the latest run's
page. Needs the mirror (``MODELMILL_DATA_MIRROR``) for ``--run``; nothing is written outside
``--out`` and the temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=2400,1100", "--virtual-time-budget=25000",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(browser: str, url: str, out: Path, profile: Path) -> None:
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", url]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    print(f"{out}  ←  {url}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="an existing MODELMILL_HOME to look at")
    ap.add_argument("--run", nargs="*", metavar="PIPELINE", help="run these pipelines (twice) into a fresh store first")
    ap.add_argument("--out", default="ui-screenshots", help="folder for the PNG files")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("headless Chromium not found: apt-get install chromium", file=sys.stderr)
        return 1
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelmill-ui-") as tmp:
        home = Path(args.home).resolve() if args.home else Path(tmp) / "home"
        os.environ["MODELMILL_HOME"] = str(home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if args.run:
            for _ in range(2):
                code = subprocess.call([sys.executable, "-m", "modelmill.cli", "run", *args.run], cwd=REPO)
                if code != 0:
                    print(f"modelmill run exited {code}", file=sys.stderr)
                    return code
        from modelmill.config.settings import get_settings
        from modelmill.config.spec import load_all
        from modelmill.registry.tracking import Tracker
        from modelmill.runtime.servers import mlflow_server

        settings = get_settings()
        server = mlflow_server(Path(tmp) / "server", free_port(), settings.tracking_uri)
        server.start()
        try:
            tracker = Tracker(settings)
            for spec in load_all(settings):
                exp = tracker.experiment_id(spec, create=False)
                if exp is None:
                    continue
                base = f"{server.url}/#/experiments/{exp}/runs?workflowType=machine_learning"
                runs = tracker.runs(spec)
                profile = Path(tmp) / "chromium"
                screenshot(browser, base, out / f"{spec.name}-1-runs-default.png", profile)
                screenshot(
                    browser,
                    tracker.experiment_url(exp, server.url),
                    out / f"{spec.name}-2-runs-modelmill-view.png",
                    profile,
                )
                screenshot(browser, f"{base}&compareRunsMode=CHART", out / f"{spec.name}-3-charts.png", profile)
                if not runs.empty:
                    run_page = (
                        f"{server.url}/#/experiments/{exp}/runs/{runs.iloc[-1]['run_id']}?workflowType=machine_learning"
                    )
                    screenshot(browser, run_page, out / f"{spec.name}-4-latest-run.png", profile)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
