"""prefect.yaml and the served deployments are the specs' schedules, kept in sync."""

from __future__ import annotations

import yaml

from conftest import REPO, run_cli
from modelmill.settings import Settings
from modelmill.spec import load_all

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
        assert d["schedules"] == [{"cron": spec.schedule.cron, "timezone": spec.schedule.timezone}]
        assert d["parameters"]["pipeline"] == spec.name
        assert d["entrypoint"] == "flows/pipeline.py:pipeline_flow" and (REPO / "flows" / "pipeline.py").is_file()
    assert by_name == {}


def test_served_deployments_carry_each_spec_cron():
    from flows.deployments import build_deployments

    specs = load_all(SETTINGS)
    deps = build_deployments(specs)
    assert [d.name for d in deps] == [s.name for s in specs]
    for d, s in zip(deps, specs, strict=True):
        assert [sch.schedule.cron for sch in d.schedules] == [s.schedule.cron]
        assert d.parameters == {"pipeline": s.name, "trigger": "schedule"}
        assert d.entrypoint == "flows.pipeline.pipeline_flow"
