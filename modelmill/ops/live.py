"""A model version's figures in service: realized on the outcomes of the rows it scored
(``live/``, :mod:`modelmill.pipeline.outcomes`) and estimated before they arrive (``estimated/``,
:mod:`modelmill.learn.estimation`), both logged to the version's training run beside its test
figures, and the ``live_drop`` rule that compares them with its test figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelmill.config.spec import PipelineSpec
from modelmill.registry.runview import mkey


def hours_in_service(run, at) -> int:
    """The step of a point of a version's live series: whole hours from its training to ``at``."""
    trained = pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
    return max(int((pd.Timestamp(at) - trained).total_seconds() // 3600), 0)


def log_series(tracker, run, group: str, figures: dict[str, float], at) -> None:
    """``figures`` as points of the version's ``group/`` series (``live`` or ``estimated``)."""
    tracker.log_metrics(
        run.info.run_id,
        {mkey(group, k): v for k, v in figures.items() if v is not None and np.isfinite(v)},
        step=hours_in_service(run, at),
    )


def dropped(spec: PipelineSpec, figures: dict[str, float], test: float | None, basis: str) -> str | None:
    """Why ``figures`` (a batch's primary metric with its 95 % interval, measured as ``basis``
    says: "on 84 outcomes") raise ``live_drop`` against the version's ``test`` figure, or None."""
    limit, name = spec.monitoring.live_drop, spec.metric.name
    value, low, high = figures.get(name), figures.get(f"{name}_low"), figures.get(f"{name}_high")
    if limit is None or test is None or value is None or low is None or high is None:
        return None
    if not np.isfinite([value, low, high]).all():
        return None
    worse = test - value if spec.metric.direction == "maximize" else value - test
    excluded = high < test if spec.metric.direction == "maximize" else low > test
    if worse > limit and excluded:
        return (
            f"{name} {value:.4f} (95 % interval {low:.4f}-{high:.4f}) {basis}, "
            f"against {test:.4f} on its test split: worse by {worse:.4f}, over monitoring.live_drop {limit}"
        )
    return None
