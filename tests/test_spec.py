"""Spec and suite consistency: every shipped spec parses, its suite is a valid GX suite, its
kind accepts it; invalid specs fail with a one-line error naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from modelmill.config.settings import Settings
from modelmill.config.spec import available, load_spec
from modelmill.errors import SpecError
from modelmill.learn.kinds import get_kind

SETTINGS = Settings(pipelines_dir=REPO / "pipelines")
SPECS = sorted(available(SETTINGS))


def test_the_shipped_pipelines_are_there():
    assert {"credit_risk", "breast_cytology"} <= set(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_spec_parses_and_its_kind_accepts_it(name):
    spec = load_spec(name, SETTINGS)
    assert spec.name == name
    get_kind(spec.problem).check_spec(spec)
    assert len(spec.spec_hash(SETTINGS)) == 64


@pytest.mark.parametrize("name", SPECS)
def test_suite_is_a_valid_gx_suite_covering_the_spec_columns(name):
    import great_expectations as gx

    spec = load_spec(name, SETTINGS)
    raw = json.loads(spec.suite_path(SETTINGS).read_text())
    suite = gx.ExpectationSuite(**raw)
    assert len(suite.expectations) >= 5
    types = {e["type"] for e in raw["expectations"]}
    assert any(t.startswith("expect_table_row_count") for t in types), "pair per-value checks with a row count"
    covered = {e["kwargs"].get("column") for e in raw["expectations"]} | {
        c for e in raw["expectations"] for c in e["kwargs"].get("column_set", [])
    }
    used = {
        spec.target,
        *spec.features.numeric,
        *spec.features.categorical,
        spec.features.text,
        spec.features.image,
        *spec.roles.values(),
    } - {None}
    assert used <= covered, f"columns without expectations: {used - covered}"


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / f"{data.get('name', 'x')}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _base() -> dict:
    return yaml.safe_load((REPO / "pipelines" / "credit_risk.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.update(unknown_field=1), "unknown_field"),
        (lambda d: d["schedule"].update(cron="every day"), "cron"),
        (lambda d: d.pop("candidates"), "candidates"),
        (lambda d: d.update(problem="astrology"), "problem"),
        (lambda d: d["source"].update(path="x.csv"), "source"),
        (lambda d: d["split"].update(test_size=1.5), "test_size"),
    ],
)
def test_invalid_specs_fail_with_the_field_named(tmp_path, mutate, fragment):
    data = _base()
    mutate(data)
    with pytest.raises(SpecError) as e:
        load_spec(str(_write(tmp_path, data)), SETTINGS)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d["metric"].update(name="accuracy_of_vibes"), "metric"),
        (lambda d: d["candidates"][0].update(estimator="deep_magic"), "deep_magic"),
        (lambda d: d["options"].update(threshold="cost", cost=None), "cost"),
        (lambda d: d["options"].update(colour="blue"), "colour"),
    ],
)
def test_kind_checks_reject_bad_options(tmp_path, mutate, fragment):
    data = _base()
    mutate(data)
    spec = load_spec(str(_write(tmp_path, data)), SETTINGS)
    with pytest.raises(SpecError) as e:
        get_kind(spec.problem).check_spec(spec)
    assert fragment in str(e.value)


def test_unknown_pipeline_lists_the_known_ones():
    with pytest.raises(SpecError) as e:
        load_spec("no_such_pipeline", SETTINGS)
    assert "credit_risk" in str(e.value)


def test_the_docs_walk_through_specs_are_valid_for_their_kinds():
    """The docs' walk-through specs parse and pass their kind's checks (docs that match)."""
    import yaml

    from conftest import docs_block
    from modelmill.config.spec import PipelineSpec
    from modelmill.learn.kinds import get_kind

    csv = yaml.safe_load(docs_block("walkthrough-csv", "yaml"))
    sql = {**csv, "source": yaml.safe_load(docs_block("walkthrough-sql", "yaml"))["source"]}
    for data in (csv, yaml.safe_load(docs_block("walkthrough-ratings", "yaml")), sql):
        spec = PipelineSpec(**data)
        get_kind(spec.problem).check_spec(spec)
