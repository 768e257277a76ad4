"""Human-readable run summaries: the terminal table and the Prefect markdown artifact."""

from __future__ import annotations


def _num(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def summary_markdown(s: dict) -> str:
    status = s.get("status")
    lines = [f"# modelmill · {s.get('pipeline')} · {status}", ""]
    if status == "trained":
        lines += [
            "| metric | model | baseline | lift |", "|---|---|---|---|",
            f"| {s.get('metric')} | {_num(s.get('value'))} | {_num(s.get('baseline'))} | {_num(s.get('lift'))} |",
            "", f"**Decision:** version {s.get('version')} — {'promoted to champion' if s.get('promoted') else 'challenger'} ({s.get('decision')}).",
        ]  # fmt: skip
    else:
        lines += [f"**Error:** {s.get('error')}"]
    lines += ["", f"Champion: version {s.get('champion_version') or 'none'}", "", f"MLflow run: `{s.get('run_id')}`", "", f"Where: {s.get('where')}"]
    return "\n".join(lines)


def summary_table(summaries: list[dict]) -> str:
    head = ("pipeline", "status", "metric", "value", "baseline", "lift", "version", "decision")
    rows = []
    for s in summaries:
        status = s.get("status")
        decision = ("champion" if s.get("promoted") else "challenger") if status == "trained" else (s.get("error") or "")
        rows.append((
            s.get("pipeline"), status, s.get("metric") or "", _num(s.get("value")), _num(s.get("baseline")),
            _num(s.get("lift")), s.get("version") or "—", decision,
        ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    out = []
    for r in [head, *rows]:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths, strict=False)) + "  " + str(r[-1]))
        if r is head:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return "\n".join(out)
