"""Champion/challenger: the pure decision rule."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    new_score: float
    champion_score: float | None
    champion_version: str | None


def decide(new_score: float, champion_score: float | None, champion_version: str | None, *, direction: str, margin: float) -> Decision:
    """The new model takes ``champion`` only if it beats the champion by ``margin`` (or there is none)."""
    if champion_version is None:
        return Decision(True, "no champion yet", new_score, None, None)
    if champion_score is None or not math.isfinite(champion_score):
        return Decision(False, f"champion v{champion_version} could not be scored on this snapshot; kept", new_score, None, champion_version)
    gain = new_score - champion_score if direction == "maximize" else champion_score - new_score
    if gain > margin:
        return Decision(True, f"beats champion v{champion_version} by {gain:.4f} > margin {margin}", new_score, champion_score, champion_version)
    return Decision(False, f"does not beat champion v{champion_version} by more than {margin} (gain {gain:+.4f})", new_score, champion_score, champion_version)
