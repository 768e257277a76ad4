"""Faults on a real ``modelmill run`` process: SIGTERM and SIGKILL mid-training, a tracking server
that is down, temporary files of an interrupted write. Nothing is left RUNNING, no temporary
Prefect API outlives its run, and each failure is one line."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port, modelmill_env, require_mirror, run_cli
from modelmill.runtime.guardian import children

pytestmark = pytest.mark.flow
MODELMILL = str(Path(sys.executable).with_name("modelmill"))


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING", "PREFECT_HOME"))}
    env.update(
        MODELMILL_HOME=str(home),
        MODELMILL_DATA_MIRROR=str(require_mirror()),
        MODELMILL_PIPELINES_DIR=str(REPO / "pipelines"),
    )
    return env


def _start_and_wait_for_training(home: Path, log: Path) -> subprocess.Popen:
    """``modelmill run support_intent`` (its training takes a while), once training has begun."""
    proc = subprocess.Popen(
        [MODELMILL, "run", "support_intent"],
        env=_env(home),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=home.parent,
    )
    deadline = time.time() + 240
    while "validation passed" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach training:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _gone(pids, timeout=30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.5)
    return False


def _flow_and_task_states(home: Path) -> tuple[dict, dict]:
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        flows = dict(db.execute("select name, state_type from flow_run"))
        tasks = dict(db.execute("select name, state_type from task_run"))
    return flows, tasks


def _only_run(home: Path):
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")  # not Settings(): MLflow leaves its last URI in the environment
    exp = c.get_experiment_by_name("modelmill/support_intent")
    (run,) = c.search_runs([exp.experiment_id])
    return run


def test_sigterm_mid_training_marks_the_run_killed_and_the_flow_run_crashed(tmp_path):
    home, log = tmp_path / "home", tmp_path / "run.log"
    proc = _start_and_wait_for_training(home, log)
    kids = [p for p in children(proc.pid)]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    assert "modelmill: terminated (SIGTERM); the run in progress was marked KILLED" in log.read_text()
    assert "Traceback" not in log.read_text()
    run = _only_run(home)
    assert run.info.status == "KILLED"
    assert (
        run.data.tags["modelmill.failure"] == "interrupted"
        and "terminated by SIGTERM" in run.data.tags["modelmill.error"]
    )
    flows, tasks = _flow_and_task_states(home)
    assert flows == {"support_intent": "CRASHED"} and "RUNNING" not in tasks.values()
    assert _gone(kids), "the temporary Prefect API outlived its run"
    assert (
        home / "logs" / "prefect-temporary.log"
    ).is_file()  # the API modelmill launched at start-up, not Prefect at the first flow


def test_sigkill_leaves_nothing_running_once_the_next_command_starts(tmp_path, capsys, monkeypatch, prefect_api):
    home, log = tmp_path / "home", tmp_path / "run.log"
    proc = _start_and_wait_for_training(home, log)
    kids = [p for p in children(proc.pid)]
    proc.kill()
    proc.wait(timeout=60)
    assert _gone(kids), "the temporary Prefect API outlived its killed run (no guardian?)"
    assert _only_run(home).info.status == "RUNNING"  # what SIGKILL leaves behind
    # The next command of any kind reconciles it: `history` never shows it as running.
    modelmill_env(monkeypatch, home, require_mirror())
    code, out, err = run_cli(capsys, "history", "support_intent")
    assert code == 0, err
    assert "orphaned: its process" in err and "RUNNING" not in out
    run = _only_run(home)
    assert run.info.status == "FAILED" and run.data.tags["modelmill.failure"] == "orphaned"
    # A later run (it talks to Prefect) sets the dead flow run and its task run to Crashed.
    done = subprocess.run(
        [MODELMILL, "run", "breast_cytology"], env=_env(home), capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    flows, tasks = _flow_and_task_states(home)
    assert flows["support_intent"] == "CRASHED" and "RUNNING" not in tasks.values() and "PENDING" not in tasks.values()


def test_stale_temporary_files_are_removed_and_live_ones_kept(mm_env, capsys):
    folder = mm_env.snapshot_dir / "german-credit"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / f".abc123.pid{dead.pid}.k2j4h5g6.tmp"
    live = folder / f".abc123.pid{os.getpid()}.x8y7z6w5.tmp"
    done = folder / "abc123.parquet"
    for p in (stale, live, done):
        p.write_bytes(b"x")
    code, out, err = run_cli(capsys, "list")
    assert code == 0, err
    assert not stale.exists() and live.exists() and done.exists()


@pytest.mark.parametrize("command", [["run", "breast_cytology"], ["list"], ["history", "credit_risk"]])
def test_an_unreachable_tracking_server_is_one_line_naming_mlflow_tracking_uri(mm_env, capsys, monkeypatch, command):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, out, err = run_cli(capsys, *command)
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"MLFLOW_TRACKING_URI={uri} is unreachable" in lines[0], err


def test_two_runs_at_once_on_a_brand_new_store_both_finish_and_one_becomes_champion(tmp_path):
    home = tmp_path / "home"
    procs = [
        subprocess.Popen([MODELMILL, "run", "breast_cytology", "--force"], env=_env(home), stdout=(tmp_path / f"{i}.log").open("w"), stderr=subprocess.STDOUT, cwd=tmp_path)
        for i in range(2)
    ]  # fmt: skip
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], "\n".join((tmp_path / f"{i}.log").read_text()[-2000:] for i in range(2))
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{home / 'mlflow.db'}", registry_uri=f"sqlite:///{home / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("modelmill/breast_cytology").experiment_id])
    assert sorted(r.data.tags["modelmill.decision"] for r in runs) == ["challenger", "promoted"]
    promoted = next(r for r in runs if r.data.tags["modelmill.decision"] == "promoted")
    assert c.get_model_version_by_alias("modelmill-breast_cytology", "champion").run_id == promoted.info.run_id


def test_a_nearly_full_disk_is_refused_before_anything_is_written(mm_env, capsys, monkeypatch):
    monkeypatch.setenv("MODELMILL_MIN_FREE_MB", str(10**12))  # more than any disk has
    code, out, err = run_cli(capsys, "run", "credit_risk")
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert "MB free on the device of MODELMILL_HOME" in line and "MODELMILL_MIN_FREE_MB" in line
    assert not (mm_env.home_dir / "mlflow.db").exists()


def test_a_disk_that_fills_mid_run_fails_in_one_line_and_promotes_nothing(tmp_path):
    """MODELMILL_HOME on a real 1.7 MB filesystem (a tmpfs mounted in a private mount namespace):
    the run starts (the free-space guard is off), fills the device while it writes, fails with one
    line that says so, and no alias moves. The whole Wisconsin run writes about 2.3 MB."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare to mount a small filesystem in a private namespace")
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    check = (
        "import mlflow; u = f'sqlite:///{h}/mlflow.db'; c = mlflow.MlflowClient(tracking_uri=u, registry_uri=u);"
        "ms = c.search_registered_models(); print('ALIASES', [dict(m.aliases) for m in ms])"
    ).replace("{h}", str(home))
    script = (
        f"mount -t tmpfs -o size=1700k none {home} || exit 99; cd {tmp_path}; "
        f"{sys.executable} -m modelmill.cli run breast_cytology; echo EXIT $?; "
        f'df -k {home} | tail -1; {sys.executable} -c "{check}"'
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY"))},
        "MODELMILL_HOME": str(home),
        "MODELMILL_MIN_FREE_MB": "0",
        "MODELMILL_PIPELINES_DIR": str(REPO / "pipelines"),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if "EXIT" not in out.stdout and out.returncode in (1, 99) and "Operation not permitted" in out.stderr:
        pytest.skip(f"this machine refuses a private mount namespace: {out.stderr.strip()[:200]}")
    text = out.stdout + out.stderr
    assert "EXIT 1" in out.stdout, text[-3000:]
    used, free = (int(v) for v in out.stdout.split("EXIT 1", 1)[1].split()[2:4])
    assert free < 100 and used > 1500, "the device was really filled"
    lines = [ln for ln in text.splitlines() if "no space left on the device of MODELMILL_HOME" in ln]
    assert lines and all("Traceback" not in ln and "SQL" not in ln for ln in lines)
    assert "nothing was promoted" in lines[-1]
    assert "ALIASES" in out.stdout, text[-3000:]
    aliases = out.stdout.split("ALIASES", 1)[1]
    assert "champion" not in aliases


def test_a_full_disk_is_recognised_behind_sqlalchemy_and_oserror():
    import errno
    import sqlite3 as sql

    from modelmill.errors import one_line_cause

    try:
        try:
            raise sql.OperationalError("database or disk is full")
        except sql.OperationalError as inner:
            raise RuntimeError(
                "(raised as a result of Query-invoked autoflush)\n[SQL: INSERT INTO runs ...]"
            ) from inner
    except RuntimeError as e:
        assert one_line_cause(e).startswith("no space left on the device of MODELMILL_HOME")
    assert one_line_cause(OSError(errno.ENOSPC, "No space left on device")).startswith("no space left")
    assert one_line_cause(ValueError("first\nsecond")) == "ValueError: first"


def test_a_killed_scoring_batch_is_swept_like_a_run(example_project, capsys, tmp_path):
    """``kill -9`` mid-batch: the scoring run is left RUNNING and a half-written file may stay
    beside the output; the next command marks the run FAILED (orphaned) and removes the file."""
    from mlflow import MlflowClient

    from conftest import command_env, write_example_spec

    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    home = Path(os.environ["MODELMILL_HOME"])
    batch, output = root / "pipelines" / "data" / "big.csv", tmp_path / "scores" / "big.parquet"
    data.drop(columns=["diagnosis"]).sample(200_000, replace=True, random_state=0).to_csv(batch, index=False)
    env = command_env()
    proc = subprocess.Popen(
        [MODELMILL, "score", "my_cells", "--input", str(batch), "--output", str(output), "--reasons", "3"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")

    def scoring_runs():
        exp = client.get_experiment_by_name("modelmill/my_cells/scoring")
        return client.search_runs([exp.experiment_id]) if exp else []

    deadline = time.time() + 240
    while not any(r.info.status == "RUNNING" for r in scoring_runs()):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("the scoring batch ended before it could be killed")
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=60)
    (run,) = scoring_runs()
    assert run.info.status == "RUNNING"
    output.parent.mkdir(parents=True, exist_ok=True)
    leftover = output.with_name(f".{output.name}.pid{proc.pid}.tmp")  # what a write cut short leaves
    leftover.write_bytes(b"PAR1 half a file")

    code, out, err = run_cli(capsys, "history", "my_cells")
    assert code == 0, err
    (run,) = scoring_runs()
    assert run.info.status == "FAILED" and run.data.tags["modelmill.failure"] == "orphaned"
    assert not leftover.exists()
