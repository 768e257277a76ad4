"""Print (or write into the docs' benchmarks page) the results tables from each pipeline's latest finished MLflow run: its test
metrics next to the published reference for that dataset; the seed's headline claims against
this project's measured lift over its naive baseline; and every candidate's selection score
(validation or cross-validation, never test), neural ones included.

    python scripts/results_table.py            # read the store under $MODELMILL_HOME (.modelmill)
    python scripts/results_table.py --run      # first run every pipeline into a fresh temp home
    python scripts/results_table.py --run --write docs/benchmarks.md
                                               # ...and replace the page's block between
                                               # <!-- results --> and <!-- /results -->
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = {
    "credit_risk": ["roc_auc", "pr_auc", "ks", "brier", "expected_cost", "sensitivity", "specificity"],
    "credit_amount": ["rmse", "mae", "r2", "interval_coverage", "interval_width"],
    "breast_cytology": ["roc_auc", "accuracy", "sensitivity", "specificity"],
    "price_forecast": ["rmse", "naive_rmse", "skill", "directional_accuracy", "price_mape", "dm_pvalue"],
    "breast_ultrasound": ["roc_auc", "accuracy", "sensitivity", "specificity"],
    "support_intent": ["accuracy", "macro_f1"],
    "review_sentiment": ["accuracy", "f1", "roc_auc", "accuracy.amazon", "accuracy.yelp", "accuracy.imdb"],
    "retail_recommendations": [
        "ndcg_at_10",
        "precision_at_10",
        "recall_at_10",
        "map_at_10",
        "hit_rate_at_10",
        "coverage_at_10",
        "novelty_at_10",
    ],
}


#: the seed's headline claims -> (pipeline, test metric, how the lift over the naive baseline reads)
CLAIMS = [
    ("stock +30 %", "price_forecast", "rmse", "next-day return forecast error vs the random walk"),
    (
        "stock +30 %",
        "price_forecast",
        "portfolio_sharpe",
        "Sharpe of long/flat on the forecasts (5 bp per trade) vs buy-and-hold",
    ),
    ("diagnosis +25 %", "breast_ultrasound", "accuracy", "ultrasound accuracy vs always-benign"),
    ("diagnosis +25 %", "breast_cytology", "accuracy", "cytology accuracy vs always-benign"),
    ("satisfaction +20 %", "support_intent", "accuracy", "intent accuracy vs the most frequent intent"),
    ("satisfaction +20 %", "review_sentiment", "accuracy", "sentiment accuracy vs the prior"),
    (
        "sales +15 %",
        "retail_recommendations",
        "hit_rate_at_10",
        "customers with a bought product in their top 10 vs best-sellers",
    ),
]


def claim_cell(r, metric: str) -> str:
    if metric == "portfolio_sharpe":
        v, b = r.get("metrics.test/portfolio_sharpe"), r.get("metrics.test/buy_hold_sharpe")
        return f"Sharpe {v:.2f} vs {b:.2f} ({v - b:+.2f})"
    v, b = r.get(f"metrics.test/{metric}"), r.get(f"metrics.test/baseline_{metric}")
    if metric == "rmse":  # an error falls
        return f"{v:.5f} vs {b:.5f}: {(b - v) / b:+.2%} less error"
    return f"{v:.4f} vs {b:.4f}: {(v - b) * 100:+.1f} points ({(v - b) / b:+.0%})"


def selection_rows(tracker, name: str, r) -> list[str]:
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        table = pd.read_csv(tracker.client.download_artifacts(r["run_id"], "tables/model_selection.csv", tmp))
    if "score" in table.columns:  # the one selection schema (selection.SELECTION_COLUMNS)
        label, score, params = table["metric"], "score", "params"
    else:  # a run logged before it: one column named after how it selected
        score = next(c for c in table.columns if c.startswith(("cv_score", "inner_", "validation_")))
        label, params = (
            pd.Series(score, index=table.index),
            next(c for c in ("best_params", "params") if c in table.columns),
        )
    best = r.get("params.model.candidate", "")
    rows = []
    for i, row in table.iterrows():
        chosen = " (chosen)" if row["candidate"] == best and i == table[table["candidate"] == best].index[0] else ""
        grid = f" {row[params]}" if row[params] not in ("{}", "") else ""
        rows.append(f"| {name} | {row['candidate']}{chosen} | {row['estimator']}{grid} | {label[i]} {row[score]:.5g} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="run all pipelines into a fresh temporary home first")
    ap.add_argument(
        "--write",
        metavar="PAGE",
        action="append",
        default=[],
        help="put the tables into PAGE between <!-- results --> and <!-- /results --> (the first table only between <!-- results:summary --> and <!-- /results:summary -->); repeatable",
    )
    args = ap.parse_args()
    timing = ""
    if args.run:
        home = tempfile.mkdtemp(prefix="modelmill-results-")
        os.environ["MODELMILL_HOME"] = home
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "modelmill.cli", "run", "--all"], stdout=sys.stderr)
        wall, rss = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        timing = f"`modelmill run --all`: {wall // 60:.0f} min {wall % 60:.0f} s wall, peak RSS {rss / 1024:.1f} GiB, {os.cpu_count()} cores"
        print(f"{timing}; the store: MODELMILL_HOME={home}", file=sys.stderr)
        if code != 0:
            print(f"modelmill run --all exited {code}", file=sys.stderr)
            return code

    from modelmill.config.settings import get_settings
    from modelmill.config.spec import load_spec
    from modelmill.registry.tracking import Tracker

    settings = get_settings()
    tracker = Tracker(settings)
    specs = {name: load_spec(name, settings) for name in COLUMNS}
    latest = {}
    for name, spec in specs.items():
        runs = tracker.runs(spec)
        done = (
            runs[(runs["status"] == "FINISHED") & runs["metrics.test/lift_over_baseline"].notna()]
            if not runs.empty
            else runs
        )
        if not done.empty:
            latest[name] = done.iloc[-1]
    out: list[str] = []
    emit = out.append  # the tables go to stdout or into the page
    emit("| pipeline | best model | test metrics (baseline in brackets) | lift over baseline | published reference |")
    emit("|---|---|---|---|---|")
    for name, metrics in COLUMNS.items():
        spec = specs[name]
        reference = spec.reference or "none given"
        if name not in latest:
            emit(f"| {name} | — | not run | — | {reference} |")
            continue
        r = latest[name]
        cells = []
        for m in metrics:
            v, b = r.get(f"metrics.test/{m}"), r.get(f"metrics.test/baseline_{m}")
            if v is None or v != v:
                continue
            cells.append(f"{m} {v:.3f}" + (f" ({b:.3f})" if b is not None and b == b and m != "naive_rmse" else ""))
        lift = r.get("metrics.test/lift_over_baseline")
        best = r.get("params.model.candidate", "")
        key = spec.metric.name
        if spec.metric.direction == "minimize":  # an error metric: its change in percent, not a near-zero difference
            value, base = r.get(f"metrics.test/{key}"), r.get(f"metrics.test/baseline_{key}")
            shown = f"{key} {(value - base) / base:+.2%} vs baseline"
        else:
            shown = f"{key} {lift:+.4g}"
        emit(f"| {name} | {best} | {'; '.join(cells)} | {shown} | {reference} |")
        knn = [
            f"{m} {r.get(f'metrics.test/reference_item_knn_{m}'):.3f}"
            for m in metrics
            if r.get(f"metrics.test/reference_item_knn_{m}") == r.get(f"metrics.test/reference_item_knn_{m}")
            and r.get(f"metrics.test/reference_item_knn_{m}") is not None
        ]
        if knn:  # recommenders: plain item-item cosine kNN on the same split, the shipped reference
            emit(f"| {name} (reference) | plain item-item cosine kNN | {'; '.join(knn)} | — | the same test period |")
    emit("\n| seed's claim | pipeline | measured on the test split | this project's figure |")
    emit("|---|---|---|---|")
    for claim, name, metric, what in CLAIMS:
        emit(f"| {claim} | {name} | {what} | {claim_cell(latest[name], metric) if name in latest else 'not run'} |")
    emit(
        "\n| pipeline | candidate | estimator and chosen grid point | selection score (validation / cross-validation; the table is sorted best first) |"
    )
    emit("|---|---|---|---|")
    for name, r in latest.items():
        emit("\n".join(selection_rows(tracker, name, r)))
    command = "python scripts/results_table.py" + (" --run" if args.run else "")
    stamp = f"Generated by `{command}` on {datetime.date.today().isoformat()}" + (f"; {timing}." if timing else ".")
    text = "\n".join([stamp, "", *out])
    if not args.write:
        sys.stdout.write(text + "\n")
        return 0
    summary = "\n".join([stamp, "", *out[: out.index(next(line for line in out if line.startswith("\n")))]])
    for page in map(Path, args.write):
        content = page.read_text()
        for marker, block in (("results", text), ("results:summary", summary)):
            if f"<!-- {marker} -->\n" in content:
                before, rest = content.split(f"<!-- {marker} -->\n", 1)
                content = (
                    f"{before}<!-- {marker} -->\n{block}\n<!-- /{marker} -->{rest.split(f'<!-- /{marker} -->', 1)[1]}"
                )
        page.write_text(content)
        sys.stderr.write(f"wrote the results tables into {page}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
