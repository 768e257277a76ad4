"""Running a team's week, on the docs' example pipeline (real Wisconsin data) and real receivers
started by the tests: alerts over json:// (a loopback HTTP server) and mailto:// (aiosmtpd) for a
promotion, drift, a rejected and a failed run, with a receiver that is down failing nothing;
the status of a healthy, a failed and a stale pipeline with the clock moved, not waited for; the
stale alert sent once; shadow scoring's agreement logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import yaml

from conftest import mlflow_client, registry_state, run_cli, write_example_spec
from modelmill.config.settings import Settings
from modelmill.ops.alerts import expand, masked


def test_urls_are_masked_in_logs_and_secrets_come_from_the_environment(monkeypatch):
    assert masked("mailto://bob:hunter2@smtp.example.org:587?to=ops@example.org") == "mailto://smtp.example.org:587/…"
    assert masked("slack://T000/B000/XXXXsecret") == "slack://T000/…"
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t")
    assert expand("json://h/hook/${HOOK_TOKEN}") == "json://h/hook/s3cr3t"
    with pytest.raises(KeyError):
        expand("json://h/${NOT_SET_ANYWHERE}")


def _events(posts) -> list[str]:
    return [p["title"].rsplit(" · ", 1)[1] for _, p in posts]


@pytest.mark.flow
def test_alerts_reach_real_receivers_and_a_dead_one_fails_nothing(
    example_project, alert_receivers, capsys, monkeypatch
):
    root, spec, data = example_project
    web, mail, posts, mails, dead = alert_receivers
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-token")
    spec["notify"] = {
        "urls": [f"{web}/hook/${{HOOK_TOKEN}}", mail, f"json://127.0.0.1:{dead}/down"],
        "events": ["failed", "rejected", "drift", "promoted", "not_promoted"],
    }
    spec["monitoring"] = {"psi_alert": 0.5}
    write_example_spec(root, spec, data)

    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err  # the receiver that is down did not fail the run
    assert _events(posts) == ["promoted"] and posts[0][0] == "/hook/s3cr3t-token"
    assert "v1 is the new champion with test roc_auc" in posts[0][1]["message"] and "my_cells" in posts[0][1]["title"]
    assert (
        mails
        and mails[0]["subject"] == "modelmill · my_cells · promoted"
        and "new champion" in mails[0].get_body(preferencelist=("plain",)).get_content()
    )
    assert any("failed 3 times" in line and f"json://127.0.0.1:{dead}/…" in line for line in err.splitlines())
    assert "s3cr3t-token" not in out + err  # the secret never reaches a log line

    drifted = data.assign(mean_radius=data["mean_radius"] * 1.8, worst_area=data["worst_area"] * 1.8)
    write_example_spec(root, spec, drifted)
    code, out, err = run_cli(capsys, "run", "my_cells", "--force")
    assert code == 0, out + err
    drift = [p for _, p in posts if p["title"].endswith("drift")]
    assert drift and "PSI of" in drift[0]["message"] and "over monitoring.psi_alert 0.5" in drift[0]["message"]
    assert _events(posts)[-1] in ("promoted", "not promoted")

    bad = data.copy()
    bad.loc[:4, "mean_radius"] = 1000.0  # out of the suite's range
    write_example_spec(root, spec, bad)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 3
    rejected = posts[-1][1]
    assert rejected["title"].endswith("rejected") and "mean_radius" in rejected["message"]
    cause, link = rejected["message"].splitlines()
    assert "/runs/" in link and "#/experiments/" in link  # the run's link in the MLflow UI

    (root / "pipelines" / "data" / "cells.csv").unlink()
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 1
    assert posts[-1][1]["title"].endswith("failed") and "cells.csv" in posts[-1][1]["message"]
    assert len(mails) == len(posts)  # every event went to both live receivers


@pytest.mark.flow
def test_candidate_metric_drop_and_score_rejected_alerts_reach_a_receiver(
    example_project, alert_receivers, capsys, tmp_path
):
    """The events the first alert test cannot reach: a better model waiting for approval, a new
    model worse than the champion on the same data, a scoring batch with too many rows set aside."""
    root, spec, data = example_project
    web, _, posts, _, _ = alert_receivers
    spec["notify"] = {"urls": [f"{web}/hook"], "events": ["promoted", "candidate", "drift", "score_rejected"]}
    # one split of one feature: roc_auc about 0.9, where the example's own candidates reach 0.99
    weak = {
        "candidates": [{"name": "stump", "estimator": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}]
    }
    write_example_spec(root, {**spec, **weak}, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert _events(posts) == ["promoted"] and registry_state(Settings(), "my_cells")[1] == "1"

    # better, but promotion is manual: the candidate alert names the command that approves it
    write_example_spec(root, {**spec, "promotion": {"margin": 0.01, "mode": "manual"}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert _events(posts) == ["promoted", "candidate"]
    assert "v2 (test roc_auc" in posts[-1][1]["message"] and "modelmill approve my_cells 2" in posts[-1][1]["message"]
    assert registry_state(Settings(), "my_cells")[1] == "1"
    code, out, err = run_cli(capsys, "approve", "my_cells", "--reason", "reviewed the card")
    assert code == 0, out + err
    assert registry_state(Settings(), "my_cells")[1] == "2"

    # worse than the champion on the same test rows by more than monitoring.metric_drop
    write_example_spec(root, {**spec, **weak, "monitoring": {"metric_drop": 0.05}})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    drop = posts[-1][1]
    assert _events(posts)[-1] == "drift" and "worse than champion v2" in drop["message"]
    assert "over monitoring.metric_drop 0.05" in drop["message"]
    assert registry_state(Settings(), "my_cells")[1] == "2"  # an alert, and the champion stays

    # 4 of 40 rows outside the suite's range: 10 % set aside, over monitoring.score_rejected (5 %)
    batch = data.drop(columns=["diagnosis"]).head(40).copy()
    batch.loc[:3, "mean_radius"] = 1000.0
    src = root / "pipelines" / "data" / "batch.csv"
    batch.to_csv(src, index=False)
    code, out, err = run_cli(capsys, "score", "my_cells", "--input", str(src), "--output", str(tmp_path / "s.parquet"))
    assert code == 0, out + err
    rejected = posts[-1][1]
    assert _events(posts)[-1] == "score rejected" and "4 of 40 rows (10.0%)" in rejected["message"]
    assert "over monitoring.score_rejected 5%" in rejected["message"]


@pytest.mark.flow
def test_status_of_a_healthy_a_failed_and_a_stale_pipeline_and_the_stale_alert(
    example_project, alert_receivers, capsys, monkeypatch
):
    from modelmill.config.spec import load_all
    from modelmill.ops.status import healthy, pipeline_status, stale_alerts
    from modelmill.registry.tracking import Tracker

    root, spec, data = example_project
    web, _, posts, _, _ = alert_receivers
    monkeypatch.setenv("MODELMILL_NOTIFY_URLS", f"{web}/stale")  # the project's default receivers
    write_example_spec(root, spec, data)
    pipelines = root / "pipelines"
    (root / "expectations" / "late_cells.json").write_text((root / "expectations" / "my_cells.json").read_text())
    (root / "expectations" / "broken_cells.json").write_text((root / "expectations" / "my_cells.json").read_text())
    (pipelines / "late_cells.yaml").write_text(
        yaml.safe_dump({**spec, "name": "late_cells", "suite": "late_cells.json", "monitoring": {"max_age": "1h"}})
    )
    (pipelines / "broken_cells.yaml").write_text(
        yaml.safe_dump(
            {
                **spec,
                "name": "broken_cells",
                "suite": "broken_cells.json",
                "source": {"path": "data/missing.csv", "format": "csv"},
            }
        )
    )
    for name, expected in (("my_cells", 0), ("late_cells", 0), ("broken_cells", 1)):
        assert run_cli(capsys, "run", name)[0] == expected

    s = Settings()
    tracker, specs = Tracker(s), {p.name: p for p in load_all(s)}
    now = datetime.now(UTC)
    rows = {n: pipeline_status(tracker, p, now) for n, p in specs.items()}
    assert (
        rows["my_cells"].state == "ok" and rows["my_cells"].champion == "1" and rows["my_cells"].champion_age_days < 0.1
    )
    assert rows["late_cells"].state == "ok"
    assert (
        rows["broken_cells"].state.startswith("failing")
        and "missing.csv" in rows["broken_cells"].last_cause
        and rows["broken_cells"].failures_7d == 1
    )
    assert rows["my_cells"].stale_after_hours == 14 * 24 and rows["my_cells"].next_run_source == "cron"

    later = now + timedelta(hours=2)  # the clock moves; nothing sleeps
    rows = {n: pipeline_status(tracker, p, later) for n, p in specs.items()}
    assert rows["late_cells"].state == "stale" and rows["my_cells"].state == "ok"
    assert pipeline_status(tracker, specs["my_cells"], now + timedelta(days=15)).state == "stale"
    assert pipeline_status(tracker, specs["my_cells"], now + timedelta(days=8)).failures_7d == 0

    assert "modelmill · broken_cells · failed" in [
        p["title"] for _, p in posts
    ]  # the project's default receivers get run events too
    assert stale_alerts(tracker, list(specs.values()), s, later) == ["broken_cells", "late_cells"]
    stale = [p for _, p in posts if p["title"].endswith("stale")]
    assert [p["title"] for p in stale] == ["modelmill · broken_cells · stale", "modelmill · late_cells · stale"]
    assert "no successful run since" in stale[1]["message"] and "stale after 1 h" in stale[1]["message"]
    assert "no successful run ever" in stale[0]["message"]
    assert stale_alerts(tracker, list(specs.values()), s, later + timedelta(hours=1)) == []  # once per stale spell

    code, out, _ = run_cli(capsys, "status", "--json")
    assert code == 1  # a failing pipeline: the health check says so
    assert {r["pipeline"]: r["state"] for r in pd.read_json(pd.io.common.StringIO(out)).to_dict("records")}[
        "my_cells"
    ] == "ok"
    (pipelines / "broken_cells.yaml").unlink()
    (root / "expectations" / "new_cells.json").write_text((root / "expectations" / "my_cells.json").read_text())
    (pipelines / "new_cells.yaml").write_text(yaml.safe_dump({**spec, "name": "new_cells", "suite": "new_cells.json"}))
    code, out, _ = run_cli(capsys, "status")  # a pipeline that never ran yet is not unhealthy
    assert code == 0 and "my_cells" in out and "late_cells" in out
    assert [ln for ln in out.splitlines() if ln.startswith("new_cells")][0].split()[1:3] == ["never", "run"]

    # a schedule deployed switched off: no next run, and a month without runs is not stale
    (pipelines / "new_cells.yaml").write_text(
        yaml.safe_dump(
            {**spec, "name": "new_cells", "suite": "new_cells.json", "schedule": {**spec["schedule"], "active": False}}
        )
    )
    assert run_cli(capsys, "run", "new_cells")[0] == 0
    from modelmill.config.spec import load_spec

    off = pipeline_status(tracker, load_spec("new_cells", Settings()), datetime.now(UTC) + timedelta(days=30))
    assert off.state == "ok" and off.next_run is None and off.next_run_source == "schedule off"
    assert off.stale_after_hours is None
    assert pipeline_status(tracker, specs["my_cells"], datetime.now(UTC) + timedelta(days=30)).state == "stale"

    # a pipeline whose first run is still training is not stale, however long it takes
    (root / "expectations" / "slow_cells.json").write_text((root / "expectations" / "my_cells.json").read_text())
    (pipelines / "slow_cells.yaml").write_text(
        yaml.safe_dump({**spec, "name": "slow_cells", "suite": "slow_cells.json"})
    )
    slow = load_spec("slow_cells", Settings())
    Tracker.of(Settings()).start_run(slow, "slow_cells-first", {"modelmill.pipeline": "slow_cells"})  # RUNNING
    first = pipeline_status(tracker, slow, datetime.now(UTC) + timedelta(days=30))
    assert first.state == "first run" and first.last_result == "running"
    assert healthy([first])


@pytest.mark.flow
def test_shadow_scoring_logs_agreement_and_keeps_the_champions_output(example_project, capsys):
    from modelmill.config.spec import load_spec
    from modelmill.ops.approval import shadow_batches
    from modelmill.registry.tracking import Tracker

    root, spec, data = example_project
    spec["promotion"] = {"margin": 0.5}  # the second version stays the challenger
    write_example_spec(root, spec, data)
    assert run_cli(capsys, "run", "my_cells")[0] == 0
    spec["candidates"] = [{"name": "forest", "estimator": "random_forest", "params": {"n_estimators": 50}}]
    write_example_spec(root, spec)
    assert run_cli(capsys, "run", "my_cells")[0] == 0
    batch = root / "batch.csv"
    data.drop(columns=["diagnosis"]).head(120).to_csv(batch, index=False)
    code, out, err = run_cli(
        capsys, "score", "my_cells", "--input", str(batch), "--output", str(root / "scores.parquet"), "--shadow"
    )
    assert code == 0, err
    assert "shadow v2: agrees with the champion on" in out
    scores = pd.read_parquet(root / "scores.parquet")
    assert set(scores["model_version"]) == {"1"} and len(scores) == 120
    s = Settings()
    client = mlflow_client(s)
    exp = client.get_experiment_by_name("modelmill/my_cells/scoring")
    run = client.search_runs([exp.experiment_id], max_results=1)[0]
    assert run.data.tags["modelmill.shadow_version"] == "2"
    assert 0.8 <= run.data.metrics["shadow/agreement"] <= 1.0 and run.data.metrics["shadow/score_correlation"] > 0.8
    assert "shadow/score_psi" in run.data.metrics
    assert shadow_batches(Tracker(s), load_spec("my_cells", s), "2") == 1


class _Silent:
    """Loopback receivers that accept a connection and never answer; ``on_accept`` runs at each one."""

    def __init__(self, count: int, on_accept=None):
        import socket
        import threading

        self.socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
        self.held, self.on_accept, self.stop = [], on_accept, threading.Event()
        for s in self.socks:
            s.settimeout(0.2)
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, sock):
        while not self.stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            self.held.append(conn)
            if self.on_accept:
                self.on_accept()

    @property
    def urls(self) -> list[str]:
        return [f"json://127.0.0.1:{s.getsockname()[1]}/hook" for s in self.socks]

    def close(self):
        self.stop.set()
        for c in self.held + self.socks:
            c.close()


def test_receivers_that_never_answer_hold_an_alert_no_longer_than_its_deadline(caplog):
    import time

    from modelmill.ops.alerts import Alert, send

    silent = _Silent(3)
    try:
        spec = None
        settings = Settings(notify_urls=" ".join(silent.urls), notify_deadline=2)
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger="modelmill.ops.alerts"):
            assert send(Alert("cells", "failed", "the gate refused the data"), spec, settings) == 0
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert took < 3.5, took  # all three at once, under one deadline: not 3 URLs x 3 attempts x a timeout
    assert len(silent.held) >= 3  # each receiver was reached
    late = [r.getMessage() for r in caplog.records if "not confirmed within 2 s" in r.getMessage()]
    assert len(late) == 3 and all("MODELMILL_NOTIFY_DEADLINE" in m for m in late)


@pytest.mark.flow
def test_an_alert_from_the_promotion_stage_is_sent_after_its_lock_is_released(
    example_project, capsys, monkeypatch, tmp_path
):
    import fcntl

    from modelmill.runtime.locks import lock_dir

    root, spec, data = example_project
    monkeypatch.setenv("MODELMILL_NOTIFY_DEADLINE", "3")
    lock = lock_dir(Settings().home_dir) / "promote-my_cells.lock"
    free_at_send: list[bool] = []

    def lock_is_free():
        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                free_at_send.append(False)
            else:
                free_at_send.append(True)

    silent = _Silent(1, on_accept=lock_is_free)
    try:
        write_example_spec(root, spec, data)
        code, out, err = run_cli(capsys, "run", "my_cells")
        assert code == 0, out + err
        weak = [{"name": "stump", "estimator": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}]
        notify = {"urls": silent.urls, "events": ["drift"]}
        write_example_spec(root, {**spec, "candidates": weak, "notify": notify, "monitoring": {"metric_drop": 0.01}})
        code, out, err = run_cli(capsys, "run", "my_cells")
        assert code == 0, out + err
    finally:
        silent.close()
    assert free_at_send and all(free_at_send), free_at_send  # a person's rollback is not held by a slow receiver
    assert registry_state(Settings(), "my_cells")[1] == "1"
