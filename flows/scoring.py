"""The batch-scoring flow: a pipeline's champion scores a file (``modelmill score``, or the
spec's ``scoring.schedule`` as a deployment)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from modelmill.config.settings import get_settings
from modelmill.config.spec import load_spec
from modelmill.errors import SpecError
from modelmill_flows.pipeline import _forward_core_logs
from modelmill_tasks import stages as t


@flow(name="modelmill-score", flow_run_name="{pipeline}-score", log_prints=True)
def score_flow(
    pipeline: str, input: str | None = None, output: str | None = None, shadow: bool = False, reasons: int = 0
) -> dict:
    """Score ``input`` (default: the spec's ``scoring.input``) into ``output`` with the champion.
    A path given here by the operator is read as given (relative to the working directory); the
    spec's own paths are relative to its folder and confined like its source. ``reasons``: each
    scored row's top reasons (tabular classification)."""
    _forward_core_logs()
    settings = get_settings()
    spec = load_spec(pipeline, settings)
    if input is not None:  # an operator's path: from the working directory, like every path given on the command line
        input = str(Path(input).expanduser().resolve())
    base = Path(input).parent if input else Path.cwd()
    if input is None or output is None:
        if spec.scoring is None:
            raise SpecError(f"pipeline {spec.name}: give --input and --output, or a `scoring` section in its spec")
        folder = spec.spec_path.parent if spec.spec_path else base
        if input is None:
            input, base = spec.scoring.input, folder
        output = output or str(folder / spec.scoring.output)  # an absolute path stays as it is
    return t.score_batch(spec, settings, input, output, base, shadow, reasons).__dict__
