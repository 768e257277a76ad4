"""Run the fault and hostile-input cases end to end and print one table: case -> held / failed.

    python scripts/chaos.py            # (make chaos) needs MODELMILL_DATA_MIRROR

Each case is a real run of ``modelmill`` (subprocesses, real Prefect, MLflow and GX on the
mirrored data): the cases that are also in the test suite are run through their tests (one
pytest session, the verdict read from its JUnit report); the full-disk case runs here, on a
small tmpfs it mounts (root only: elsewhere it is reported "not run").
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELMILL = str(Path(sys.executable).with_name("modelmill"))

#: case -> the test (file::name prefix) that runs it
CASES = {
    "SIGTERM mid-training: run KILLED, flow run Crashed, temp API stopped": "test_faults.py::test_sigterm_mid_training",
    "kill -9 mid-training: next command marks it orphaned, temp API stopped": "test_faults.py::test_sigkill_leaves_nothing_running",
    "stale temp files of a killed write are removed": "test_faults.py::test_stale_temporary_files",
    "MLflow server down: one line naming MLFLOW_TRACKING_URI": "test_faults.py::test_an_unreachable_tracking_server",
    "two runs at once on a new store: both finish, one champion": "test_faults.py::test_two_runs_at_once",
    "ten runs at once against one MLflow server: all finish, one champion": "test_servers.py::test_ten_runs_at_once",
    "tampered champion model.pkl: refused, nothing executed": "test_model_integrity.py::test_the_model_digest_is_recorded",
    "tripled rows: dropped before the split, metric unchanged": "test_bad_data.py::test_tripled_rows",
    "numeric feature holding '3,913' / inf / 1e308 / one class: rejected": "test_bad_data.py::test_damaged_user_data",
    "suite naming a missing column: suite error, not rejection": "test_bad_data.py::test_a_suite_naming_a_missing_column",
    "spec path escaping its folders (/etc/passwd, ../, symlink): refused": "test_hostile_specs.py::test_a_source_path_outside",
    "unbounded read_options / estimator sizes: refused at parse": "test_hostile_specs.py::test_unbounded_options",
    "stage over limits.stage_seconds: fails cleanly": "test_hostile_specs.py::test_a_stage_over_its_time_limit",
    "altered canonical data (re-packed archive, mirror sums that vouch): refused": "test_fetch.py::test_archives_are_checked",
    "a second copy of a pinned file inside an archive: refused": "test_fetch.py::test_a_second_copy_of_a_pinned_member",
    "altered BANKING77 file the mirror's SHA256SUMS vouches for: refused": "test_fetch.py::test_banking77_is_pinned",
    "unpinned file altered after first use (no SHA256SUMS): refused": "test_fetch.py::test_a_mirror_without_sums",
    "a split moved by a spec edit: compared on rows neither model trained on": "test_comparison.py::test_a_moved_split",
    "a recommender's hold-out moved: compared on pairs neither model trained on": "test_recommendation.py::test_a_moved_hold_out",
    "slices never move the text split": "test_splits.py::test_a_reporting_option_never_moves_the_split",
    "label-flipped snapshot swapped into the store (no key): refused": "test_objectstore.py::test_a_snapshot_swapped_in_the_store",
    "object store without the signing key: refused": "test_objectstore.py::test_an_object_store_needs_the_signing_key",
    "embedding shard added to the store without the key: refused": "test_objectstore.py::test_downloads_and_embeddings_go_to_the_store",
    "tampered model with its digest tag rewritten: refused, nothing executed": "test_model_integrity.py::test_a_tampered_model_with_its_digest_tag_rewritten",
    "leaked key: a signed model carrying os.system, or a signed pickle: refused, nothing executed": "test_model_integrity.py::test_with_the_key_leaked",
    "module added beside pinned encoder weights: refused": "test_sentences.py::test_a_module_added_beside_pinned_weights",
    "deployment parameter naming a spec file: refused": "test_servers.py::test_prefect_yaml_deploys_to_a_work_pool",
    "spec output escaping its folders / --output over the batch: refused": "test_score.py::test_scores_are_written_only_where",
    "2 KB YAML anchor bomb in a spec: refused at once": "test_hostile_specs.py::test_yaml_anchors_and_aliases_are_refused",
    "three alert receivers that never answer: held to the deadline": "test_operations.py::test_receivers_that_never_answer",
    "metric_drop alert sent after the promotion lock is released": "test_operations.py::test_an_alert_from_the_promotion_stage",
    "foreign Host / CORS preflight on the temporary Prefect API: refused": "test_servers.py::test_the_temporary_prefect_api_is_as_closed",
    "five planted secrets: none recorded anywhere": "test_secrets.py::test_no_planted_secret_is_recorded_anywhere",
    "approve killed after the alias moved: completed by the next command": "test_approval.py::test_a_move_cut_short",
    "two plain rollbacks at once: the champion moves once": "test_approval.py::test_two_plain_rollbacks_at_once",
    "champion's snapshot gone: scores keep the data's labels": "test_score.py::test_the_labels_travel_with_the_model",
    "stale rejected-rows file beside a clean batch: removed": "test_score.py::test_the_output_folder_describes_the_latest_batch",
    "scoring batch killed with -9: swept, half-written file removed": "test_faults.py::test_a_killed_scoring_batch",
    "model files gone: reported missing, not tampered": "test_model_integrity.py::test_a_champion_whose_files_are_gone",
    "xlsx with a cell at XFD1048000: refused, no Rust abort": "test_hostile_specs.py::test_a_workbook_with_a_cell_far",
    "first forecaster worse than the random walk: not promoted": "test_forecasting.py::test_a_first_forecaster_worse",
    "a run's spec.json edited in the artifact store: reproduce refuses it": "test_model_integrity.py::test_a_run_record_altered",
}


def run_tests(workdir: Path) -> dict[str, str]:
    report = workdir / "junit.xml"
    files = sorted({f"tests/{v.split('::')[0]}" for v in CASES.values()})
    env = dict(os.environ, TMPDIR=str(workdir), OMP_NUM_THREADS="1")
    subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *files],
        cwd=REPO,
        env=env,
    )
    outcome: dict[str, list[str]] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{Path(case.get('classname', '').replace('.', '/')).name}.py::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcome.setdefault(name, []).append("failed" if failed else ("not run" if skipped else "held"))
    verdicts = {}
    for label, prefix in CASES.items():
        results = [r for name, rs in outcome.items() if name.startswith(prefix) for r in rs]
        verdicts[label] = (
            "failed"
            if "failed" in results
            else ("held" if results and all(r == "held" for r in results) else "not run")
        )
    return verdicts


def mlflow_down_time(workdir: Path, limit: float = 30) -> str:
    """`modelmill run` against a closed port: exit 1, one line naming MLFLOW_TRACKING_URI, within `limit` s."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MODELMILL_HOME=str(workdir / "down-home"), MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    done = subprocess.run([MODELMILL, "run", "breast_cytology"], env=env, capture_output=True, text=True, cwd=workdir)
    took = time.perf_counter() - t0
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    held = done.returncode == 1 and len(lines) == 1 and "MLFLOW_TRACKING_URI" in lines[0] and took <= limit
    return f"{'held' if held else 'failed'} ({took:.1f} s)"


