"""Human-readable run summaries: the terminal table and the Prefect markdown artifact."""

from __future__ import annotations

from typing import Any


def _get(s: Any, k: str):
    return s.get(k) if isinstance(s, dict) else getattr(s, k)


def _num(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def summary_markdown(s: Any) -> str:
    status = _get(s, "status")
    lines = [f"# modelmill · {_get(s, 'pipeline')} · {status}", ""]
    if status == "trained":
        lines += [
            "| metric | model | baseline | lift |", "|---|---|---|---|",
            f"| {_get(s, 'metric')} | {_num(_get(s, 'value'))} | {_num(_get(s, 'baseline'))} | {_num(_get(s, 'lift'))} |",
            "", f"**Decision:** version {_get(s, 'version')} — {'promoted to champion' if _get(s, 'promoted') else 'challenger'} ({_get(s, 'decision')}).",
        ]  # fmt: skip
    else:
        lines += [f"**Error:** {_get(s, 'error')}"]
    lines += ["", f"Champion: version {_get(s, 'champion_version') or 'none'}", "", f"MLflow run: `{_get(s, 'run_id')}`", "", f"Where: {_get(s, 'where')}"]
    return "\n".join(lines)


def summary_table(summaries: list[Any]) -> str:
    head = ("pipeline", "status", "metric", "value", "baseline", "lift", "version", "decision")
    rows = []
    for s in summaries:
        status = _get(s, "status")
        decision = ("champion" if _get(s, "promoted") else "challenger") if status == "trained" else (_get(s, "error") or "")
        rows.append((
            _get(s, "pipeline"), status, _get(s, "metric") or "", _num(_get(s, "value")), _num(_get(s, "baseline")),
            _num(_get(s, "lift")), _get(s, "version") or "—", decision,
        ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    out = []
    for r in [head, *rows]:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths, strict=False)) + "  " + str(r[-1]))
        if r is head:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return "\n".join(out)
