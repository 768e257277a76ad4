"""Look at the MLflow and Prefect UIs as a user would, in a real headless browser, and save screenshots.

    python scripts/ui_screenshots.py --run breast_cytology --out docs/img/     # the docs' pictures
    python scripts/ui_screenshots.py --home .modelmill --out ui-shots/          # an existing store

With ``--run`` the pipelines are run twice (a trained run, then a skipped rerun) into a fresh
temporary project folder, against a Prefect server and an MLflow server started for them
(127.0.0.1, free ports). Headless Chromium (Debian's ``chromium`` package) then saves, per
experiment: the runs table as modelmill's links open it (skipped reruns filtered out), the same
table in modelmill's shared view (primary metric, baseline, lift, decision, data digest…), the
latest run's page, the registered model's page and the run's GX Data Docs (opened from a
download, with no network); and, with ``--run``, Prefect's flow-runs page. Needs the mirror (``MODELMILL_DATA_MIRROR``) for ``--run``; nothing is written outside
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
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1600,1000", "--virtual-time-budget=25000",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browse(browser: str, url: str, profile: Path, out: Path | None = None) -> str:
    """The page's DOM once its scripts have run (and, with ``out``, a screenshot of it)."""
    base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    if out is not None:
        subprocess.run([*base, f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)
        print(f"{out}  ←  {url}")
    return subprocess.run([*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout


def shoot(out: Path, run: list[str] | None = None, home: Path | None = None) -> dict[str, str]:
    """Save the screenshots (see the module's docstring) under ``out``; returns each page's DOM
    by the screenshot's file name."""
    from modelmill.runtime.servers import mlflow_server, prefect_server

    browser = chromium()
    if not browser:
        raise SystemExit("headless Chromium not found: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    pages: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="modelmill-ui-") as tmp:
        scratch = Path(tmp)
        profile = scratch / "chromium"
        home = home or scratch / "home"
        env = dict(os.environ, MODELMILL_HOME=str(home))
        env.pop("MLFLOW_TRACKING_URI", None)
        servers = []
        try:
            if run:
                prefect = prefect_server(scratch / "prefect", free_port())
                mlflow = mlflow_server(scratch / "mlflow", free_port())
                servers += [prefect, mlflow]
                for s in servers:
                    s.start()
                env |= {"PREFECT_API_URL": f"{prefect.url}/api", "MLFLOW_TRACKING_URI": mlflow.url}
                for _ in range(2):  # a trained run, then a skipped rerun
                    code = subprocess.call([sys.executable, "-m", "modelmill.cli", "run", *run], cwd=REPO, env=env)
                    if code != 0:
                        raise SystemExit(f"modelmill run exited {code}")
                pages["prefect-flow-runs.png"] = browse(
                    browser, f"{prefect.url}/runs", profile, out / "prefect-flow-runs.png"
                )
            else:
                os.environ["MODELMILL_HOME"] = str(home)
                from modelmill.config.settings import get_settings

                mlflow = mlflow_server(scratch / "mlflow", free_port(), get_settings().tracking_uri)
                servers.append(mlflow)
                mlflow.start()
            pages |= _mlflow_pages(browser, mlflow.url, profile, out)
        finally:
            for s in reversed(servers):
                s.stop()
    return pages


def _mlflow_pages(browser: str, url: str, profile: Path, out: Path) -> dict[str, str]:
    from modelmill.config.settings import Settings
    from modelmill.config.spec import load_all
    from modelmill.registry.tracking import Tracker

    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = url  # the server's view of the store
    try:
        settings = Settings()
        tracker = Tracker(settings)
    finally:
        if before is None:
            del os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
    pages = {}
    for spec in load_all(settings):
        exp = tracker.experiment_id(spec, create=False)
        if exp is None:
            continue
        shots = {
            "runs": tracker.experiment_url(exp, url),
            "runs-modelmill-view": tracker.experiment_url(exp, url, shared=True),
            "model": f"{url}/#/models/{spec.registered_model_name}",
        }
        if (trained := tracker.last_trained_run(spec)) is not None:
            shots["run"] = tracker.run_url(trained.info.run_id)
        for what, page in shots.items():
            name = f"mlflow-{spec.name}-{what}.png"
            pages[name] = browse(browser, page, profile, out / name)
        if trained is not None:  # the run's GX Data Docs, opened from a download as a reviewer would
            docs = Path(
                tracker.client.download_artifacts(trained.info.run_id, "validation/data_docs", str(profile.parent))
            )
            (result,) = (p for p in docs.rglob("*.html") if "validations" in p.parts)
            name = f"datadocs-{spec.name}.png"
            pages[name] = browse(browser, result.as_uri(), profile, out / name)
    return pages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="an existing MODELMILL_HOME to look at")
    ap.add_argument("--run", nargs="*", metavar="PIPELINE", help="run these pipelines (twice) into a fresh store first")
    ap.add_argument("--out", default="ui-screenshots", help="folder for the PNG files")
    args = ap.parse_args()
    shoot(Path(args.out).resolve(), args.run, Path(args.home).resolve() if args.home else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
