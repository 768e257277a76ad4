"""prefect.yaml and the served deployments are the specs' schedules, kept in sync."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, run_cli
from modelmill.config.settings import Settings
from modelmill.config.spec import load_all

SETTINGS = Settings(pipelines_dir=REPO / "pipelines")


def test_prefect_yaml_is_in_sync_with_the_specs(capsys):
    code, out, _ = run_cli(capsys, "prefect-yaml")
    assert code == 0
    committed = (REPO / "prefect.yaml").read_text()
    assert committed == out, "prefect.yaml is stale: run `modelmill prefect-yaml --write prefect.yaml`"
    doc = yaml.safe_load(committed)
    by_name = {d["name"]: d for d in doc["deployments"]}
    for spec in load_all(SETTINGS):
        d = by_name.pop(spec.name)
        assert d["schedules"] == [
            {"cron": spec.schedule.cron, "timezone": spec.schedule.timezone, "active": spec.schedule.active}
        ]
        assert d["parameters"]["pipeline"] == spec.name
        assert d["entrypoint"] == "flows/pipeline.py:pipeline_flow" and (REPO / "flows" / "pipeline.py").is_file()
    assert by_name == {}


def test_served_deployments_carry_each_spec_cron():
    from modelmill_flows.deployments import build_deployments

    specs = load_all(SETTINGS)
    deps = build_deployments(specs)
    assert [d.name for d in deps] == [s.name for s in specs]
    for d, s in zip(deps, specs, strict=True):
        assert [sch.schedule.cron for sch in d.schedules] == [s.schedule.cron]
        assert [sch.active for sch in d.schedules] == [s.schedule.active]
        assert d.parameters == {"pipeline": s.name, "trigger": "schedule"}
        assert d.entrypoint == "modelmill_flows.pipeline.pipeline_flow"


def _base_job_templates() -> dict[str, dict]:
    """Each work pool type's default base job template, as Prefect ships it (the same the server
    gives a pool created with `prefect work-pool create --type T`), offline."""
    import json
    from pathlib import Path

    import prefect

    path = (
        Path(prefect.__file__).parent
        / "server"
        / "api"
        / "collections_data"
        / "views"
        / "aggregate-worker-metadata.json"
    )
    return {
        w["type"]: w["default_base_job_configuration"]
        for collection in json.loads(path.read_text()).values()
        for w in collection.values()
    }


@pytest.mark.parametrize("pool", ["process", "docker", "kubernetes"])
def test_each_work_pool_types_deployments_are_valid_against_prefects_base_job_template(capsys, pool):
    from prefect.utilities.schema_tools import validate
    from prefect.utilities.schema_tools.validation import ValidationError

    code, out, _ = run_cli(capsys, "prefect-yaml", "--pool", pool)
    assert code == 0
    doc = yaml.safe_load(out)
    section = doc["definitions"]["work_pools"][pool]
    assert {d["name"] for d in doc["deployments"]} == {
        d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    }
    schema = _base_job_templates()[pool]["variables"]
    for d in doc["deployments"]:
        assert d["work_pool"] == section  # one definition, referred to by every deployment
        variables = d["work_pool"].get("job_variables", {})
        assert set(variables) <= set(schema["properties"]), set(variables) - set(
            schema["properties"]
        )  # no misspelt key silently ignored
        validate(
            variables, schema, raise_on_error=True, preprocess=True, ignore_required=True
        )  # as the server does on `prefect deploy`
        if pool != "process":
            assert variables["image"] == "modelmill-worker:latest" and d["pull"] == [
                {"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}
            ]
            assert not [
                k for k in variables["env"] if any(w in k for w in ("PASSWORD", "SECRET", "AUTH", "KEY"))
            ]  # no credentials in the file
    with pytest.raises(ValidationError):  # the check can fail: an environment that is not a mapping
        validate(
            {**variables, "env": ["MODELMILL_HOME=/data"]},
            schema,
            raise_on_error=True,
            preprocess=True,
            ignore_required=True,
        )


def test_an_unknown_pool_type_is_refused(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "prefect-yaml", "--pool", "lambda")
