"""Approval and rollback on a real store, on the docs' example pipeline (real Wisconsin data): in
manual mode a better model waits as `candidate`, `approve` moves the champion to it, `rollback`
moves it back, every move is on the version's tags and in the audit trail, refusals are one
line, and a move waits for the promotion lock a training run holds."""

from __future__ import annotations

import threading

import pytest

from conftest import mlflow_client, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _aliases(client, name="modelmill-my_cells") -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


@pytest.mark.flow
def test_manual_mode_approve_and_rollback_end_to_end(example_project, capsys, monkeypatch):
    root, spec, data = example_project
    spec["promotion"] = {"margin": 0.0, "mode": "manual"}
    write_example_spec(root, spec, data)
    s = Settings()
    client = mlflow_client(s)
    monkeypatch.setenv("MODELMILL_USER", "dana")

    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    assert _aliases(client) == {"candidate": "1"}  # manual mode leaves the champion alone
    code, _, err = run_cli(capsys, "approve", "my_cells", "--reason", "checked the slices by hand")
    assert code == 0, err
    assert _aliases(client) == {"champion": "1"}
    tags = client.get_model_version("modelmill-my_cells", "1").tags
    assert tags["modelmill.move"] == "approve" and tags["modelmill.moved_by"] == "dana"
    assert (
        tags["modelmill.move_reason"] == "checked the slices by hand" and tags["modelmill.previous_champion"] == "none"
    )

    code, out, err = run_cli(capsys, "run", "my_cells", "--force")
    assert code == 0, out + err
    assert _aliases(client)["champion"] == "1"  # the new version waits, whatever it scored
    code, out, err = run_cli(capsys, "approve", "my_cells", "2", "--reason", "newer data")
    assert code == 0, err
    assert "champion is now v2 (was v1)" in out
    assert _aliases(client)["champion"] == "2"
    assert client.get_model_version("modelmill-my_cells", "2").tags["modelmill.previous_champion"] == "1"

    code, out, err = run_cli(capsys, "rollback", "my_cells", "--reason", "complaints from the lab")
    assert code == 0, err
    assert _aliases(client)["champion"] == "1"
    tags = client.get_model_version("modelmill-my_cells", "1").tags
    assert tags["modelmill.move"] == "rollback" and tags["modelmill.previous_champion"] == "2"

    # the audit trail: one run per move, the whole table on the last
    exp = client.get_experiment_by_name("modelmill/my_cells/audit")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [(r.data.params["action"], r.data.params["version"], r.data.params["previous_champion"]) for r in runs] == [
        ("approve", "1", "none"), ("approve", "2", "1"), ("rollback", "1", "2"),
    ]  # fmt: skip
    table = client.download_artifacts(runs[-1].info.run_id, "audit.csv")
    assert open(table).read().count("\n") == 4 and "complaints from the lab" in open(table).read()

    # refusals, each one line, the champion untouched
    code, _, err = run_cli(capsys, "approve", "my_cells", "9", "--reason", "x")
    assert code == 1 and "has no model version 9 (its versions: v1, v2)" in err
    code, _, err = run_cli(capsys, "approve", "my_cells", "1", "--reason", "x")
    assert code == 1 and "already the champion" in err
    v2_run = client.get_model_version("modelmill-my_cells", "2").run_id
    client.set_tag(v2_run, "modelmill.pipeline", "credit_risk")
    code, _, err = run_cli(capsys, "approve", "my_cells", "2", "--reason", "x")
    assert code == 1 and "trained by credit_risk, not by pipeline my_cells" in err
    client.set_tag(v2_run, "modelmill.pipeline", "my_cells")
    client.set_tag(v2_run, "modelmill.validation", "rejected")
    code, _, err = run_cli(capsys, "approve", "my_cells", "2", "--reason", "x")
    assert code == 1 and "rejected by the gate: not servable" in err
    client.set_tag(v2_run, "modelmill.validation", "passed")
    client.set_model_version_tag("modelmill-my_cells", "2", "modelmill.model_sha256", "0" * 64)
    code, _, err = run_cli(capsys, "rollback", "my_cells", "--to", "2", "--reason", "x")
    assert code == 1 and "fails its sha256 check" in err
    client.delete_model_version_tag("modelmill-my_cells", "2", "modelmill.model_sha256")
    code, _, err = run_cli(capsys, "approve", "my_cells", "2", "--reason", "x")
    assert code == 1 and "has no recorded sha256" in err
    assert _aliases(client)["champion"] == "1"
    assert len(client.search_runs([exp.experiment_id])) == 3  # refusals record nothing


@pytest.mark.flow
def test_a_move_waits_for_the_promotion_lock_and_require_shadow_is_enforced(example_project, capsys):
    from modelmill.config.spec import load_spec
    from modelmill.ops.approval import Refused, approve, promotion_lock
    from modelmill.registry.tracking import Tracker

    root, spec, data = example_project
    spec["promotion"] = {"mode": "manual", "require_shadow": 1}
    write_example_spec(root, spec, data)
    assert run_cli(capsys, "run", "my_cells")[0] == 0
    s = Settings()
    pipeline, tracker = load_spec("my_cells", s), Tracker(s)
    with pytest.raises(Refused, match="has shadowed 0 scoring batch"):
        approve(tracker, pipeline, s.home_dir, None, "no shadow yet")

    pipeline = pipeline.model_copy(update={"promotion": pipeline.promotion.model_copy(update={"require_shadow": 0})})
    moved = []
    with promotion_lock(pipeline, s.home_dir):  # what a training run holds while it compares and promotes
        mover = threading.Thread(
            target=lambda: moved.append(approve(tracker, pipeline, s.home_dir, None, "after the run"))
        )
        mover.start()
        mover.join(timeout=2)
        assert mover.is_alive() and moved == []  # it waits
        assert "champion" not in _aliases(mlflow_client(s))
    mover.join(timeout=60)
    assert moved and moved[0].version == "1"
    assert _aliases(mlflow_client(s)) == {"champion": "1"}
