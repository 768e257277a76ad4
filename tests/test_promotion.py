import pytest

from modelmill.pipeline.promotion import (
    decide,
    judge,
    manual_policy,
    metric_drop,
    run_switch_policy,
    slice_gap_policy,
    widest_gap,
)


def test_first_model_becomes_champion():
    d = decide(0.7, None, None, direction="maximize", margin=0.01)
    assert d.promote and d.reason == "no champion yet"


def test_must_beat_champion_by_more_than_the_margin():
    assert not decide(0.805, 0.80, "1", direction="maximize", margin=0.01).promote
    assert not decide(0.80, 0.80, "1", direction="maximize", margin=0.0).promote
    assert decide(0.82, 0.80, "1", direction="maximize", margin=0.01).promote


def test_direction_minimize():
    assert decide(0.10, 0.20, "3", direction="minimize", margin=0.05).promote
    assert not decide(0.18, 0.20, "3", direction="minimize", margin=0.05).promote
    assert not decide(0.30, 0.20, "3", direction="minimize", margin=0.0).promote


def test_champion_that_cannot_be_scored_is_kept():
    d = decide(0.9, None, "2", direction="maximize", margin=0.0)
    assert not d.promote and "could not be scored" in d.reason


def test_metric_drop_is_reported_only_over_its_limit():
    d = decide(0.70, 0.80, "4", direction="maximize", margin=0.0)
    assert metric_drop(d, direction="maximize", limit=0.05) == pytest.approx(0.10)
    assert metric_drop(d, direction="maximize", limit=0.2) is None
    assert metric_drop(d, direction="maximize", limit=None) is None
    worse_rmse = decide(0.30, 0.20, "4", direction="minimize", margin=0.0)
    assert metric_drop(worse_rmse, direction="minimize", limit=0.05) == pytest.approx(0.10)
    assert (
        metric_drop(decide(0.9, None, None, direction="maximize", margin=0.0), direction="maximize", limit=0.0) is None
    )


def test_each_policy_refuses_only_a_model_that_would_be_promoted_and_keeps_every_reason():
    better = decide(0.90, 0.80, "2", direction="maximize", margin=0.01)
    worse = decide(0.70, 0.80, "2", direction="maximize", margin=0.01)
    gaps = {"sex": 0.12, "age": 0.30}
    blocked = slice_gap_policy(better, gaps, limit=0.2, metric="roc_auc")
    assert not blocked.promote and blocked.reason.startswith(better.reason)
    assert "differs by 0.3000 between slices of age, over promotion.max_slice_gap 0.2" in blocked.reason
    assert slice_gap_policy(better, gaps, limit=0.5, metric="roc_auc") is better
    assert slice_gap_policy(better, gaps, limit=None, metric="roc_auc") is better
    assert slice_gap_policy(worse, gaps, limit=0.2, metric="roc_auc") is worse  # already refused: one reason
    assert widest_gap(gaps, 0.1) == ("age", 0.30) and widest_gap(gaps, 0.5) is None

    off = run_switch_policy(better, promote=False)
    assert not off.promote and off.reason.endswith("but promotion is off for this run")
    assert run_switch_policy(better, promote=True) is better

    manual = manual_policy(better, mode="manual")
    assert not manual.promote and manual.awaiting and manual.reason.endswith("awaits approval (promotion.mode: manual)")
    assert manual_policy(better, mode="auto") is better
    assert not manual_policy(worse, mode="manual").awaiting


def test_judge_applies_the_policies_in_order():
    better = decide(0.90, 0.80, "2", direction="maximize", margin=0.01)
    assert judge(better, gaps={}, max_slice_gap=None, metric="roc_auc", promote=True, mode="auto") is better
    # a slice gap refuses first: the model is not then waiting for approval
    held = judge(better, gaps={"sex": 0.4}, max_slice_gap=0.1, metric="roc_auc", promote=True, mode="manual")
    assert not held.promote and not held.awaiting and "max_slice_gap" in held.reason
    waiting = judge(better, gaps={"sex": 0.05}, max_slice_gap=0.1, metric="roc_auc", promote=True, mode="manual")
    assert waiting.awaiting and not waiting.promote


def test_a_reproduction_is_identical_within_tolerance_or_different():
    from modelmill.pipeline.reproduce import EXACT, NEURAL_TOLERANCE, verdict

    assert verdict(True, [0.0, 0.0], EXACT) == "identical"
    assert verdict(True, [], EXACT) == "identical"
    assert verdict(True, [0.0, -0.015], NEURAL_TOLERANCE) == "within_tolerance"  # a network's CPU kernels
    assert verdict(True, [0.0, 0.021], NEURAL_TOLERANCE) == "different"
    assert verdict(True, [1e-6], EXACT) == "different"  # scikit-learn models are exact
    assert verdict(True, [5e-10], EXACT) == "within_tolerance"
    assert verdict(False, [0.0], NEURAL_TOLERANCE) == "different"  # another candidate chosen
    assert verdict(True, [float("nan")], NEURAL_TOLERANCE) == "different"


def test_too_few_rows_neither_model_trained_on_decide_nothing():
    from modelmill.pipeline.promotion import Compared

    few = decide(0.99, 0.80, "1", direction="maximize", margin=0.0, compared=Compared(12, 143, 30))
    assert not few.promote and few.champion_score is None
    assert "only 12 of 143 test rows are rows champion v1 did not train on" in few.reason
    enough = decide(0.99, 0.80, "1", direction="maximize", margin=0.0, compared=Compared(40, 143, 30))
    assert enough.promote and enough.reason.endswith("on 40 of 143 test rows neither model trained on")


def test_a_first_model_worse_than_its_naive_baseline_is_not_promoted_unless_allowed():
    first = decide(0.0121, None, None, direction="minimize", margin=0.0)
    held = judge(first, gaps={}, max_slice_gap=None, metric="rmse", promote=True, mode="auto", baseline=0.0118,
                 direction="minimize")  # fmt: skip
    assert not held.promote and "worse than its naive baseline's 0.0118" in held.reason
    allowed = judge(first, gaps={}, max_slice_gap=None, metric="rmse", promote=True, mode="auto", baseline=0.0118,
                    direction="minimize", allow_worse_than_baseline=True)  # fmt: skip
    assert allowed.promote
    later = decide(0.0121, 0.0125, "2", direction="minimize", margin=0.0)  # beats a champion: the champion rules
    assert judge(later, gaps={}, max_slice_gap=None, metric="rmse", promote=True, mode="auto", baseline=0.0118,
                 direction="minimize").promote  # fmt: skip
