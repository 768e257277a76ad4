"""One Prefect task per pipeline stage; each only calls :mod:`modelmill.pipeline.stages`."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from modelmill.ops.report import summary_markdown
from modelmill.pipeline import stages

# Stages pass frames and fitted models in memory: hashing them for a cache key is wasted work,
# and the data digest (not the task inputs) is what identifies a run's data.
_opts = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="start-run", **_opts)
def start_run(spec, settings, flow_run_id=None, as_of=None, promote=True, trigger="manual", force=False, reason=None):
    return stages.start(
        spec,
        settings,
        flow_run_id=flow_run_id,
        as_of=as_of,
        promote=promote,
        trigger=trigger,
        force=force,
        reason=reason,
    )


# Downloads retry inside the core (with backoff); a checksum or format error must not be retried.
@task(name="ingest", **_opts)
def ingest(handle):
    return stages.ingest_stage(handle)


@task(name="check-unchanged", **_opts)
def unchanged_since(handle):
    return stages.unchanged_since(handle)


@task(name="skip-unchanged", **_opts)
def skip(handle, matched):
    return stages.skip(handle, matched)


@task(name="validate", **_opts)
def validate(handle, snapshot):
    return stages.validate_stage(handle, snapshot)


@task(name="drift", **_opts)
def drift(handle, snapshot):
    return stages.drift_stage(handle, snapshot)


@task(name="featurize-and-train", **_opts)
def train(handle, snapshot):
    return stages.train_stage(handle, snapshot)


@task(name="evaluate", **_opts)
def evaluate(handle, data, trained):
    return stages.evaluate_stage(handle, data, trained)


@task(name="explain", **_opts)
def explain(handle, data, trained, evaluation):
    return stages.explain_stage(handle, data, trained, evaluation)


@task(name="promote", **_opts)
def promote(handle, data, trained, evaluation):
    return stages.promote_stage(handle, data, trained, evaluation)


@task(name="finish-run", **_opts)
def finish(handle, evaluation, decision):
    return stages.finish(handle, evaluation, decision)


@task(name="publish-summary", **_opts)
def publish_summary(summary):
    """A markdown artifact on the flow run: metrics, decision and where the MLflow run is."""
    create_markdown_artifact(
        markdown=summary_markdown(summary.__dict__),
        key=f"modelmill-{summary.pipeline.replace('_', '-')}",
        description=f"modelmill {summary.pipeline} run",
    )
    return summary


@task(name="score-batch", **_opts)
def score_batch(spec, settings, input_location, output, base, shadow=False, reasons=0, output_base=None):
    from modelmill.pipeline.scoring import score

    return score(
        spec, settings, input_location, output, base=base, shadow=shadow, reasons=reasons, output_base=output_base
    )


@task(name="join-outcomes", **_opts)
def join_outcomes(spec, settings, input_location, base):
    from modelmill.pipeline.outcomes import record_outcomes

    return record_outcomes(spec, settings, input_location, base=base)
