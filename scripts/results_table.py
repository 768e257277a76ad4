"""Print the README results table: each pipeline's test metrics from its latest finished MLflow
run, next to the published reference for that dataset.

    python scripts/results_table.py            # read the store under $MODELMILL_HOME (.modelmill)
    python scripts/results_table.py --run      # first run every pipeline into a fresh temp home
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

COLUMNS = {
    "credit_risk": (["roc_auc", "pr_auc", "ks", "brier", "expected_cost", "sensitivity", "specificity"], "none given; cost-matrix policies on this split: accept all = 1.50, refuse all = 0.70 per applicant"),
    "breast_cytology": (["roc_auc", "accuracy", "sensitivity", "specificity"], "none given (prior baseline in brackets)"),
    "price_forecast": (["rmse", "naive_rmse", "skill", "directional_accuracy", "price_mape", "dm_pvalue"], "Random walk (zero return) is the reference: skill 0 by definition"),
    "breast_ultrasound": (["roc_auc", "accuracy", "sensitivity", "specificity"], "MedMNIST v2: ResNet-18 (28) AUC 0.901 / ACC 0.863; auto-sklearn 0.836 / 0.803"),
    "support_intent": (["accuracy", "macro_f1"], "Casanueva et al. 2020: 93.66% accuracy, fine-tuned BERT, full training set"),
    "review_sentiment": (["accuracy", "f1", "roc_auc", "accuracy.amazon", "accuracy.yelp", "accuracy.imdb"], "none given (prior baseline in brackets)"),
    "retail_recommendations": (["ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10", "hit_rate_at_10", "coverage_at_10"], "No published split; the popularity baseline is the reference (its values in brackets)"),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="run all pipelines into a fresh temporary home first")
    args = ap.parse_args()
    if args.run:
        home = tempfile.mkdtemp(prefix="modelmill-results-")
        os.environ["MODELMILL_HOME"] = home
        code = subprocess.call([sys.executable, "-m", "modelmill.cli", "run", "--all"], stdout=sys.stderr)
        if code != 0:
            print(f"modelmill run --all exited {code}", file=sys.stderr)
            return code

    from modelmill.settings import get_settings
    from modelmill.spec import load_spec
    from modelmill.tracking import Tracker

    settings = get_settings()
    tracker = Tracker(settings)
    print("| pipeline | best model | test metrics (baseline in brackets) | lift over baseline | published reference |")
    print("|---|---|---|---|---|")
    for name, (metrics, reference) in COLUMNS.items():
        spec = load_spec(name, settings)
        runs = tracker.runs(spec)
        done = runs[runs["status"] == "FINISHED"] if not runs.empty else runs
        if done.empty:
            print(f"| {name} | — | not run | — | {reference} |")
            continue
        r = done.iloc[-1]
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
        print(f"| {name} | {best} | {'; '.join(cells)} | {shown} | {reference} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
