from modelmill.pipeline.promotion import decide


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