def full_disk(workdir: Path) -> str:
    """A second run on a full disk: one line, exit 1, no traceback; champion and snapshot intact."""
    mount = workdir / "small-disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.call(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], stderr=subprocess.DEVNULL)
        != 0
    ):
        return "not run"
    try:
        home = mount / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))}
        env.update(MODELMILL_HOME=str(home), MODELMILL_MIN_FREE_MB="0", TMPDIR=str(workdir))
        first = subprocess.run([MODELMILL, "run", "credit_risk"], env=env, capture_output=True, text=True, cwd=workdir)
        if first.returncode != 0:
            return "failed"
        snaps = {p: p.read_bytes() for p in (home / "snapshots").rglob("*.parquet")}
        with open(mount / "filler", "wb") as f:  # fill the disk
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        second = subprocess.run([MODELMILL, "run", "credit_risk"], env=env, capture_output=True, text=True, cwd=workdir)
        with sqlite3.connect(home / "mlflow.db") as db:
            champion = db.execute("select version from registered_model_aliases where alias='champion'").fetchall()
        out = second.stdout + second.stderr
        ok = (
            second.returncode == 1 and "Traceback" not in out and "no space left" in out and champion == [(1,)]
            and all(p.read_bytes() == b for p, b in snaps.items())
        )  # fmt: skip
        return "held" if ok else "failed"
    finally:  # the run's temporary Prefect API may hold the disk a few seconds more (its guardian stops it)
        for _ in range(30):
            if subprocess.call(["umount", str(mount)], stderr=subprocess.DEVNULL) == 0:
                break
            time.sleep(1)
        else:
            subprocess.call(["umount", "-l", str(mount)])


def main() -> int:
    if not os.environ.get("MODELMILL_DATA_MIRROR"):
        print("set MODELMILL_DATA_MIRROR (the dataset mirror) first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="modelmill-chaos-") as tmp:
        verdicts = run_tests(Path(tmp))
        verdicts["MLflow server down: exit 1 within 30 s, timed"] = mlflow_down_time(Path(tmp))
        verdicts["full disk (0 bytes free, free-space check off): one line, exit 1, champion and snapshots intact"] = (
            full_disk(Path(tmp))
        )
    width = max(map(len, verdicts))
    print(f"\n{'case':{width}}  result\n{'-' * width}  -------")
    for case, verdict in verdicts.items():
        print(f"{case:{width}}  {verdict}")
    return 0 if not any(v.startswith("failed") for v in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
