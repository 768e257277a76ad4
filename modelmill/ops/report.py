"""Human-readable run summaries: the terminal table and the Prefect markdown artifact.

Each pipeline is summed up by its own figures (:func:`modelmill.registry.runview.headline_text`): the
primary metric against its baseline, then the kind's headline figures (a forecast's skill and
Diebold–Mariano p, a classifier's accuracy…).
"""

from __future__ import annotations

from modelmill.registry.runview import headline_text


def _headline(s: dict) -> str:
    return headline_text(
        s.get("metric") or "", s.get("direction") or "maximize", s.get("value"), s.get("baseline"), s.get("headline")
    )


def _last_column(s: dict) -> str:
    if s.get("status") == "skipped":
        return f"unchanged: {_headline(s)}"
    if s.get("status") != "trained":
        return s.get("error") or ""
    return _headline(s) + "".join(f" · WARNING: {w}" for w in s.get("warnings") or [])


def summary_markdown(s: dict) -> str:
    status = s.get("status")
    lines = [f"# modelmill · {s.get('pipeline')} · {status}", ""]
    if status == "skipped":
        lines += [f"**Skipped:** {s.get('decision')}.", "", f"**Test (of that run):** {_headline(s)}"]
    elif status == "trained":
        lines += [
            f"**Test:** {_headline(s)}", "",
            f"**Decision:** version {s.get('version')} — {'promoted to champion' if s.get('promoted') else 'challenger'} ({s.get('decision')}).",
        ]  # fmt: skip
        lines += [f"\n**Warning:** {w}." for w in s.get("warnings") or []]
    else:
        lines += [f"**Error:** {s.get('error')}"]
    lines += [
        "",
        f"Champion: version {s.get('champion_version') or 'none'}",
        "",
        f"MLflow run: `{s.get('run_id')}`",
        "",
        f"Where: {s.get('where')}",
    ]
    return "\n".join(lines)


def summary_table(summaries: list[dict]) -> str:
    """One row per pipeline: status, version, decision, then its own test figures (or the error)."""
    head = ("pipeline", "status", "version", "decision", "test figures (or the cause)")
    rows = []
    for s in summaries:
        trained = s.get("status") == "trained"
        decision = (
            ("champion" if s.get("promoted") else "challenger")
            if trained
            else ("skipped" if s.get("status") == "skipped" else "")
        )
        rows.append(
            (s.get("pipeline") or "", s.get("status") or "", s.get("version") or "—", decision, _last_column(s))
        )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    out = []
    for r in [head, *rows]:
        out.append(
            ("  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + str(r[-1])).rstrip()
        )
        if r is head:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * len(head[-1]))
    return "\n".join(out)
