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
    assert code == 1 and "has a signature this project's key did not make" in err  # the rewritten digest's
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


def _two_champions(example_project, capsys):
    """v1 then v2 approved (v2 champion, its previous v1), on the docs' example pipeline."""
    root, spec, data = example_project
    spec["promotion"] = {"margin": 0.0, "mode": "manual"}
    write_example_spec(root, spec, data)
    assert run_cli(capsys, "run", "my_cells")[0] == 0
    assert run_cli(capsys, "approve", "my_cells", "--reason", "first")[0] == 0
    assert run_cli(capsys, "run", "my_cells", "--force")[0] == 0
    assert run_cli(capsys, "approve", "my_cells", "2", "--reason", "second")[0] == 0
    return mlflow_client(Settings())


@pytest.mark.flow
def test_a_move_cut_short_after_the_alias_moved_is_completed_by_the_next_command(example_project, capsys, monkeypatch):
    """A process killed right after the alias moved (here: the version-tag write raises as SIGKILL
    would end it) leaves its intent on the registered model; the next command completes the move
    (tags, audit row), so a plain rollback goes to the right version."""
    from modelmill.ops.approval import MOVE_INTENT
    from modelmill.registry.tracking import Tracker

    client = _two_champions(example_project, capsys)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process ends here: after set_alias, before the tags and the audit row

    with monkeypatch.context() as m:
        m.setattr(Tracker, "set_version_tags", killed)
        code, out, err = run_cli(capsys, "approve", "my_cells", "1", "--reason", "back to the first")
        assert code == 130, out + err  # the CLI's exit for an interrupted command
    assert _aliases(client)["champion"] == "1"
    assert MOVE_INTENT in client.get_registered_model("modelmill-my_cells").tags  # what the kill leaves

    code, out, err = run_cli(capsys, "rollback", "my_cells", "--reason", "undo")
    assert code == 0, out + err
    assert "completing the approve of v1" in err
    assert _aliases(client)["champion"] == "2"  # v1's recorded previous champion, not a stale one
    exp = client.get_experiment_by_name("modelmill/my_cells/audit")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [(r.data.params["action"], r.data.params["version"]) for r in runs][-2:] == [
        ("approve", "1"),
        ("rollback", "2"),
    ]
    assert "completed after an interruption" in runs[-2].data.params["reason"]
    assert MOVE_INTENT not in client.get_registered_model("modelmill-my_cells").tags


@pytest.mark.flow
def test_two_plain_rollbacks_at_once_move_the_champion_once(example_project, capsys, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from conftest import command_env

    client = _two_champions(example_project, capsys)
    env = command_env()
    modelmill = str(Path(sys.executable).with_name("modelmill"))
    procs = [
        subprocess.Popen(
            [modelmill, "rollback", "my_cells", "--reason", f"operator {i}"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    done = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in done) == [0, 1], done
    refused = next(err for code, _, err in done if code == 1)
    assert "another move came first" in refused or "the version rolled back from" in refused
    assert _aliases(client)["champion"] == "1"  # rolled back once, not back and forth
