"""The model card of a registered version: what it is for, what it learnt from, how it does
overall and per group, why it decides, what it cannot do and how to use it. Markdown (the
registry's version description) and a standalone HTML page. Pure core: built from facts the
stages hand over."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from modelmill.config.spec import PipelineSpec


@dataclass
class CardFacts:
    """What the card states about one registered version."""

    version: str
    run_id: str
    decision: str
    data_source: str
    licence: str
    digest: str
    rows: int
    period: str | None
    gate: str
    candidate: str
    hyperparams: dict
    metric: str
    direction: str
    metrics: dict[str, float]
    calibration: dict[str, str] = field(default_factory=dict)
    slices: pd.DataFrame | None = None
    slice_gaps: dict[str, float] = field(default_factory=dict)
    importance: pd.DataFrame | None = None
    shap_importance: pd.DataFrame | None = None
    shap_method: str | None = None
    warnings: list[str] = field(default_factory=list)
    split: dict = field(default_factory=dict)
    #: what started the run (schedule, manual, a retrain_on event) and that event's cause
    trigger: str = "manual"
    trigger_reason: str | None = None


def _num(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if f != f:
        return ""
    return f"{f:.4f}" if abs(f) >= 0.1 or f == 0 else f"{f:.4g}"  # small figures keep 4 significant digits


def _table(frame: pd.DataFrame) -> list[str]:
    cols = list(frame.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        out.append(
            "| "
            + " | ".join(_num(r[c]) if isinstance(r[c], float) else str(r[c]).replace("|", "/") for c in cols)
            + " |"
        )
    return out


def model_card(spec: PipelineSpec, f: CardFacts) -> str:
    """The card as markdown."""
    m, key = f.metrics, f.metric
    lines = [
        f"# {spec.name} v{f.version}: model card",
        "",
        f"**Purpose.** {spec.description.strip()} Domain: {spec.domain}; problem kind: {spec.problem}.",
        "",
        f"**Status.** {f.decision}. Trained by MLflow run `{f.run_id}`.",
        "",
        *(
            [
                f"**Trained because.** `monitoring.retrain_on: {f.trigger}`: {f.trigger_reason or 'no cause recorded'}",
                "",
            ]
            if f.trigger in ("live_drop", "drift")
            else []
        ),
        "## Data",
        f"- Source: {f.data_source}",
        f"- Licence: {f.licence}",
        f"- Snapshot: {f.rows} rows, sha256 `{f.digest}`" + (f", period {f.period}" if f.period else ""),
        "- Split: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f.split.items() if not isinstance(v, list | dict)),
        f"- Validation gate: {f.gate}",
        "",
        "## Model",
        f"- Chosen candidate: `{f.candidate}` among {', '.join(c.name for c in spec.candidates)} (selected on the training rows only)",
        "- Hyperparameters: "
        + (", ".join(f"`{k}={v}`" for k, v in f.hyperparams.items()) or "the estimator's defaults"),
    ]
    if f.calibration:
        lines.append("- Calibration: " + ", ".join(f"{k} {v}" for k, v in f.calibration.items()))
    lines += [
        "",
        "## Test figures",
        f"Primary metric `{key}` ({f.direction}): **{_num(m.get(key))}** against the baseline `{spec.baseline.name}`'s {_num(m.get('baseline_' + key))}.",
        "",
    ]
    shown = [k for k in m if not k.startswith("baseline_") and k != "lift_over_baseline" and "." not in k][:14]
    lines += _table(
        pd.DataFrame(
            {
                "metric": shown,
                "model": [m[k] for k in shown],
                "baseline": [m.get("baseline_" + k, float("nan")) for k in shown],
            }
        )
    )
    lines += ["", f"Published reference: {spec.reference or 'none given'}.", ""]
    if f.slices is not None and len(f.slices):
        lines += ["## Slices", f"Test figures per group (slices with fewer than their `min_rows` test rows are shown, not judged). Largest gap of `{key}`: "
                  + ", ".join(f"{c} {_num(g)}" for c, g in f.slice_gaps.items())
                  + (f"; promotion refuses a gap over {spec.promotion.max_slice_gap}." if spec.promotion.max_slice_gap else "; no limit set (promotion.max_slice_gap)."), ""]  # fmt: skip
        lines += _table(f.slices) + [""]
    if f.importance is not None:
        lines += [
            "## What drives it",
            "Permutation importance on the test split (drop in the test metric when a source column is shuffled), top 10:",
            "",
        ]
        lines += _table(f.importance.head(10)[["feature", "importance_mean", "importance_std"]]) + [""]
    if f.shap_importance is not None:
        lines += [f"Mean |SHAP value| per source column ({f.shap_method} explainer), top 10:", ""]
        lines += _table(f.shap_importance.head(10)) + [""]
    explained = [w for w, x in (("Importance", f.importance), ("SHAP values", f.shap_importance)) if x is not None]
    limits = [*f.warnings] + (
        [f"{' and '.join(explained)} describe associations the model uses on this data, not causes."]
        if explained
        else []
    )
    if f.slices is not None and len(f.slices):
        few = f.slices[f.slices["rows"] < f.slices["column"].map({s.column: s.min_rows for s in spec.slices}).fillna(0)]
        if len(few):
            limits.append(
                f"{len(few)} slice(s) have too few test rows to judge: "
                + ", ".join(f"{r.column}={r.slice} ({r.rows})" for r in few.itertuples())
            )
    limits.append(
        "Validated only on data like the snapshot above; rows outside the suite's rules are set aside when scoring, not scored."
    )
    lines += ["## Known limits", *[f"- {w}" for w in limits], ""]
    lines += ["## How to use it", "```bash"]
    if spec.problem == "forecasting":  # not scored row by row: each run forecasts from the newest data
        lines += [
            f"modelmill run {spec.name}   # on the newest prices: the run's tables/backtest_predictions.csv holds each forecast",
            "```",
        ]
    else:
        lines += [
            f"modelmill score {spec.name} --input batch.csv --output scores.parquet"
            + (" --reasons 3" if spec.problem == "tabular_classification" else ""),
            "```",
        ]
    lines += [
        "```python",
        "import mlflow",
        f'model = mlflow.pyfunc.load_model("models:/{spec.registered_model_name}/{f.version}")',
        "predictions = model.predict(rows)  # rows as they come from the source",
        "```",
    ]
    return "\n".join(lines) + "\n"


def card_html(markdown_text: str, title: str) -> str:
    """The card as a standalone HTML page."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}code{background:#f4f4f4}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{body}</body></html>\n"
