"""The batch-scoring flow: a pipeline's champion scores a file (``modelmill score``, or the
spec's ``scoring.schedule`` as a deployment)."""

from __future__ import annotations

import logging
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
    """Score ``input`` (default: the spec's ``scoring.input``) into ``output`` with the champion;
    a ``live_drop`` estimate or a batch's drift over ``monitoring.psi_alert`` runs the pipeline again
    when ``monitoring.retrain_on`` asks.
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
    result = t.score_batch(spec, settings, input, output, in_base, shadow, reasons, out_base)
    if result.estimate and result.estimate.get("alert"):
        _retrain(spec, "live_drop", f"v{result.version}: {result.estimate['alert']}")
    limit = spec.monitoring.psi_alert
    if limit is not None and result.psi_max == result.psi_max and result.psi_max > limit and result.psi_meaningful:
        _retrain(
            spec, "drift", f"a scoring batch's largest PSI {result.psi_max:.3f} is over monitoring.psi_alert {limit}"
        )
    return result.__dict__


def _retrain(spec, event: str, reason: str) -> None:
    from modelmill_flows.retrain import retrain

    if event in spec.monitoring.retrain_on:
        retrain(spec, event, reason, report=logging.getLogger("modelmill.retrain").info)


@flow(name="modelmill-outcomes", flow_run_name="{pipeline}-outcomes", log_prints=True)
def outcomes_flow(pipeline: str, input: str | None = None) -> dict:
    """Join the outcomes in ``input`` (default: the spec's ``outcomes``: a file or a query) to the rows the
    champion scored and measure how it did on them (``modelmill outcomes``); a ``live_drop`` runs
    the pipeline again when ``monitoring.retrain_on`` asks. An operator's path is read from the
    working directory; the spec's, and one a deployment's parameters name, are relative to the
    spec's folder and confined like its source."""
    _forward_core_logs()
    settings = get_settings()
    operator = not started_by_a_deployment()
    spec = load_spec(pipeline, settings, names_only=not operator)
    base = spec.spec_path.parent if spec.spec_path else Path.cwd()
    if input is None:
        if spec.outcomes is None:
            raise SpecError(f"pipeline {spec.name}: give --input, or an `outcomes` section in its spec")
        input = spec.outcomes.input  # None: its query
    elif operator:
        input = str(Path(input).expanduser().resolve())
        base = Path(input).parent
    result = t.join_outcomes(spec, settings, input, base)
    if result.alerts:
        _retrain(spec, "live_drop", result.alerts[0])
    return result.__dict__
