"""The champion is never graded on its own training rows: when a split moves (here a new seed),
the new model and the champion are compared only on the test rows neither trained on, the
decision and the card say how many, and too few of them decide nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import last_run, mlflow_client, registry_state, run_cli, write_example_spec
from modelmill.config.settings import Settings


def _test_rows(settings: Settings, run) -> set[int]:
    import mlflow

    mlflow_client(settings)
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tables/test_membership.csv")
    return set(pd.read_csv(path)["row"])


@pytest.mark.flow
def test_a_moved_split_is_compared_only_on_rows_neither_model_trained_on(example_project, capsys):
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    settings = Settings()
    first = last_run(settings, "my_cells")

    # the same data split with another seed: most of the new test rows trained the champion
    write_example_spec(root, spec, split={**spec["split"], "seed": spec["split"]["seed"] + 1})
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    second = last_run(settings, "my_cells")
    old, new = _test_rows(settings, first), _test_rows(settings, second)
    neither = len(old & new)  # one snapshot, unique rows: the champion trained on every other row
    assert 30 <= neither < len(new)
    phrase = f"on {neither} of {len(new)} test rows neither model trained on"
    reason = second.data.tags["modelmill.decision_reason"]
    assert reason.endswith(phrase), reason
    if second.data.tags["modelmill.decision"] == "promoted":
        client = mlflow_client(settings)
        card = client.get_model_version("modelmill-my_cells", second.data.tags["modelmill.model_version"])
        assert phrase in card.description

    # fewer such rows than the spec asks for: nothing is decided, the champion stays
    champion = registry_state(settings, "my_cells")[1]
    write_example_spec(
        root,
        spec,
        split={**spec["split"], "seed": spec["split"]["seed"] + 2},
        promotion={"min_compared_rows": len(new) + 1},
    )
    code, out, err = run_cli(capsys, "run", "my_cells")
    assert code == 0, out + err
    third = last_run(settings, "my_cells")
    assert third.data.tags["modelmill.decision"] == "challenger"
    assert "fewer than promotion.min_compared_rows" in third.data.tags["modelmill.decision_reason"]
    assert "not compared, champion kept" in third.data.tags["modelmill.decision_reason"]
    assert registry_state(settings, "my_cells")[1] == champion
