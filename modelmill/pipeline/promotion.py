"""Champion/challenger: the decision and the policies that can hold a better model back.

:func:`decide` compares the new model with the champion on the same test data. Each policy
after it is a small function over that :class:`Decision`: it returns it unchanged, or refused
with the reason appended, so a decision says every rule that held it back. :func:`judge` applies
them in their order; the stage only gathers the facts they read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    new_score: float
    champion_score: float | None
    champion_version: str | None
    #: better, but a person moves the champion (``promotion.mode: manual``)
    awaiting: bool = False

    def refused(self, why: str, *, awaiting: bool = False) -> Decision:
        return replace(self, promote=False, reason=f"{self.reason}{why}", awaiting=awaiting)


@dataclass(frozen=True)
class Compared:
    """The test rows the two models are compared on: those neither trained on."""

    rows: int
    of: int
    minimum: int

    @property
    def enough(self) -> bool:
        return self.rows >= self.minimum

    def __str__(self) -> str:
        return f"{self.rows} of {self.of} test rows neither model trained on"


def gain(new_score: float, old_score: float, direction: str) -> float:
    """How much better ``new_score`` is than ``old_score`` (negative: worse)."""
    return new_score - old_score if direction == "maximize" else old_score - new_score


def decide(
    new_score: float,
    champion_score: float | None,
    champion_version: str | None,
    *,
    direction: str,
    margin: float,
    compared: Compared | None = None,
) -> Decision:
    """The new model takes ``champion`` only if it beats the champion by ``margin`` (or there is
    none). ``compared``: the test rows both scores are measured on, when the champion's training
    rows are known; too few of them and nothing is decided (the champion stays)."""
    if champion_version is None:
        return Decision(True, "no champion yet", new_score, None, None)
    if compared is not None and not compared.enough:
        return Decision(
            False,
            f"only {compared.rows} of {compared.of} test rows are rows champion v{champion_version} did not train on, "
            f"fewer than promotion.min_compared_rows {compared.minimum}: not compared, champion kept",
            new_score,
            None,
            champion_version,
        )
    on = f" on {compared}" if compared is not None else ""
    if champion_score is None or not math.isfinite(champion_score):
        return Decision(
            False,
            f"champion v{champion_version} could not be scored{on or ' on this snapshot'}; kept",
            new_score,
            None,
            champion_version,
        )
    g = gain(new_score, champion_score, direction)
    if g > margin:
        return Decision(
            True,
            f"beats champion v{champion_version} by {g:.4f} > margin {margin}{on}",
            new_score,
            champion_score,
            champion_version,
        )
    return Decision(
        False,
        f"does not beat champion v{champion_version} by more than {margin} (gain {g:+.4f}){on}",
        new_score,
        champion_score,
        champion_version,
    )


def baseline_policy(decision: Decision, baseline: float, *, direction: str, allowed: bool, metric: str) -> Decision:
    """A first model that loses to its own naive baseline on the primary metric does not become
    the champion unless ``promotion.allow_worse_than_baseline``."""
    if not decision.promote or decision.champion_version is not None or allowed or not math.isfinite(baseline):
        return decision
    if gain(decision.new_score, baseline, direction) >= 0:
        return decision
    return decision.refused(
        f", but its test {metric} {decision.new_score:.4f} is worse than its naive baseline's {baseline:.4f} "
        "(promotion.allow_worse_than_baseline: true allows it)"
    )


def metric_drop(decision: Decision, *, direction: str, limit: float | None) -> float | None:
    """How much worse than the champion on the same data the new model is, when that is more
    than ``monitoring.metric_drop`` (an alert, not a refusal); else None."""
    if decision.champion_score is None or limit is None:
        return None
    drop = -gain(decision.new_score, decision.champion_score, direction)
    return drop if drop > limit else None


def widest_gap(gaps: dict[str, float], limit: float | None) -> tuple[str, float] | None:
    """The slice column whose gap of the primary metric is widest, when it is over ``limit``."""
    over = {c: g for c, g in gaps.items() if limit is not None and g > limit}
    return max(over.items(), key=lambda kv: kv[1]) if over else None


def slice_gap_policy(decision: Decision, gaps: dict[str, float], *, limit: float | None, metric: str) -> Decision:
    """Refuse a model whose primary metric differs between the slices of a column by more than
    ``promotion.max_slice_gap`` (the widest such column is named)."""
    widest = widest_gap(gaps, limit)
    if not decision.promote or widest is None:
        return decision
    column, g = widest
    return decision.refused(
        f", but its test {metric} differs by {g:.4f} between slices of {column}, over promotion.max_slice_gap {limit}"
    )


def run_switch_policy(decision: Decision, *, promote: bool) -> Decision:
    """A run started with promotion off (``--no-promote``, a reproduction) moves no alias."""
    return decision if promote or not decision.promote else decision.refused(", but promotion is off for this run")


def manual_policy(decision: Decision, *, mode: str) -> Decision:
    """With ``promotion.mode: manual`` a better model waits for ``modelmill approve``."""
    if not decision.promote or mode != "manual":
        return decision
    return decision.refused("; awaits approval (promotion.mode: manual)", awaiting=True)


def judge(
    decision: Decision,
    *,
    gaps: dict[str, float],
    max_slice_gap: float | None,
    metric: str,
    promote: bool,
    mode: str,
    baseline: float = math.nan,
    direction: str = "maximize",
    allow_worse_than_baseline: bool = False,
) -> Decision:
    """The decision after every policy, in order: the naive baseline (a first model), slice gaps,
    the run's switch, manual mode."""
    decision = baseline_policy(
        decision, baseline, direction=direction, allowed=allow_worse_than_baseline, metric=metric
    )
    decision = slice_gap_policy(decision, gaps, limit=max_slice_gap, metric=metric)
    decision = run_switch_policy(decision, promote=promote)
    return manual_policy(decision, mode=mode)
