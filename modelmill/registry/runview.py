"""What a reviewer sees of a run: metric key names, the one-line headline, the run's name and
description, and the MLflow runs-table view an experiment opens with.

MLflow's chart view groups metrics into sections by the part of the key before ``/``, and its
tables sort keys alphabetically, so keys are ``<group>/<name>``: ``_primary/`` (sorts first: the
pipeline's primary metric, its baseline, the lift and the kind's headline figures), ``test/``,
``drift/``, ``promotion/``, ``validation/``, ``live/`` (realized on scored rows' outcomes) and ``estimated/`` (before them).
"""

from __future__ import annotations

import json
import math

PRIMARY, TEST, DRIFT, PROMOTION, VALIDATION = "_primary", "test", "drift", "promotion", "validation"
#: a version's figures on the outcomes of the rows it scored (``modelmill outcomes``)
LIVE = "live"
#: the same, estimated from the scored probabilities before the outcomes arrive (CBPE)
ESTIMATED = "estimated"
#: The experiment tag MLflow's UI reads a shared runs-table view from (``?viewStateShareKey=``).
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "modelmill"
#: Without it MLflow 3's UI takes an experiment for a GenAI one and opens it on a traces overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def mkey(group: str, name: str) -> str:
    return f"{group}/{name}"


def primary_keys(metric: str) -> tuple[str, str, str]:
    """MLflow keys of the primary metric, its baseline and the lift over the baseline."""
    return mkey(PRIMARY, metric), mkey(PRIMARY, f"baseline_{metric}"), mkey(PRIMARY, "lift")


def primary_metrics(
    metric: str, value: float, baseline: float, lift: float, headline: dict[str, float]
) -> dict[str, float]:
    value_key, baseline_key, lift_key = primary_keys(metric)
    return {
        value_key: value,
        baseline_key: baseline,
        lift_key: lift,
        **{mkey(PRIMARY, k): v for k, v in headline.items()},
    }


def from_primary_metrics(metric: str, metrics: dict[str, float]) -> dict:
    """The summary fields (value, baseline, lift, headline) back from a run's logged metrics."""
    value_key, baseline_key, lift_key = primary_keys(metric)
    prefix = PRIMARY + "/"
    headline = {
        k.removeprefix(prefix): v
        for k, v in sorted(metrics.items())
        if k.startswith(prefix) and k not in (value_key, baseline_key, lift_key)
    }
    return {
        "value": metrics.get(value_key),
        "baseline": metrics.get(baseline_key),
        "lift": metrics.get(lift_key),
        "headline": headline,
    }


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"


def headline_text(
    metric: str, direction: str, value: float | None, baseline: float | None, headline: dict[str, float] | None = None
) -> str:
    """``roc_auc 0.8092 (baseline 0.5000, +0.3092) · expected_cost 0.5333``.

    For an error metric (minimised) an absolute lift of a few 1e-5 reads as "0.0000": the change
    against the baseline is given in percent instead (negative is better).
    """
    if value is None:
        return ""
    text = f"{metric} {_fmt(value)}"
    if baseline is not None:
        if direction == "minimize":
            change = f"{(value - baseline) / abs(baseline):+.2%}" if baseline else "n/a"
            text += f" (baseline {_fmt(baseline)}, {change})"
        else:
            text += f" (baseline {_fmt(baseline)}, {value - baseline:+.4f})"
    for k, v in (headline or {}).items():
        text += f" · {k} {_fmt(v)}"
    return text


def run_name(metric: str, value: float, baseline: float, direction: str, decision: str, version: str | None) -> str:
    """The name the runs table shows by default (the experiment names the pipeline): the decision
    first, as the column is narrow, then the figures. ``v3 champion · roc_auc 0.8092 (baseline…)``."""
    return f"{f'v{version} ' if version else ''}{decision} · {headline_text(metric, direction, value, baseline)}"


def decision_sentence(
    pipeline: str,
    version: str | None,
    promoted: bool,
    reason: str,
    metric: str,
    value: float,
    promote_enabled: bool = True,
    alias_role: str = "the challenger",
) -> str:
    """The run's description (MLflow's ``mlflow.note.content``), one sentence."""
    if promoted:
        return f"{pipeline} v{version} became the champion with test {metric} {_fmt(value)}: {reason}."
    role = alias_role if promote_enabled else "registered without moving any alias"
    return f"{pipeline} v{version} is {role} with test {metric} {_fmt(value)}: {reason}."


def failure_sentence(pipeline: str, rejected: bool, message: str) -> str:
    first = message.splitlines()[0] if message else "unknown error"
    if rejected:
        return f"{pipeline}: the validation gate rejected the data, nothing was trained and the champion is unchanged ({first})."
    return f"{pipeline}: the run failed, nothing was registered and the champion is unchanged ({first})."


def table_columns(metric: str, headline: tuple[str, ...] = ()) -> list[str]:
    """Runs-table columns of the shared view, in MLflow's canonical ``type.`key``` form."""
    value_key, baseline_key, lift_key = primary_keys(metric)
    metrics = [value_key, baseline_key, lift_key, *(mkey(PRIMARY, h) for h in headline if h != metric)]
    tags = [
        "modelmill.decision",
        "modelmill.model_version",
        "modelmill.data_digest",
        "modelmill.validation",
        "modelmill.trigger",
    ]
    return [
        "attributes.`Dataset`",
        *(f"metrics.`{m}`" for m in metrics),
        *(f"tags.`{t}`" for t in tags),
        "params.`model.candidate`",
    ]


#: The runs-table filter of modelmill's links: every run but the skipped reruns (only a skip
#: names the run it matched), which stay one click away (clear the search box).
WITHOUT_SKIPS = "tags.`modelmill.matched_run` IS NULL"


def view_path(experiment_id: str, shared: bool = False) -> str:
    """The UI route of an experiment's runs table, skipped reruns filtered out, in the UI's
    model-training mode (MLflow 3 otherwise opens on a GenAI traces overview). ``shared``:
    modelmill's shared view too (its metric, baseline, lift, decision and digest columns; the UI
    then shows a "shared view" banner)."""
    from urllib.parse import quote

    query = f"workflowType=machine_learning&searchFilter={quote(WITHOUT_SKIPS)}"
    return f"#/experiments/{experiment_id}/runs?{query}" + (f"&viewStateShareKey={VIEW_KEY}" if shared else "")


def experiment_description(description: str, experiment_id: str) -> str:
    """The experiment's description, with a link to its runs in modelmill's view."""
    return (
        f"{description.strip()}\n\n[Runs in modelmill's view]({view_path(experiment_id, shared=True)}): primary metric, baseline, "
        "lift, decision, data digest and chosen model as columns, newest first."
    )


def shared_view(metric: str, headline: tuple[str, ...] = ()) -> tuple[str, str]:
    """(experiment tag, JSON value) of the runs-table view, newest run first."""
    columns = table_columns(metric, headline)
    state = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "searchFilter": WITHOUT_SKIPS,
    }
    return SHARED_VIEW_TAG_PREFIX + VIEW_KEY, json.dumps(state)
