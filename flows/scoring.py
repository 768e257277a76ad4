"""The batch-scoring flow: a pipeline's champion scores a file (``modelmill score``, or the
spec's ``scoring.schedule`` as a deployment)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from modelmill.config.settings import get_settings
from modelmill.config.spec import load_spec
from modelmill.errors import SpecError
from modelmill_flows.pipeline import _forward_core_logs, started_by_a_deployment
from modelmill_tasks import stages as t


@flow(name="modelmill-score", flow_run_name="{pipeline}-score", log_prints=True)
def score_flow(
    pipeline: str, input: str | None = None, output: str | None = None, shadow: bool = False, reasons: int = 0
) -> dict:
    """Score ``input`` (default: the spec's ``scoring.input``) into ``output`` with the champion.
    A path given here by the operator is read as given (relative to the working directory); the
    spec's own paths, and any a deployment's parameters name, are relative to its folder and
    confined like its source. ``reasons``: each scored row's top reasons (tabular classification)."""
    _forward_core_logs()
    settings = get_settings()
    operator = not started_by_a_deployment()
    spec = load_spec(pipeline, settings, names_only=not operator)
    if (input is None or output is None) and spec.scoring is None:
        raise SpecError(f"pipeline {spec.name}: give --input and --output, or a `scoring` section in its spec")
    folder = spec.spec_path.parent if spec.spec_path else Path.cwd()
    in_base = out_base = folder
    if input is None:
        input = spec.scoring.input
    elif operator:  # an operator's path: from the working directory, like every path given on the command line
        input = str(Path(input).expanduser().resolve())
        in_base = Path(input).parent
    if output is None:
        output = spec.scoring.output
    elif operator:
        out_base = None
    return t.score_batch(spec, settings, input, output, in_base, shadow, reasons, out_base).__dict__


@flow(name="modelmill-outcomes", flow_run_name="{pipeline}-outcomes", log_prints=True)
def outcomes_flow(pipeline: str, input: str) -> dict:
    """Join the outcomes in ``input`` to the rows the champion scored and measure how it did on
    them (``modelmill outcomes``). An operator's path is read from the working directory; one a
    deployment's parameters name is relative to the spec's folder and confined like its source."""
    _forward_core_logs()
    settings = get_settings()
    operator = not started_by_a_deployment()
    spec = load_spec(pipeline, settings, names_only=not operator)
    base = spec.spec_path.parent if spec.spec_path else Path.cwd()
    if operator:
        input = str(Path(input).expanduser().resolve())
        base = Path(input).parent
    return t.join_outcomes(spec, settings, input, base).__dict__
